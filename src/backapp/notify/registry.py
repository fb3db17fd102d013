"""Building the notifier from settings: a plain dispatch table of transports."""

from __future__ import annotations

import re
from collections.abc import Callable

from backapp.notify.apprise_transport import AppriseTransport
from backapp.notify.base import Notifier, Transport

TRANSPORTS: dict[str, Callable[[list[str]], Transport]] = {
    "apprise": AppriseTransport,
}


def build_notifier(urls: str) -> Notifier | None:
    """Given BACKAPP_NOTIFY_URLS (space or comma separated), return a Notifier, or None.

    Raise TransportError (permanent) if a URL is not valid.
    """
    parsed = [u for u in re.split(r"[\s,]+", urls.strip()) if u]
    if not parsed:
        return None
    return Notifier([TRANSPORTS["apprise"](parsed)])
