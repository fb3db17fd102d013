"""Ctrl-C and SIGTERM (what `timeout`, systemd and `docker stop` send) stop a long command
the same way: the operation is cancelled, cleans up (an upload is aborted, a half-written
file removed) and the command ends with one line and exit code 130. A second signal stops
at once."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from backapp.engine.progress import CancelToken

EXIT_INTERRUPTED = 130
_NAMES = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM"}


@contextmanager
def interruptible() -> Iterator[CancelToken]:
    """Yield a cancel token that SIGINT and SIGTERM trigger while the block runs."""
    token = CancelToken()
    previous = {sig: signal.getsignal(sig) for sig in _NAMES}

    def on_signal(number: int, frame: FrameType | None) -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)  # a second signal: the default, at once
        token.cancel(f"interrupted ({_NAMES.get(signal.Signals(number), str(number))})")

    for sig in _NAMES:
        signal.signal(sig, on_signal)
    try:
        yield token
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
