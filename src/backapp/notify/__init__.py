"""Notifications: telling people about alerts through pluggable transports."""

from backapp.errors import TransportError
from backapp.notify.base import Notification, Notifier
from backapp.notify.registry import build_notifier

__all__ = ["Notification", "Notifier", "TransportError", "build_notifier"]
