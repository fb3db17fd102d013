"""Small stream adapters between chunk iterators and file objects."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any

CHUNK = 1024 * 1024


class IterReader(io.RawIOBase):
    """A read-only file object over an iterator of byte chunks."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._it = iter(chunks)
        self._buf = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        while not self._buf:
            try:
                self._buf = next(self._it)
            except StopIteration:
                return 0
        n = min(len(view), len(self._buf))
        view[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n


def as_file(chunks: Iterable[bytes]) -> IO[bytes]:
    """Given byte chunks, return a buffered binary file object reading them."""
    return io.BufferedReader(IterReader(chunks), buffer_size=CHUNK)


def file_chunks(fileobj: IO[bytes], size: int = CHUNK) -> Iterator[bytes]:
    """Given a binary file object, yield its content in chunks."""
    while True:
        chunk = fileobj.read(size)
        if not chunk:
            return
        yield chunk


def tee(chunks: Iterable[bytes], observe: Callable[[bytes], Any]) -> Iterator[bytes]:
    """Given chunks and a callback, yield the chunks, passing each to the callback first."""
    for chunk in chunks:
        observe(chunk)
        yield chunk
