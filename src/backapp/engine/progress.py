"""Progress reports and cancellation shared by backup, restore and verify."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from backapp.errors import CancelledError


@dataclass
class Progress:
    """A snapshot of a running operation, handed to progress callbacks.

    ``files_total`` and ``bytes_total`` are estimates that grow while a background
    count is still walking the sources (``counting`` is then True).
    """

    phase: str = "starting"
    files_done: int = 0
    files_total: int = 0
    bytes_done: int = 0
    bytes_total: int = 0
    bytes_transferred: int = 0
    files_skipped: int = 0
    counting: bool = True
    current: str = ""
    started: float = field(default_factory=time.monotonic)

    @property
    def elapsed(self) -> float:
        """Return seconds since the operation started."""
        return time.monotonic() - self.started

    @property
    def rate(self) -> float:
        """Return source bytes processed per second so far."""
        elapsed = self.elapsed
        return self.bytes_done / elapsed if elapsed > 0 else 0.0

    @property
    def eta_seconds(self) -> float | None:
        """Return the estimated seconds left, or None while unknown."""
        rate = self.rate
        if rate <= 0 or self.bytes_total <= 0:
            return None
        return max(0.0, (self.bytes_total - self.bytes_done) / rate)

    def to_json(self) -> dict[str, object]:
        """Return this snapshot as a camelCase JSON object."""
        eta = self.eta_seconds
        return {
            "phase": self.phase,
            "filesDone": self.files_done,
            "filesTotal": self.files_total,
            "bytesDone": self.bytes_done,
            "bytesTotal": self.bytes_total,
            "bytesTransferred": self.bytes_transferred,
            "filesSkipped": self.files_skipped,
            "counting": self.counting,
            "currentPath": self.current,
            "rateBytesPerSecond": round(self.rate, 1),
            "etaSeconds": None if eta is None else round(eta, 1),
        }


ProgressCallback = Callable[[Progress], None]


class Throttle:
    """Calls a progress callback at most every ``interval`` seconds (and on ``flush``)."""

    def __init__(self, callback: ProgressCallback | None, interval: float = 0.5) -> None:
        self._callback = callback
        self._interval = interval
        self._last = 0.0

    def __call__(self, progress: Progress, *, force: bool = False) -> None:
        if self._callback is None:
            return
        now = time.monotonic()
        if force or now - self._last >= self._interval:
            self._last = now
            self._callback(progress)


class CancelToken:
    """A thread-safe flag an operation polls to stop early."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason = "cancelled"

    def cancel(self, reason: str = "cancelled") -> None:
        """Ask the operation to stop, with a reason for its log."""
        self.reason = reason
        self._event.set()

    @property
    def cancelled(self) -> bool:
        """Return whether cancellation was requested."""
        return self._event.is_set()

    def wait(self, seconds: float) -> bool:
        """Given a duration, sleep that long or until cancelled; return whether cancelled."""
        return self._event.wait(seconds)

    def raise_if_cancelled(self) -> None:
        """Raise CancelledError if cancellation was requested."""
        if self._event.is_set():
            raise CancelledError(self.reason)
