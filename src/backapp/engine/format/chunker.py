"""Content-defined cut points over a file's bytes: FastCDC (the ``pyfastcdc`` library).

A cut point depends only on the bytes just before it (a 64-byte gear hash window,
between MIN_SIZE and MAX_SIZE from the previous cut), so an insertion or a rewrite
inside a file moves no cut point beyond the next one: the blocks after it keep their
ids and are not stored again. Each file is cut on its own (a file's first block
starts at its first byte), so an unchanged file gives the same blocks wherever it
lies in the tree.

Sizes: at least 256 KiB, about 1 MiB on average, at most 4 MiB (restic uses 512 KiB
/ 1 MiB / 8 MiB); a file smaller than MIN_SIZE is one block.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

from pyfastcdc import FastCDC

MIN_SIZE = 256 * 1024
AVG_SIZE = 1024 * 1024
MAX_SIZE = 4 * 1024 * 1024
_READ = 4 * 1024 * 1024
_ZEROS = bytes(_READ)


def new_chunker() -> FastCDC:
    """Return a chunker with format 2's sizes (not thread-safe: one per thread)."""
    # pyfastcdc's average comes out as avg_size + min_size.
    return FastCDC(AVG_SIZE - MIN_SIZE, min_size=MIN_SIZE, max_size=MAX_SIZE)


class FileReader:
    """Reads at most ``size`` bytes of an open file, optionally as data extents with holes
    between them (given as zeros, not read), handing each piece to ``update`` first."""

    def __init__(
        self,
        fd: int,
        size: int,
        update: Callable[[memoryview], Any] | None,
        extents: list[tuple[bool, int, int]] | None = None,
    ) -> None:
        self.fd = fd
        self.left = size
        self.update = update
        self.done = 0  # bytes handed out (read, or zeros for holes)
        self.short = False  # the file ended before ``size``
        self._spans = iter(extents or [(True, 0, size)])
        self._span: tuple[bool, int, int] | None = None

    def readinto(self, buf: Any) -> int:
        """Given a buffer, fill it with the next bytes; return how many (0 at the end).
        Raise OSError."""
        view = memoryview(buf).cast("B")
        while self.left > 0 and not self.short:
            if self._span is None or self._span[1] >= self._span[2]:
                self._span = next(self._spans, None)
                if self._span is None:
                    return 0
                if self._span[0]:
                    os.lseek(self.fd, self._span[1], os.SEEK_SET)
                continue
            is_data, start, end = self._span
            want = min(len(view), end - start, self.left, _READ)
            if is_data:
                got = os.readv(self.fd, [view[:want]])
                if got == 0:
                    self.short = True
                    return 0
            else:
                view[:want] = _ZEROS[:want]
                got = want
            self._span = (is_data, start + got, end)
            self.left -= got
            self.done += got
            if self.update is not None:
                self.update(view[:got])
            return got
        return 0


def cut(chunker: FastCDC, reader: FileReader) -> Iterator[bytes]:
    """Given a chunker and a file reader, yield the file's blocks (each a copy)."""
    for chunk in chunker.cut_stream(reader):
        yield bytes(chunk.data)


def cut_bytes(chunker: FastCDC, data: bytes | memoryview) -> Iterator[bytes]:
    """Given bytes in memory, yield their blocks."""
    view = memoryview(data)
    for chunk in chunker.cut_buf(view):
        yield bytes(view[chunk.offset : chunk.offset + chunk.length])
