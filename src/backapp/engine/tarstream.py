"""A fast tar (PAX) writer that cuts its output into fixed-size blocks.

File data is read straight into the block buffer (no per-file copies, no
user/group name look-ups); headers come from ``tarfile`` so the format is
exactly what GNU tar and Python read. Sub-second mtimes and long names go in
PAX records.
"""

from __future__ import annotations

import os
import tarfile
from collections.abc import Callable
from typing import Any

BLOCK = 512
_EOF_MARKER = bytes(2 * BLOCK)
_TYPES = {
    "file": tarfile.REGTYPE,
    "dir": tarfile.DIRTYPE,
    "symlink": tarfile.SYMTYPE,
    "hardlink": tarfile.LNKTYPE,
}


def pax_time(ns: int) -> str:
    """Given nanoseconds since the epoch, return the PAX decimal-seconds form."""
    sign = "-" if ns < 0 else ""
    sec, frac = divmod(abs(ns), 10**9)
    return f"{sign}{sec}.{frac:09d}" if frac else f"{sign}{sec}"


def tar_header(
    path: str,
    kind: str,
    *,
    mode: int,
    uid: int,
    gid: int,
    mtime_ns: int,
    size: int = 0,
    target: str = "",
) -> bytes:
    """Given an entry's metadata, return its tar header blocks (PAX format)."""
    info = tarfile.TarInfo(path)
    info.type = _TYPES[kind]
    info.mode = mode
    info.uid = uid
    info.gid = gid
    info.uname = ""
    info.gname = ""
    info.size = size if kind == "file" else 0
    info.mtime = mtime_ns // 10**9
    info.linkname = target
    if mtime_ns % 10**9:
        info.pax_headers = {"mtime": pax_time(mtime_ns)}
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


class TarSink:
    """Accumulates a tar stream and hands it on in blocks of exactly ``block_size`` bytes."""

    def __init__(
        self,
        block_size: int,
        emit: Callable[[bytearray], Any],
        spare: list[bytearray] | None = None,
    ) -> None:
        assert block_size % BLOCK == 0
        self._size = block_size
        self._emit = emit
        # Buffers handed back once their block is compressed: fresh 1 MiB buffers cost
        # page faults (kernel time) on every block.
        self._spare = spare if spare is not None else []
        self._buf = bytearray(block_size)
        self._pos = 0
        self.offset = 0  # bytes of tar stream written so far

    def write(self, data: bytes) -> None:
        """Given bytes, append them to the stream."""
        view = memoryview(data)
        while view:
            n = min(len(view), self._size - self._pos)
            self._buf[self._pos : self._pos + n] = view[:n]
            self._advance(n)
            view = view[n:]

    def zeros(self, count: int) -> None:
        """Given a count, append that many zero bytes."""
        while count:
            n = min(count, self._size - self._pos)
            self._buf[self._pos : self._pos + n] = bytes(n)
            self._advance(n)
            count -= n

    def read_from(self, fd: int, size: int, update: Callable[[memoryview], Any]) -> int:
        """Given an open file, copy up to ``size`` bytes of it into the stream.

        Each piece read is also passed to ``update`` (hashing). Return the bytes
        actually read, which is less than ``size`` if the file ended early. Raise OSError.
        """
        done = 0
        while done < size:
            want = min(size - done, self._size - self._pos)
            view = memoryview(self._buf)[self._pos : self._pos + want]
            got = os.readv(fd, [view])
            if got == 0:
                break
            update(view[:got])
            self._advance(got)
            done += got
        return done

    def pad(self) -> None:
        """Pad the stream with zeros to the next 512-byte boundary."""
        rest = self.offset % BLOCK
        if rest:
            self.zeros(BLOCK - rest)

    def finish(self) -> None:
        """Write the end-of-archive marker and emit the last (short) block."""
        self.pad()
        self.write(_EOF_MARKER)
        if self._pos:
            self._emit(self._buf[: self._pos])
            self._buf = bytearray(self._size)
            self._pos = 0

    def _advance(self, n: int) -> None:
        self._pos += n
        self.offset += n
        if self._pos == self._size:
            full = self._buf
            try:
                self._buf = self._spare.pop()
            except IndexError:
                self._buf = bytearray(self._size)
            self._pos = 0
            self._emit(full)
