"""File metadata beyond stat: extended attributes (POSIX ACLs are the ``system.posix_acl_*``
attributes) and the holes of sparse files.

Backup reads them with ``read_xattrs`` and ``data_extents``; restore writes them with
``apply_xattrs`` and ``SparseWriter``. What a filesystem cannot store is counted, never
fatal.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator

from backapp.errors import XattrReadError, XattrUnsupportedError

# Errors meaning "this filesystem has no extended attributes at all".
_UNSUPPORTED = {errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS}
HOLE_MIN = 4096  # holes smaller than a filesystem block are not worth recording


def read_xattrs(target: int | str, *, follow: bool = True) -> dict[str, bytes] | None:
    """Given an open descriptor (or a path, not followed unless ``follow``), return its
    extended attributes, or None when it has none. Raise XattrUnsupportedError,
    XattrReadError with a reason."""
    try:
        names = os.listxattr(target, follow_symlinks=follow)
    except OSError as exc:
        if exc.errno in _UNSUPPORTED:
            raise XattrUnsupportedError(exc.strerror or str(exc)) from exc
        if exc.errno == errno.ENODATA:
            return None
        raise XattrReadError(exc.strerror or str(exc)) from exc
    if not names:
        return None
    found: dict[str, bytes] = {}
    for name in sorted(names):
        try:
            found[name] = os.getxattr(target, name, follow_symlinks=follow)
        except OSError as exc:
            if exc.errno == errno.ENODATA:
                continue  # removed meanwhile
            raise XattrReadError(f"{name}: {exc.strerror or exc}") from exc
    return found or None


def apply_xattrs(target: int | str, xattrs: dict[str, bytes], *, follow: bool = True) -> list[str]:
    """Given a descriptor (or a path) and the attributes to set, set them; return one
    message per attribute that could not be set (e.g. not supported, not permitted)."""
    failed = []
    for name, value in xattrs.items():
        try:
            os.setxattr(target, name, value, follow_symlinks=follow)
        except OSError as exc:
            failed.append(f"{name}: {exc.strerror or exc}")
    return failed


def data_extents(fd: int, size: int) -> list[tuple[int, int]] | None:
    """Given a file's descriptor and size, return its data extents [(start, end), ...] if
    it has holes of at least HOLE_MIN bytes (a sparse file), else None.

    Found with SEEK_DATA/SEEK_HOLE; the descriptor's offset is left at 0.
    """
    extents: list[tuple[int, int]] = []
    pos = 0
    holes = False
    try:
        while pos < size:
            try:
                start = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError as exc:
                if exc.errno == errno.ENXIO:  # only a hole from here to the end
                    holes = holes or size - pos >= HOLE_MIN
                    break
                raise
            if start - pos >= HOLE_MIN:
                holes = True
            end = min(os.lseek(fd, start, os.SEEK_HOLE), size)
            if extents and start - extents[-1][1] < HOLE_MIN:
                extents[-1] = (extents[-1][0], end)  # a tiny hole: read it as data
            else:
                extents.append((start, end))
            pos = end
    except OSError:
        return None  # the filesystem cannot say: read the file as a whole
    finally:
        os.lseek(fd, 0, os.SEEK_SET)
    return extents if holes else None


def holes_of(extents: list[tuple[int, int]], size: int) -> Iterator[tuple[bool, int, int]]:
    """Given data extents and the size, yield (is_data, start, end) covering [0, size)."""
    pos = 0
    for start, end in extents:
        if start > pos:
            yield False, pos, start
        yield True, start, end
        pos = end
    if pos < size:
        yield False, pos, size


_ZERO = bytes(64 * 1024)


class SparseWriter:
    """Writes a file's bytes to a descriptor, leaving holes where whole 64 KiB windows
    (aligned in the file) are zero; ``finish`` sets the length (a trailing hole)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._pending = bytearray()  # the start of a window, until it is whole

    def write(self, data: bytes | memoryview) -> None:
        """Given the next bytes of the file, write them (or skip zero windows). Raise OSError."""
        view = memoryview(data)
        window = len(_ZERO)
        while view:
            take = view[: window - len(self._pending)]
            view = view[len(take) :]
            if not self._pending and len(take) == window:
                self._emit(take)
                continue
            self._pending += take
            if len(self._pending) == window:
                self._emit(memoryview(self._pending))
                self._pending = bytearray()

    def _emit(self, chunk: memoryview) -> None:
        if bytes(chunk) == _ZERO[: len(chunk)]:  # (a copy compares with memcmp)
            os.lseek(self.fd, len(chunk), os.SEEK_CUR)
        else:
            while chunk:
                chunk = chunk[os.write(self.fd, chunk) :]

    def finish(self) -> None:
        """Write what is left and set the file's length. Raise OSError."""
        if self._pending:
            self._emit(memoryview(self._pending))
            self._pending = bytearray()
        os.ftruncate(self.fd, os.lseek(self.fd, 0, os.SEEK_CUR))
