"""Build source trees and compare them exactly (bytes, modes, mtimes, links, empty dirs)."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path
from typing import Any


def snapshot(root: Path) -> dict[str, tuple[Any, ...]]:
    """Given a folder, return {relative path: what a restore must reproduce} for its tree."""
    out: dict[str, tuple[Any, ...]] = {}
    inodes: dict[tuple[int, int], str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            full = Path(dirpath) / name
            rel = str(full.relative_to(root))
            st = full.lstat()
            mode = stat.S_IMODE(st.st_mode)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("symlink", os.readlink(full), st.st_mtime_ns)
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", mode, st.st_mtime_ns)
            elif stat.S_ISREG(st.st_mode):
                digest = hashlib.sha256(full.read_bytes()).hexdigest()
                link = None
                if st.st_nlink > 1:
                    key = (st.st_dev, st.st_ino)
                    link = inodes.setdefault(key, rel)
                out[rel] = ("file", mode, st.st_mtime_ns, st.st_size, digest, link)
            else:
                out[rel] = ("special", stat.S_IFMT(st.st_mode))
    return out


def without_specials(snap: dict[str, tuple[Any, ...]]) -> dict[str, tuple[Any, ...]]:
    """Given a snapshot, drop FIFOs, sockets and devices (BackApp skips them)."""
    return {k: v for k, v in snap.items() if v[0] != "special"}


def restored_root(target: Path, source: Path) -> Path:
    """Given a restore target and the original source folder, return where it was restored."""
    return target / str(source).lstrip("/")
