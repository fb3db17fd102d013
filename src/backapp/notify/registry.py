"""Building transports from URLs: a plain dispatch table of transports."""

from __future__ import annotations

import re
from collections.abc import Callable

from backapp.notify.apprise_transport import AppriseTransport
from backapp.notify.base import Transport

TRANSPORTS: dict[str, Callable[[list[str]], Transport]] = {
    "apprise": AppriseTransport,
}


def split_urls(urls: str) -> list[str]:
    """Given URLs separated by spaces, commas or new lines, return them as a list."""
    return [u for u in re.split(r"[\s,]+", urls.strip()) if u]


def build_transport(url: str) -> Transport:
    """Given one notification URL, return its transport. Raise TransportError (permanent)."""
    return TRANSPORTS["apprise"]([url])
