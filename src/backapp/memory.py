"""Keeping a long process's memory flat: glibc's allocator, left alone, raises its
mmap threshold each time a large buffer is freed, after which 1-4 MiB block buffers
come from the heap and fragment it — a restore's peak memory then grows with the size
of the backup. A fixed threshold keeps every large buffer in its own mapping, given
back to the system when freed.
"""

from __future__ import annotations

import ctypes
import ctypes.util

_M_MMAP_THRESHOLD = -3
_THRESHOLD = 256 * 1024  # the smallest data block: every block buffer is a mapping


def keep_memory_flat() -> bool:
    """Fix glibc's mmap threshold (a no-op elsewhere); return whether it was set."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, _THRESHOLD))
