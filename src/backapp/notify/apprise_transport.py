"""Apprise: one URL scheme for ~100 services (mailto://, slack://, ntfy://, json://, …)."""

from __future__ import annotations

import apprise

from backapp.errors import TransportError
from backapp.notify.base import Notification

_TYPES = {
    "critical": apprise.NotifyType.FAILURE,
    "warning": apprise.NotifyType.WARNING,
    "info": apprise.NotifyType.INFO,
}


class AppriseTransport:
    """Delivers notifications to Apprise URLs."""

    def __init__(self, urls: list[str]) -> None:
        self._apprise = apprise.Apprise()
        rejected = [u for u in urls if not self._apprise.add(u)]
        if rejected:
            # Never echo the URL itself: it often carries a password or token.
            raise TransportError(
                f"{len(rejected)} notification URL(s) in BACKAPP_NOTIFY_URLS are not valid "
                "Apprise URLs",
                permanent=True,
            )

    def send(self, notification: Notification) -> None:
        """Given a notification, deliver it to every URL. Raise TransportError."""
        ok = self._apprise.notify(
            body=notification.body,
            title=notification.title,
            notify_type=_TYPES.get(notification.severity, apprise.NotifyType.WARNING),
        )
        if not ok:
            raise TransportError("an Apprise notification could not be delivered")
