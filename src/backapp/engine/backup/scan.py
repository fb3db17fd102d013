"""Walk the sources of a config: what to back up, in a stable order.

Entries come depth-first with the names of each directory sorted, so two scans
of the same tree (and the manifests made from them) are in the same order.
Symlinks are reported as links and never followed; FIFOs, sockets and devices
are skipped without being opened; anything unreadable is skipped and counted.
"""

from __future__ import annotations

import errno
import itertools
import os
import stat
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

from backapp.domain.config import Source
from backapp.domain.patterns import PatternFilter
from backapp.errors import SourceError


@dataclass(slots=True)
class ScanEntry:
    """One entry to back up: archive path (no leading '/'), absolute path (for messages),
    kind, lstat, and where to open it: its name in the folder open as ``dir_fd`` (valid
    while the entry is handled; None for a source folder itself, opened by path)."""

    path: str
    abspath: str
    kind: str  # "file" | "dir" | "symlink"
    st: os.stat_result
    dir_fd: int | None = None
    name: str = ""

    @property
    def at(self) -> tuple[str, int | None]:
        """Return (name, dir_fd) to open it with (the absolute path for a source)."""
        return (self.name, self.dir_fd) if self.dir_fd is not None else (self.abspath, None)

    def proc_path(self) -> str:
        """Return a path naming the entry itself through its folder's descriptor (for calls
        that take no dir_fd): the folder cannot be swapped for a link meanwhile."""
        if self.dir_fd is None:
            return self.abspath
        return f"/proc/self/fd/{self.dir_fd}/{self.name}"


@dataclass
class SkipLog:
    """Counts what was skipped (or stored imperfectly) and why, keeping a sample of paths."""

    limit: int = 200
    count: int = 0
    warnings: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    samples: list[tuple[str, str]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def skip(self, path: str, reason: str) -> None:
        """Given a path and a reason, record that it was not backed up."""
        with self._lock:
            self.count += 1
            self._note(path, reason)

    def warn(self, path: str, reason: str) -> None:
        """Given a path and a reason, record that it was stored, but not cleanly."""
        with self._lock:
            self.warnings += 1
            self._note(path, reason)

    def _note(self, path: str, reason: str) -> None:
        self.reasons[reason] += 1
        if len(self.samples) < self.limit:
            self.samples.append((path, reason))

    def summary(self) -> str:
        """Return a one-line summary such as '3 skipped: 2 permission denied, 1 fifo'."""
        parts = [f"{n} {reason}" for reason, n in self.reasons.most_common()]
        return ", ".join(parts)


def os_reason(exc: OSError) -> str:
    """Given an OSError, return a short lowercase reason for a skip log."""
    if exc.errno == errno.ENOENT:
        return "vanished during backup"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if exc.errno == errno.ELOOP:
        return "changed into a symlink during backup"
    return (exc.strerror or str(exc)).lower()


_SPECIAL = {
    stat.S_IFIFO: "fifo skipped",
    stat.S_IFSOCK: "socket skipped",
    stat.S_IFCHR: "character device skipped",
    stat.S_IFBLK: "block device skipped",
}


def archive_path(source_root: str, rel: str) -> str:
    """Given a source directory and a path relative to it, return the archive path."""
    base = source_root.strip("/")
    if not rel:
        return base
    return f"{base}/{rel}" if base else rel


def sorted_sources(sources: list[Source]) -> list[Source]:
    """Given sources, return them in archive order. Raise SourceError if they overlap."""
    ordered = sorted(sources, key=lambda s: s.path.strip("/").split("/"))
    for a, b in itertools.pairwise(ordered):
        outer = a.path.rstrip("/") + "/"
        if b.path.startswith(outer) or a.path == "/":
            raise SourceError(f"sources overlap: {b.path} is inside {a.path}")
    return ordered


def check_sources(sources: list[Source]) -> None:
    """Given sources, check each is an existing directory. Raise SourceError."""
    sorted_sources(sources)
    for src in sources:
        try:
            st = os.stat(src.path)
        except FileNotFoundError as exc:
            raise SourceError(f"source {src.path} does not exist") from exc
        except OSError as exc:
            raise SourceError(f"source {src.path} cannot be read: {os_reason(exc)}") from exc
        if not stat.S_ISDIR(st.st_mode):
            raise SourceError(f"source {src.path} is not a directory")


def scan(sources: list[Source], skips: SkipLog) -> Iterator[ScanEntry]:
    """Given sources, yield every entry to back up, in archive order; record skips."""
    for src in sorted_sources(sources):
        yield from _scan_source(src, skips)


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


def _scan_source(src: Source, skips: SkipLog) -> Iterator[ScanEntry]:
    """Walk one source through folder descriptors opened without following links, so a
    folder swapped for a symlink while the backup runs is never entered."""
    filt = PatternFilter.from_patterns(src.include_patterns, src.exclude_patterns)
    root = src.path
    try:
        # The source itself may be a symlink to a directory: follow it (only there).
        root_fd = os.open(root, _DIR_FLAGS)
    except NotADirectoryError as exc:
        raise SourceError(f"source {root} is not a directory") from exc
    except OSError as exc:
        raise SourceError(f"source {root} cannot be read: {os_reason(exc)}") from exc
    # With include patterns, a directory is emitted only once something under it is
    # kept (or it matches itself), so `pending` holds the not-yet-emitted ancestors.
    # Each open folder knows whether it is included (then all below it is, as in git).
    pending: list[ScanEntry] = []
    stack: list[tuple[str, Iterator[os.DirEntry[str]], ScanEntry | None, bool, int]] = []
    base = root.rstrip("/")
    try:
        root_st = os.fstat(root_fd)
        if archive_path(root, ""):
            yield ScanEntry(archive_path(root, ""), root, "dir", root_st)

        def open_dir(fd: int, rel: str, entry: ScanEntry | None, included: bool) -> None:
            try:
                with os.scandir(fd) as it:
                    children = sorted(it, key=lambda e: e.name)
            except OSError as exc:
                where = archive_path(root, rel) + "/"
                skips.skip(where, f"directory unreadable: {os_reason(exc)}")
                children = []
            stack.append((rel, iter(children), entry, included, fd))

        open_dir(root_fd, "", None, filt.include is None)
        root_fd = -1  # the stack owns it now
        while stack:
            rel, children, dir_entry, inside, fd = stack[-1]
            child = next(children, None)
            if child is None:
                stack.pop()
                os.close(fd)
                if dir_entry is not None and pending and pending[-1] is dir_entry:
                    pending.pop()  # nothing below it was kept
                continue
            child_rel = f"{rel}/{child.name}" if rel else child.name
            path = archive_path(root, child_rel)
            try:
                st = child.stat(follow_symlinks=False)
            except OSError as exc:
                skips.skip(path, os_reason(exc))
                continue
            fmt = stat.S_IFMT(st.st_mode)
            abspath = f"{base}/{child_rel}"
            if fmt == stat.S_IFDIR:
                if filt.excluded(child_rel, True):
                    continue
                child_fd = _open_child_dir(fd, child.name, st, path, skips)
                if child_fd is None:
                    continue
                entry = ScanEntry(path, abspath, "dir", st, fd, child.name)
                included = filt.included(child_rel, True, inside_included=inside)
                if included:
                    yield from pending  # its ancestors, then the folder itself
                    pending.clear()
                    yield entry
                else:
                    pending.append(entry)
                open_dir(child_fd, child_rel, entry, included)
                continue
            if filt.excluded(child_rel, False) or not filt.included(
                child_rel, False, inside_included=inside
            ):
                continue
            if fmt in _SPECIAL:
                skips.skip(path, _SPECIAL[fmt])
                continue
            kind = "symlink" if fmt == stat.S_IFLNK else "file"
            # Emit the ancestors this entry needs, outermost first.
            yield from pending
            pending.clear()
            yield ScanEntry(path, abspath, kind, st, fd, child.name)
    finally:
        if root_fd >= 0:
            os.close(root_fd)
        for *_, fd in stack:
            os.close(fd)


def _open_child_dir(
    parent_fd: int, name: str, st: os.stat_result, path: str, skips: SkipLog
) -> int | None:
    """Open a folder found by the walk, never through a link; None (skipped) if it was
    replaced meanwhile or cannot be opened."""
    try:
        fd = os.open(name, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=parent_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            skips.skip(path + "/", "changed type during backup")
        else:
            skips.skip(path + "/", f"directory unreadable: {os_reason(exc)}")
        return None
    now = os.fstat(fd)
    if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
        os.close(fd)
        skips.skip(path + "/", "changed during backup")
        return None
    return fd
