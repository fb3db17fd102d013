"""Process-wide tuning done once at start-up by the composition roots."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

logger = logging.getLogger(__name__)

# glibc mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3


def tune_allocator() -> None:
    """Keep 1 MiB buffers in the heap instead of a fresh mmap each time (glibc only).

    Backup and restore allocate and free megabyte-sized blocks all the time; by default
    glibc serves each from a new mapping, and the kernel zeroes every page of it again,
    which showed up as seconds of system time per GiB restored. Memory stays bounded
    by the pipelines themselves; this only stops returning it to the kernel every block.
    """
    name = ctypes.util.find_library("c")
    if not name:
        return
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to tune
        return
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    for param, value in (
        (_M_MMAP_THRESHOLD, 32 * 1024 * 1024),
        (_M_TRIM_THRESHOLD, 64 * 1024 * 1024),
        (_M_TOP_PAD, 8 * 1024 * 1024),
    ):
        if mallopt(param, value) != 1:
            logger.debug("mallopt(%d) refused", param)
