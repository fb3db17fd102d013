"""Notifications: telling people about alerts through pluggable transports."""

from backapp.errors import TransportError
from backapp.notify.apprise_transport import check_url, mask_url
from backapp.notify.base import Notification
from backapp.notify.registry import build_transport, split_urls

__all__ = [
    "Notification",
    "TransportError",
    "build_transport",
    "check_url",
    "mask_url",
    "split_urls",
]
