"""Notifications: telling people about alerts through pluggable transports."""

from backapp.notify.base import Notification, Notifier, TransportError
from backapp.notify.registry import build_notifier

__all__ = ["Notification", "Notifier", "TransportError", "build_notifier"]
