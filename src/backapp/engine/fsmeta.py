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

# Errors meaning "this filesystem (or this file) has no extended attributes to give".
_NO_XATTRS = {errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENODATA, errno.ENOSYS}
HOLE_MIN = 4096  # holes smaller than a filesystem block are not worth recording


class XattrReadError(Exception):
    """Private: the extended attributes of one entry could not be read (errno, reason)."""


def read_xattrs(target: int | str, *, follow: bool = True) -> dict[str, bytes] | None:
    """Given an open descriptor (or a path, not followed unless ``follow``), return its
    extended attributes, or None when it has none. Raise XattrReadError with a reason."""
    try:
        names = os.listxattr(target, follow_symlinks=follow)
    except OSError as exc:
        if exc.errno in _NO_XATTRS:
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
        self.position = 0

    def write(self, data: bytes | memoryview) -> None:
        """Given the next bytes of the file, write them (or skip zero windows). Raise OSError."""
        view = memoryview(data)
        window = len(_ZERO)
        while view:
            n = min(len(view), window - self.position % window)
            piece = view[:n]
            if n == window and bytes(piece) == _ZERO:  # (a copy: memcmp, not per byte)
                os.lseek(self.fd, n, os.SEEK_CUR)
            else:
                while piece:
                    written = os.write(self.fd, piece)
                    piece = piece[written:]
            self.position += n
            view = view[n:]

    def finish(self) -> None:
        """Set the file's length to what was written. Raise OSError."""
        os.ftruncate(self.fd, self.position)
