"""Archiving one scanned entry: its tar header, its data (read, or referenced from the
parent backup when unchanged), and its manifest entry.
"""

from __future__ import annotations

import hashlib
import os
import stat
from typing import Any

from backapp.engine.backup.parent import ParentCursor
from backapp.engine.backup.scan import ScanEntry, SkipLog, os_reason
from backapp.engine.format.layout import BackupStats
from backapp.engine.format.manifest import Entry
from backapp.engine.format.tarstream import TarSink, tar_header
from backapp.engine.fsmeta import data_extents, holes_of, read_xattrs
from backapp.engine.progress import Progress, Throttle
from backapp.errors import XattrReadError, XattrUnsupportedError

_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
_NOATIME = getattr(os, "O_NOATIME", 0)
_ZEROS = bytes(1024 * 1024)


class EntryArchiver:
    """Turns scanned entries into tar members and manifest entries, counting as it goes."""

    def __init__(
        self,
        *,
        parent: ParentCursor | None,
        skips: SkipLog,
        progress: Progress,
        report: Throttle,
    ) -> None:
        self.parent = parent
        self.skips = skips
        self.progress = progress
        self.report = report
        self.stats = BackupStats()
        self.requires: set[str] = set()  # older backups whose data this one references
        self.hardlinks: dict[tuple[int, int], tuple[str, bool]] = {}
        self._noatime = _NOATIME
        self._no_xattrs: set[int] = set()  # devices whose filesystem has no attributes

    def archive(self, sink: TarSink, item: ScanEntry) -> Entry | None:
        """Given a scanned entry, write it to the tar stream (or reference it); return its
        manifest entry, or None if it was skipped."""
        st = item.st
        if item.kind == "dir":
            self.stats.dirs += 1
            entry = _meta_entry(item.path, "dir", st)
            entry.xattrs = self._xattrs(item, item.proc_path(), follow=item.dir_fd is None)
            sink.write(_header(entry))
            self._lookup_parent(item.path)
            return entry
        if item.kind == "symlink":
            return self._archive_symlink(sink, item)
        return self._archive_file(sink, item)

    def _archive_symlink(self, sink: TarSink, item: ScanEntry) -> Entry | None:
        st = item.st
        link_key = (st.st_dev, st.st_ino)
        if st.st_nlink > 1 and link_key in self.hardlinks:  # a hard link to a symlink
            return self._hardlink(sink, item, link_key)
        try:
            name, dir_fd = item.at
            target = os.readlink(name, dir_fd=dir_fd)
        except OSError as exc:
            self.skips.skip(item.path, os_reason(exc))
            return None
        entry = _meta_entry(item.path, "symlink", st, target=target)
        entry.xattrs = self._xattrs(item, item.proc_path(), follow=False)
        sink.write(_header(entry))
        self.stats.symlinks += 1
        self._done_file(0)
        self._lookup_parent(item.path)
        if st.st_nlink > 1:
            self.hardlinks[link_key] = (item.path, True)
        return entry

    def _hardlink(self, sink: TarSink, item: ScanEntry, link_key: tuple[int, int]) -> Entry:
        first, in_tar = self.hardlinks[link_key]
        entry = _meta_entry(item.path, "hardlink", item.st, target=first)
        if in_tar:  # an unchanged first link is not in this tar: tar xzf could not link it
            sink.write(_header(entry))
        self.stats.hardlinks += 1
        self._done_file(0)
        self._lookup_parent(item.path)
        return entry

    def _xattrs(
        self, item: ScanEntry, where: int | str, *, follow: bool = True
    ) -> dict[str, bytes] | None:
        """Given an entry and its descriptor (or a path, followed only with ``follow``),
        return its extended attributes; unreadable ones are a warning, not a skip."""
        if item.st.st_dev in self._no_xattrs:
            return None
        try:
            return read_xattrs(where, follow=follow or isinstance(where, int))
        except XattrUnsupportedError:
            self._no_xattrs.add(item.st.st_dev)
        except XattrReadError as exc:
            self.skips.warn(item.path, f"extended attributes not readable: {exc}")
        return None

    def _archive_file(self, sink: TarSink, item: ScanEntry) -> Entry | None:
        st = item.st
        self.progress.current = item.path
        link_key = (st.st_dev, st.st_ino)
        if st.st_nlink > 1 and link_key in self.hardlinks:
            return self._hardlink(sink, item, link_key)

        previous = self._lookup_parent(item.path)
        if previous is not None and _unchanged(previous, st) and self._usable(previous):
            entry = unchanged_entry(item.path, st, previous)
            entry.offset = previous.offset
            entry.backup = previous.backup or self.parent_id
            assert entry.backup is not None
            self.requires.add(entry.backup)
            self.stats.files += 1
            self.stats.unchanged_files += 1
            self.stats.total_bytes += entry.size
            if st.st_nlink > 1:
                self.hardlinks[link_key] = (item.path, False)
            self._done_file(entry.size)
            return entry

        if previous is None and self.parent is not None and self.parent.may_know(st.st_size):
            moved = self._reference_known(item)
            if moved is not None:
                if st.st_nlink > 1:
                    self.hardlinks[link_key] = (item.path, False)
                return moved
        stored = self._store_file(sink, item)
        if stored is None:
            return None
        if previous is None:
            self.stats.new_files += 1
        else:
            self.stats.changed_files += 1
        if st.st_nlink > 1:
            self.hardlinks[link_key] = (item.path, True)
        return stored

    def _reference_known(self, item: ScanEntry) -> Entry | None:
        """Given a new path, reference its content if the parent chain already stores it."""
        assert self.parent is not None
        fd = self._open(item)
        if fd is None:
            return None
        try:
            st = os.fstat(fd)
            digest = hashlib.sha256()
            with os.fdopen(os.dup(fd), "rb", buffering=0) as f:
                for chunk in iter(lambda: f.read(1024 * 1024), b""):
                    digest.update(chunk)
            after = os.fstat(fd)
        except OSError:
            return None  # let the normal path read it (and report what goes wrong)
        finally:
            os.close(fd)
        if (after.st_size, after.st_mtime_ns) != (st.st_size, st.st_mtime_ns):
            return None
        known = self.parent.known(st.st_size, digest.hexdigest())
        if known is None or known.backup not in self.parent.data_backups:
            return None
        entry = _meta_entry(item.path, "file", st)
        entry.size = st.st_size
        entry.sha256 = digest.hexdigest()
        entry.backup = known.backup
        entry.offset = known.offset
        entry.sparse = known.sparse
        self.requires.add(known.backup)
        self.stats.files += 1
        self.stats.renamed_files += 1
        self.stats.total_bytes += entry.size
        self._done_file(entry.size)
        return entry

    def _usable(self, previous: Entry) -> bool:
        """Given the parent's entry of an unchanged file, return whether its data may be
        referenced: it is in the parent or a backup the parent requires (all checked to
        exist). Anything else is read and stored anew."""
        assert self.parent is not None
        return (previous.backup or self.parent.info.backup_id) in self.parent.data_backups

    @property
    def parent_id(self) -> str | None:
        return self.parent.info.backup_id if self.parent else None

    def _lookup_parent(self, path: str) -> Entry | None:
        return self.parent.lookup(path) if self.parent is not None else None

    def _store_file(self, sink: TarSink, item: ScanEntry) -> Entry | None:
        fd = self._open(item)
        if fd is None:
            return None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                self.skips.skip(item.path, "changed type during backup")
                return None
            entry = _meta_entry(item.path, "file", st)
            entry.xattrs = self._xattrs(item, fd)
            sink.write(_header(entry, size=st.st_size))
            entry.offset = sink.offset
            digest = hashlib.sha256()
            extents = data_extents(fd, st.st_size) if st.st_blocks * 512 < st.st_size else None
            entry.sparse = extents is not None
            try:
                if extents is None:
                    got = sink.read_from(fd, st.st_size, lambda view: self._read(digest, view))
                else:
                    got = self._read_sparse(sink, fd, st.st_size, extents, digest)
            except OSError as exc:
                # The header already promised st_size bytes: keep what was read, pad the rest.
                got = sink.offset - entry.offset
                self.skips.warn(item.path, f"read error, stored partially: {os_reason(exc)}")
                entry.partial = True
            if got < st.st_size:
                sink.zeros(st.st_size - got)
                if not entry.partial:
                    self.skips.warn(item.path, "file shrank while being read, stored as read")
                    entry.partial = True
            sink.pad()
            after = os.fstat(fd)
            if not entry.partial and (
                after.st_size != st.st_size or after.st_mtime_ns != st.st_mtime_ns
            ):
                self.skips.warn(item.path, "file changed while being read, stored as read")
                entry.partial = True
            entry.size = got
            entry.sha256 = digest.hexdigest()
            self.stats.files += 1
            self.stats.total_bytes += got
            self._done_file(got, counted=True)
            return entry
        finally:
            os.close(fd)

    def _read_sparse(
        self, sink: TarSink, fd: int, size: int, extents: list[tuple[int, int]], digest: Any
    ) -> int:
        """Given a sparse file, copy its data extents and write its holes as zeros (not
        read); return the bytes stored (less if the file shrank). Raise OSError."""
        done = 0
        for is_data, start, end in holes_of(extents, size):
            if is_data:
                os.lseek(fd, start, os.SEEK_SET)
                got = sink.read_from(fd, end - start, lambda view: self._read(digest, view))
                done += got
                if got < end - start:
                    return done
                continue
            left = end - start
            while left:
                n = min(left, len(_ZEROS))
                sink.zeros(n)
                self._read(digest, memoryview(_ZEROS)[:n])
                left -= n
                done += n
        return done

    def _open(self, item: ScanEntry) -> int | None:
        try:
            name, dir_fd = item.at
            return os.open(name, _OPEN_FLAGS | self._noatime, dir_fd=dir_fd)
        except PermissionError as exc:
            if self._noatime:  # O_NOATIME needs ownership; retry without it from now on
                self._noatime = 0
                return self._open(item)
            self.skips.skip(item.path, os_reason(exc))
        except OSError as exc:
            self.skips.skip(item.path, os_reason(exc))
        return None

    def _read(self, digest: Any, view: memoryview) -> None:
        """Hash a piece of a file just read, and count it (big files show progress too)."""
        digest.update(view)
        self.progress.bytes_done += len(view)
        self.report(self.progress)

    def _done_file(self, size: int, *, counted: bool = False) -> None:
        self.progress.files_done += 1
        if not counted:
            self.progress.bytes_done += size


def _meta_entry(path: str, kind: str, st: os.stat_result, target: str | None = None) -> Entry:
    return Entry(
        path=path,
        type=kind,
        mode=stat.S_IMODE(st.st_mode),
        uid=st.st_uid,
        gid=st.st_gid,
        mtime_ns=st.st_mtime_ns,
        target=target,
        inode=st.st_ino if kind == "file" else 0,
        ctime_ns=st.st_ctime_ns if kind == "file" else 0,
    )


def unchanged_entry(path: str, st: os.stat_result, previous: Entry) -> Entry:
    """Given an unchanged file's path, fresh lstat and the parent's entry, return its entry
    (content as the parent stored it; its data location is the caller's to set)."""
    entry = _meta_entry(path, "file", st)
    entry.size = previous.size
    entry.sha256 = previous.sha256
    entry.sparse = previous.sparse
    entry.xattrs = previous.xattrs  # a change of attributes changes the ctime
    return entry


def _header(entry: Entry, size: int = 0) -> bytes:
    return tar_header(
        entry.path,
        entry.type,
        mode=entry.mode,
        uid=entry.uid,
        gid=entry.gid,
        mtime_ns=entry.mtime_ns,
        size=size,
        target=entry.target or "",
        xattrs=entry.xattrs,
    )


def _unchanged(previous: Entry, st: os.stat_result) -> bool:
    """Given the parent's entry and a fresh lstat, return whether the file is unchanged.

    Like restic: size, mtime, inode and ctime must all match; a file stored while it
    was changing is always read again.
    """
    return (
        previous.type == "file"
        and not previous.partial
        and previous.size == st.st_size
        and previous.mtime_ns == st.st_mtime_ns
        and previous.inode == st.st_ino
        and previous.ctime_ns == st.st_ctime_ns
    )
