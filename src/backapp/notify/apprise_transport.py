"""Apprise: one URL scheme for ~100 services (mailto://, slack://, ntfy://, json://, …).

Notification URLs carry passwords and tokens: only ``mask_url``'s form of one is ever
shown, logged or returned (Apprise's own privacy form, which knows each service's secrets).
"""

from __future__ import annotations

import logging
import re
from typing import Any

import apprise

from backapp.errors import TransportError
from backapp.notify.base import Notification

_TYPES = {
    "critical": apprise.NotifyType.FAILURE,
    "warning": apprise.NotifyType.WARNING,
    "info": apprise.NotifyType.INFO,
    "success": apprise.NotifyType.SUCCESS,
}
_LONG = 16  # a path segment this long may be a token: shortened as Apprise shortens them


def mask_url(url: str) -> str:
    """Given an Apprise URL, return it with its secrets hidden: Apprise's privacy form
    without the query, long path segments (tokens, often) shortened ("a...z")."""
    plugin = _instantiate(url)
    if plugin is None:
        scheme = url.partition("://")[0] if "://" in url else ""
        return f"{scheme[:16]}://…" if scheme.isalnum() else "(not an Apprise URL)"
    private = str(plugin.url(privacy=True)).partition("?")[0]
    scheme, _, rest = private.partition("://")
    host, *path = rest.split("/")
    parts = [p if len(p) < _LONG or "..." in p else f"{p[0]}...{p[-1]}" for p in path]
    return f"{scheme}://{'/'.join([host, *parts])}".rstrip("/")


_MASKED = re.compile(r"\*\*\*\*|(^|[/:@])[^/:@]\.\.\.[^/:@]($|[/:@?])")


def check_url(url: str) -> None:
    """Given an Apprise URL, return if Apprise can use it. Raise TransportError (permanent,
    the URL never echoed): also for a URL in ``mask_url``'s form, whose secret is gone."""
    if _MASKED.search(url):
        raise TransportError(
            "a masked URL (its password or token shows as **** or a...z): give the full URL",
            permanent=True,
        )
    if _instantiate(url) is None:
        raise TransportError(
            "not a valid Apprise URL (e.g. mailto://user:pass@host, json://host/path, "
            "ntfy://topic)",
            permanent=True,
        )


def _instantiate(url: str) -> Any:
    if not url.strip() or "://" not in url:
        return None
    try:
        return apprise.Apprise.instantiate(url.strip())
    except Exception:  # Apprise's parsers raise assorted errors on odd input
        return None


class AppriseTransport:
    """Delivers notifications to Apprise URLs."""

    def __init__(self, urls: list[str]) -> None:
        self._apprise = apprise.Apprise()
        self._masked = ", ".join(mask_url(u) for u in urls)
        rejected = [u for u in urls if not self._apprise.add(u)]
        if rejected:
            # Never echo the URL itself: it often carries a password or token.
            raise TransportError(
                f"{len(rejected)} notification URL(s) are not valid Apprise URLs",
                permanent=True,
            )

    def send(self, notification: Notification) -> None:
        """Given a notification, deliver it to every URL. Raise TransportError."""
        with apprise.LogCapture(level=logging.WARNING, fmt="%(message)s") as captured:  # type: ignore[no-untyped-call]
            ok = self._apprise.notify(
                body=notification.body,
                title=notification.title,
                notify_type=_TYPES.get(notification.severity, apprise.NotifyType.WARNING),
                # Plain text, one fact a line: e-mail keeps the lines (as HTML it joins them).
                body_format=apprise.NotifyFormat.TEXT,
            )
            said = captured.getvalue().strip().splitlines()
        if not ok:
            # Apprise's own words, which it writes with the secrets already masked.
            why = f": {said[-1].strip()}" if said else ""
            raise TransportError(f"could not deliver to {self._masked}{why}")
