"""The notification value and the transport interface."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Notification:
    """What to tell: a title, a body and how severe it is (critical, warning, info, success)."""

    title: str
    body: str
    severity: str = "warning"


class Transport(Protocol):
    """Delivers notifications somewhere (chat, e-mail, webhook, …)."""

    def send(self, notification: Notification) -> None:
        """Given a notification, deliver it. Raise TransportError."""
        ...
