"""The notification value and the transport interface."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from backapp.errors import TransportError


@dataclass(frozen=True)
class Notification:
    """What to tell: a title, a body and how severe it is (critical, warning, info)."""

    title: str
    body: str
    severity: str = "warning"


class Transport(Protocol):
    """Delivers notifications somewhere (chat, e-mail, webhook, …)."""

    def send(self, notification: Notification) -> None:
        """Given a notification, deliver it. Raise TransportError."""
        ...


class Notifier:
    """Sends each notification through every configured transport."""

    def __init__(self, transports: list[Transport]) -> None:
        self.transports = transports

    def send(self, notification: Notification) -> None:
        """Given a notification, send it everywhere. Raise TransportError if any failed."""
        errors = []
        for transport in self.transports:
            try:
                transport.send(notification)
            except TransportError as exc:
                errors.append(exc)
        if errors:
            raise TransportError(
                "; ".join(str(e) for e in errors), permanent=all(e.permanent for e in errors)
            )
