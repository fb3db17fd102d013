"""What a log line is about (the run, its config), carried by the thread doing the work.

``with log_context(run_id=..., config=...)`` marks every record logged inside (on this
thread, and in tasks that copy its context); the log format adds them as fields.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_fields: ContextVar[dict[str, str]] = ContextVar("backapp_log_context", default={})  # noqa: B039


@contextmanager
def log_context(**fields: str | None) -> Iterator[None]:
    """Given fields (None ones are left out), add them to every record logged inside."""
    merged = {**_fields.get(), **{k: v for k, v in fields.items() if v is not None}}
    token = _fields.set(merged)
    try:
        yield
    finally:
        _fields.reset(token)


class ContextFilter(logging.Filter):
    """Sets the fields of the current log context on each record (never overwriting)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _fields.get().items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True
