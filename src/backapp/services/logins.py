"""Guarding the login: failed attempts limited per account and per address, and password
hashing bounded, so that guessing neither succeeds by volume nor starves the server.

- An account with ``ACCOUNT_FREE`` failures in a row is locked for a time that doubles
  with each further failure (1 s, 2 s, 4 s … up to 15 minutes); a success clears it.
- An address with more than ``ADDRESS_LIMIT`` failures in ``WINDOW`` is refused until the
  oldest of them leaves the window.
- At most ``HASHING_SLOTS`` password checks run at once; a login that cannot get a slot
  within ``SLOT_WAIT`` seconds is refused ("too many logins at once").

Refusals happen before any password is hashed and raise TooManyAttemptsError (429 with
Retry-After). The counters live in this process (one web process: the usual setup).
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from backapp.errors import TooManyAttemptsError

ACCOUNT_FREE = 5
ACCOUNT_MAX_LOCK = 15 * 60.0
ADDRESS_LIMIT = 30
WINDOW = 15 * 60.0
HASHING_SLOTS = 2
SLOT_WAIT = 5.0


@dataclass
class _Account:
    failures: int = 0
    locked_until: float = 0.0


@dataclass
class LoginGuard:
    """The login counters of one process; ``clock`` is injectable for tests."""

    clock: Callable[[], float] = time.monotonic
    _accounts: dict[str, _Account] = field(default_factory=dict)
    _addresses: dict[str, deque[float]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _slots: threading.BoundedSemaphore = field(
        default_factory=lambda: threading.BoundedSemaphore(HASHING_SLOTS)
    )

    def check(self, username: str, address: str) -> None:
        """Given who tries to log in from where, refuse before hashing anything if either is
        over its limit. Raise TooManyAttemptsError."""
        now = self.clock()
        with self._lock:
            recent = self._recent(address, now)
            if len(recent) >= ADDRESS_LIMIT:
                wait = recent[0] + WINDOW - now
                raise TooManyAttemptsError(
                    f"too many failed logins from this address; try again in {_words(wait)}",
                    wait,
                )
            account = self._accounts.get(username.casefold())
            if account is not None and account.locked_until > now:
                wait = account.locked_until - now
                raise TooManyAttemptsError(
                    f"too many failed logins for this account; try again in {_words(wait)}",
                    wait,
                )

    def failed(self, username: str, address: str) -> None:
        """Given a failed attempt, count it against the account and the address."""
        now = self.clock()
        with self._lock:
            self._recent(address, now).append(now)
            account = self._accounts.setdefault(username.casefold(), _Account())
            account.failures += 1
            beyond = account.failures - ACCOUNT_FREE
            if beyond >= 0:
                account.locked_until = now + min(2.0**beyond, ACCOUNT_MAX_LOCK)
            if len(self._accounts) > 100_000:  # a flood of made-up names: forget the oldest
                self._accounts.pop(next(iter(self._accounts)))

    def succeeded(self, username: str) -> None:
        """Given a successful login, clear the account's failures."""
        with self._lock:
            self._accounts.pop(username.casefold(), None)

    @contextmanager
    def hashing(self) -> Iterator[None]:
        """Hold one of the few password-hashing slots while checking a password. Raise
        TooManyAttemptsError if none frees up soon."""
        if not self._slots.acquire(timeout=SLOT_WAIT):
            raise TooManyAttemptsError("too many logins at once; try again in a moment", 1.0)
        try:
            yield
        finally:
            self._slots.release()

    def _recent(self, address: str, now: float) -> deque[float]:
        recent = self._addresses.setdefault(address, deque())
        while recent and recent[0] <= now - WINDOW:
            recent.popleft()
        if len(self._addresses) > 100_000:
            for key in [k for k, v in self._addresses.items() if not v][:50_000]:
                del self._addresses[key]
        return recent


def _words(seconds: float) -> str:
    seconds = max(1, math.ceil(seconds))
    if seconds < 120:
        return f"{seconds} s"
    return f"{math.ceil(seconds / 60)} min"
