"""A fast tar (PAX) writer that cuts its output into fixed-size blocks.

File data is read straight into the block buffer (no per-file copies, no
user/group name look-ups), and headers are built directly (``tarfile`` spends
most of a small file's time on its header). Sub-second mtimes and long names
go in PAX records; tests check GNU tar and Python's tarfile read them back.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

BLOCK = 512
_EOF_MARKER = bytes(2 * BLOCK)


def pax_time(ns: int) -> str:
    """Given nanoseconds since the epoch, return the PAX decimal-seconds form."""
    sign = "-" if ns < 0 else ""
    sec, frac = divmod(abs(ns), 10**9)
    return f"{sign}{sec}.{frac:09d}" if frac else f"{sign}{sec}"


_TYPEFLAG = {"file": b"0", "hardlink": b"1", "symlink": b"2", "dir": b"5"}
_USTAR_MAGIC = b"ustar\x0000"
_PAX_NAME = b"././@PaxHeader"
_MAX_ID = 8**7  # what 7 octal digits hold
_MAX_SIZE = 8**11


def _octal(value: int, width: int) -> bytes:
    return b"%0*o\x00" % (width - 1, value)


def _record(key: str, value: str) -> bytes:
    """Given a PAX key and value, return the record "<length> key=value\\n"."""
    payload = f" {key}={value}\n".encode("utf-8", "surrogateescape")
    length = len(payload) + 1
    while len(payload) + len(str(length)) != length:
        length = len(payload) + len(str(length))
    return str(length).encode() + payload


def _ustar(
    name: bytes, typeflag: bytes, mode: int, uid: int, gid: int, size: int, mtime: int, link: bytes
) -> bytearray:
    header = bytearray(BLOCK)
    header[0 : len(name)] = name
    header[100:108] = _octal(mode, 8)
    header[108:116] = _octal(uid, 8)
    header[116:124] = _octal(gid, 8)
    header[124:136] = _octal(size, 12)
    header[136:148] = _octal(mtime, 12)
    header[148:156] = b"        "
    header[156:157] = typeflag
    header[157 : 157 + len(link)] = link
    header[257:265] = _USTAR_MAGIC
    header[329:337] = _octal(0, 8)
    header[337:345] = _octal(0, 8)
    header[148:156] = b"%06o\x00 " % sum(header)
    return header


def _fits(text: str, limit: int) -> bool:
    return text.isascii() and len(text) <= limit


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
    xattrs: dict[str, bytes] | None = None,
) -> bytes:
    """Given an entry's metadata, return its tar header blocks (POSIX PAX format).

    Long or non-ASCII names and link targets, sub-second mtimes, out-of-range numbers and
    extended attributes go in a PAX extended header before the ustar header, as GNU tar
    writes them.
    """
    name = path + "/" if kind == "dir" else path
    size = size if kind == "file" else 0
    records: list[bytes] = []
    if any("\udc80" <= c <= "\udcff" for c in name + target):
        records.append(_record("hdrcharset", "BINARY"))  # names with bytes that are not UTF-8
    if not _fits(name, 100):
        records.append(_record("path", name))
    if target and not _fits(target, 100):
        records.append(_record("linkpath", target))
    seconds = mtime_ns // 10**9
    if mtime_ns % 10**9 or not 0 <= seconds < _MAX_SIZE:
        records.append(_record("mtime", pax_time(mtime_ns)))
    if not 0 <= uid < _MAX_ID:
        records.append(_record("uid", str(uid)))
    if not 0 <= gid < _MAX_ID:
        records.append(_record("gid", str(gid)))
    if size >= _MAX_SIZE:
        records.append(_record("size", str(size)))
    for key, value in (xattrs or {}).items():
        # As GNU tar writes them (tar --xattrs reads them back); values may be any bytes.
        records.append(_record(f"SCHILY.xattr.{key}", value.decode("utf-8", "surrogateescape")))
    clip = min(max(seconds, 0), _MAX_SIZE - 1)
    header = _ustar(
        name.encode("ascii", "replace")[:100],
        _TYPEFLAG[kind],
        mode & 0o7777,
        uid if 0 <= uid < _MAX_ID else 0,
        gid if 0 <= gid < _MAX_ID else 0,
        size if size < _MAX_SIZE else 0,
        clip,
        target.encode("ascii", "replace")[:100],
    )
    if not records:
        return bytes(header)
    body = b"".join(records)
    pax = _ustar(_PAX_NAME, b"x", 0o644, 0, 0, len(body), clip, b"")
    padding = bytes(-len(body) % BLOCK)
    return b"".join((pax, body, padding, header))


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
