"""The one storage interface every backend implements, and its value types.

Keys are ``/``-separated paths relative to the storage root (a bucket, or a
local folder); they never start with ``/`` and never contain ``..``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable

TransferCallback = Callable[[int], None]
"""Called with the number of bytes that just reached (or left) the store."""


@dataclass(frozen=True)
class ObjectInfo:
    """An object in storage: its key, size in bytes and last-modified time."""

    key: str
    size: int
    modified: datetime | None = None


@runtime_checkable
class ObjectWriter(Protocol):
    """A streaming upload: nothing is visible under the key until ``commit``."""

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Given a chunk, append it to the object. Raise StorageError."""
        ...

    def commit(self) -> ObjectInfo:
        """Make the object visible under its key and return it. Raise StorageError."""
        ...

    def abort(self) -> None:
        """Discard everything written (idempotent, never raises for a finished writer)."""
        ...


@runtime_checkable
class Storage(Protocol):
    """Save, load, stat, list and remove objects."""

    @property
    def description(self) -> str:
        """A human-readable location without secrets, e.g. ``s3://bucket`` or a path."""
        ...

    def open_writer(self, key: str, on_transfer: TransferCallback | None = None) -> ObjectWriter:
        """Given a key, return a writer for a new object (replacing any old one on commit).

        ``on_transfer``, if given, is called on the caller's thread with byte counts as
        they reach the store (for S3, as each part finishes uploading).
        """
        ...

    def put_bytes(self, key: str, data: bytes) -> ObjectInfo:
        """Given a key and a small payload, store it atomically. Raise StorageError."""
        ...

    def get(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Given a key and a byte range [start, end), yield its bytes in chunks.

        Raise ObjectNotFoundError if the key does not exist, StorageError otherwise.
        """
        ...

    def get_bytes(self, key: str) -> bytes:
        """Given a key, return the whole (small) object. Raise ObjectNotFoundError."""
        ...

    def head(self, key: str) -> ObjectInfo | None:
        """Given a key, return its ObjectInfo, or None if it does not exist."""
        ...

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """Given a key prefix, yield every object under it (recursively), sorted by key."""
        ...

    def delete(self, key: str) -> None:
        """Given a key, remove the object; a missing key is not an error."""
        ...

    def abort_incomplete(self, prefix: str) -> int:
        """Given a key prefix, discard unfinished uploads under it; return how many."""
        ...

    def check(self) -> None:
        """Check the store is reachable and writable. Raise StorageError with the reason."""
        ...


def join_key(*parts: str) -> str:
    """Given key parts (some may be empty), return them joined with single slashes."""
    return "/".join(p.strip("/") for p in parts if p and p.strip("/"))
