"""Restore a backup (all of it, or chosen paths) into a target folder.

Restore is driven by the manifest, read once through a Snapshot (every entry
checked; what fails is refused with a message and the rest restored), so the
archive's own headers are never trusted to name a path. Everything is written
through descriptors of the target opened without following links
(engine/restore/target.py): nothing is ever written outside the target or through a
symlink, whether the backup made it or it was already there. Files are written
unnamed, checked against their SHA-256 and given their metadata, and only then
linked under their name; symlinks and hard links come after the files, folder
metadata last (deepest first).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import stat
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backapp.domain.restore import DEFAULT_EXISTING, ExistingPolicy
from backapp.engine.format.blockindex import index_key
from backapp.engine.format.crypto import MasterKey
from backapp.engine.format.layout import Repository
from backapp.engine.format.manifest import Entry
from backapp.engine.fsmeta import SparseWriter, apply_xattrs
from backapp.engine.progress import CancelToken, Progress, ProgressCallback, Throttle
from backapp.engine.restore.plan import RestorePlan, Selection
from backapp.engine.restore.snapshot import Snapshot
from backapp.engine.restore.target import NewFile, TargetDir
from backapp.errors import BackappError, RestoreError, TargetNotEmptyError

logger = logging.getLogger(__name__)


@dataclass
class RestoreResult:
    """What a restore wrote, skipped and could not restore."""

    backup_id: str
    target: str
    files: int = 0
    dirs: int = 0
    symlinks: int = 0
    hardlinks: int = 0
    bytes: int = 0
    skipped_existing: int = 0
    errors: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[tuple[str, str]] = field(default_factory=list)
    duration_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """Return whether everything selected was restored exactly."""
        return not self.errors

    @property
    def files_restored(self) -> int:
        """Return the number of files, symlinks and hard links restored."""
        return self.files + self.symlinks + self.hardlinks

    def to_json(self) -> dict[str, Any]:
        """Return the result as a camelCase JSON object."""
        return {
            "backupId": self.backup_id,
            "status": "completed" if self.ok else "failed",
            "target": self.target,
            "filesRestored": self.files_restored,
            "dirsRestored": self.dirs,
            "bytesRestored": self.bytes,
            "skippedExisting": self.skipped_existing,
            "errors": [{"path": p, "message": m} for p, m in self.errors],
            "warnings": [{"path": p, "message": m} for p, m in self.warnings],
            "durationSeconds": round(self.duration_seconds, 3),
        }


def run_restore(
    repo: Repository,
    backup: str,
    target: Path,
    *,
    master: MasterKey | None = None,
    include: list[str] | None = None,
    existing: ExistingPolicy = DEFAULT_EXISTING,
    restore_owner: bool | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> RestoreResult:
    """Given a repository, a backup ('latest' or an id) and a target folder, restore into it.

    With ``existing="refuse"`` a non-empty target is refused; the other policies decide
    what happens to files already there. The target ``/`` restores to the original
    locations. Return the result: its ``errors`` name every entry that could not be
    restored exactly (refused, damaged, not writable), its ``warnings`` what was restored
    with less than everything (attributes the filesystem refused, files that changed
    while backed up). Raise BackupNotFoundError, RestoreError, IntegrityError,
    StorageError, CancelledError.
    """
    started = time.monotonic()
    cancel = cancel or CancelToken()
    repo = repo.with_key(master)
    backup_id = repo.resolve(backup)
    target = target.absolute()
    select = Selection(include) if include else None
    if restore_owner is None:
        restore_owner = os.geteuid() == 0
    with Snapshot(repo, backup_id, master) as snap:
        # Pass 1 over the local manifest: check every entry, plan.
        plan = RestorePlan(select)
        for entry in snap.entries():
            plan.add(entry)
        targets = snap.link_targets(plan.known_entries(snap.link_target_paths))
        if select is not None and not plan.anything():
            wanted = ", ".join(select.patterns)
            raise RestoreError(f"nothing in backup {backup_id} matches {wanted}")
        _prepare_target(target, existing)
        in_place = target == Path("/")
        root = TargetDir(str(target), _followed(snap.info.sources) if in_place else frozenset())
        job = _RestoreJob(snap, root, existing, restore_owner, progress, cancel)
        try:
            kept = job.kept_targets(plan.link_targets) if existing == "skip" else None
            plan.settle_links(targets, snap.bad_links(targets), kept)
            job.result.errors.extend(snap.problems)  # refused entries: never restored
            job.result.warnings.extend(
                (index_key(repo.base, name), problem) for name, problem in snap.index_problems
            )
            job.progress.files_total = plan.file_count
            job.progress.bytes_total = plan.byte_count
            job.progress.counting = False
            job.run(plan)
        finally:
            root.close()
            job.result.duration_seconds = time.monotonic() - started
    logger.info(
        "restore of %s into %s: %d files, %d bytes, %d errors",
        backup_id,
        target,
        job.result.files,
        job.result.bytes,
        len(job.result.errors),
    )
    return job.result


def _followed(sources: list[str]) -> frozenset[str]:
    """Given a backup's source folders, return the paths a restore to the original location
    may follow when they are symlinks: the sources and the folders above them."""
    paths: set[str] = set()
    for source in sources:
        parts = source.strip("/").split("/")
        paths.update("/".join(parts[:i]) for i in range(1, len(parts) + 1) if parts[0])
    return frozenset(paths)


def _prepare_target(target: Path, existing: ExistingPolicy) -> None:
    if target.is_symlink() and existing == "refuse":
        raise RestoreError(f"restore target {target} is a symlink; give the real folder")
    if target.exists():
        if not target.is_dir():
            raise RestoreError(f"restore target {target} exists and is not a folder")
        if existing == "refuse" and any(target.iterdir()):
            raise TargetNotEmptyError(
                f"restore target {target} is not empty; choose an empty folder or "
                "allow overwriting (--overwrite)"
            )
    else:
        try:
            target.mkdir(parents=True)
        except OSError as exc:
            raise RestoreError(f"cannot create restore target {target}: {exc.strerror}") from exc


@dataclass(frozen=True)
class _Made:
    """An entry this restore made that hard links may link to: where, and its inode."""

    rel: str
    identity: tuple[int, int]


class _RestoreJob:
    def __init__(
        self,
        snap: Snapshot,
        root: TargetDir,
        existing: ExistingPolicy,
        restore_owner: bool,
        progress: ProgressCallback | None,
        cancel: CancelToken,
    ) -> None:
        self.snap = snap
        self.root = root
        self.existing = existing
        self.replace = existing == "overwrite"
        self.owner = restore_owner
        self.cancel = cancel
        self.progress = Progress(phase="restoring")
        self.report = Throttle(progress)
        self.result = RestoreResult(backup_id=snap.backup_id, target=root.root)
        self._made: dict[str, _Made] = {}  # link targets restored, by their backup path
        self._link_targets: set[str] = set()
        self._dir_meta: list[Entry] = []
        self._xattr_failures = 0
        self._current: Entry | None = None  # the file being opened (for messages)

    def kept_targets(self, link_targets: set[str]) -> set[str]:
        """Given the paths hard links link to, return those already in the target (which
        the skip policy keeps: the links must not link to a local file)."""
        kept = set()
        for path in link_targets:
            with contextlib.suppress(RestoreError, OSError):
                if self.root.lstat(path) is not None:
                    kept.add(path)
        return kept

    def run(self, plan: RestorePlan) -> None:
        self._link_targets = plan.link_targets
        for entry in plan.dirs:
            self.cancel.raise_if_cancelled()
            self._make_dir(entry)
        # One pass over the manifest per backup holding data, each in that archive's order.
        for source in sorted(plan.sources, key=lambda s: s or ""):
            entries = plan.files_from(self.snap.entries() if plan.kept is None else (), source)
            self._restore_files(source, entries)
        for entry in plan.links:
            self.cancel.raise_if_cancelled()
            self._make_link(entry)
        # Folder metadata last, deepest first, so writing children does not disturb it.
        for entry in sorted(self._dir_meta, key=lambda e: e.path.count("/"), reverse=True):
            self._apply_dir_meta(entry)
        if self._xattr_failures:
            self.result.warnings.append(
                ("", f"{self._xattr_failures} extended attribute(s) could not be set")
            )
        self.progress.phase = "completed"
        self.report(self.progress, force=True)

    # -- folders ---------------------------------------------------------------

    def _make_dir(self, entry: Entry) -> None:
        try:
            made = self.root.make_dir(entry.path, replace_link=self.replace)
        except (RestoreError, OSError) as exc:
            self._error(entry.path, exc)
            return
        self.result.dirs += 1
        if made or self.replace:
            self._dir_meta.append(entry)

    def _apply_dir_meta(self, entry: Entry) -> None:
        try:
            fd = self.root.open_dir(entry.path)
        except (RestoreError, OSError) as exc:
            self._error(entry.path, exc)
            return
        try:
            self._apply_meta(fd, entry)
        except OSError as exc:
            self._error(entry.path, exc)
        finally:
            os.close(fd)

    # -- files ---------------------------------------------------------------

    def _restore_files(self, backup_id: str | None, entries: Iterable[Entry]) -> None:
        try:
            archive = self.snap.archive(backup_id)
        except BackappError as exc:
            where = backup_id or self.snap.backup_id
            for entry in entries:
                self._error(entry.path, RestoreError(f"its data in backup {where}: {exc}"))
            return
        # Usually one file is open at a time; entries sharing data (same offset) overlap.
        open_files: dict[int, _OpenFile] = {}
        try:
            for piece in archive.pieces(entries):
                handle = open_files.get(id(piece.entry))
                if handle is None:
                    self.cancel.raise_if_cancelled()
                    handle = open_files[id(piece.entry)] = self._open_file(piece.entry)
                if piece.error is not None:
                    handle.damaged = handle.damaged or piece.error
                    handle.skip(piece.lost)  # no bytes, but this much of the file
                else:
                    handle.write(piece.data)
                    self.progress.bytes_done += len(piece.data)
                self.report(self.progress)
                if handle.written >= piece.entry.size:
                    del open_files[id(piece.entry)]
                    self._finish_file(handle)
        finally:
            for handle in open_files.values():  # interrupted mid-file: no partial files left
                handle.discard(self.root)

    def _open_file(self, entry: Entry) -> _OpenFile:
        self.progress.current = entry.path
        self._current = entry
        try:
            rel = self._destination(entry.path)
            if rel is None:
                self.result.skipped_existing += 1
                return _OpenFile(entry, None, "")
            # Owner read and write are needed to write it; the final mode comes after.
            return _OpenFile(entry, self.root.new_file(rel, (entry.mode & 0o777) | 0o600), rel)
        except (RestoreError, OSError) as exc:
            self._error(entry.path, exc)
            return _OpenFile(entry, None, "")

    def _finish_file(self, handle: _OpenFile) -> None:
        """Check a completely written file; name it with its metadata, or drop it."""
        entry = handle.entry
        self.progress.files_done += 1
        if handle.new is None:
            return
        problem: BaseException | None = handle.failure
        if problem is None and handle.damaged is not None:
            problem = RestoreError(f"not restored: {handle.damaged}")
        if problem is None and (
            handle.written != entry.size or handle.digest.hexdigest() != entry.sha256
        ):
            problem = RestoreError(
                "restored content does not match the backup's SHA-256 (damaged data)"
            )
        if problem is None:
            try:
                handle.finish()
                self._apply_meta(handle.new.fd, entry)
                self.root.place(handle.new, handle.rel, replace=self.replace)
                if entry.path in self._link_targets:
                    st = os.fstat(handle.new.fd)
                    self._made[entry.path] = _Made(handle.rel, (st.st_dev, st.st_ino))
            except (RestoreError, OSError) as exc:
                problem = exc
        if problem is not None:
            self._error(entry.path, problem)
            handle.discard(self.root)  # never leave a file that is not what was backed up
            return
        self.root.close_file(handle.new)
        handle.new = None
        self.result.files += 1
        self.result.bytes += handle.written
        if entry.partial:
            self.result.warnings.append(
                (entry.path, "it changed while it was backed up: restored as it was read")
            )

    def _destination(self, path: str) -> str | None:
        """Given an entry path, clear the way for it per the policy; return where to write
        it (None: keep what is there). Raise RestoreError."""
        st = self.root.lstat(path)
        if st is None:
            return path
        where = self.root.where(path)
        if self.existing == "refuse":
            raise RestoreError(f"{where} already exists")
        if self.existing == "skip":
            self._note_kept(path, st)
            return None
        if self.existing == "keep-both":
            return self.root.unique_name(path, f".restored-{self.snap.backup_id}")
        if stat.S_ISDIR(st.st_mode):
            raise RestoreError(f"{where} is a folder in the target; not replaced by a file")
        return path

    def _note_kept(self, path: str, st: os.stat_result) -> None:
        """Under ``skip``: a kept file that differs from the backup (size or mtime) is said."""
        entry = self._current
        if entry is None or entry.path != path or entry.type != "file":
            return
        if not stat.S_ISREG(st.st_mode):
            what = "is not a regular file"
        elif st.st_size != entry.size:
            what = f"has {st.st_size} bytes, the backup's {entry.size}"
        elif st.st_mtime_ns != entry.mtime_ns:
            what = "has another modification time than the backup's"
        else:
            return
        self.result.warnings.append((path, f"kept the file already there, which {what}"))

    def _apply_meta(self, fd: int, entry: Entry) -> None:
        """Given an open file or folder, give it its owner, mode, attributes and mtime.

        Works on the descriptor (no path look-ups) and skips what already matches: on a
        tree of small files these calls are much of a restore's time. Raise OSError.
        """
        st = os.fstat(fd)
        chowned = False
        if self.owner and (st.st_uid, st.st_gid) != (entry.uid, entry.gid):
            os.fchown(fd, entry.uid, entry.gid)
            chowned = True  # which clears setuid/setgid bits: set the mode after it
        if chowned or stat.S_IMODE(st.st_mode) != entry.mode:
            os.fchmod(fd, entry.mode)
        if entry.xattrs:
            self._set_xattrs(fd, entry)
        os.utime(fd, ns=(entry.mtime_ns, entry.mtime_ns))

    def _set_xattrs(self, target: int | str, entry: Entry, *, follow: bool = True) -> None:
        assert entry.xattrs is not None
        failed = apply_xattrs(target, entry.xattrs, follow=follow)
        if failed:
            self._xattr_failures += len(failed)
            self.result.warnings.append(
                (entry.path, "extended attributes not set: " + "; ".join(failed))
            )

    # -- links ---------------------------------------------------------------

    def _make_link(self, entry: Entry) -> None:
        assert entry.target is not None
        self.progress.current = entry.path
        try:
            rel = self._destination(entry.path)
            if rel is None:
                self.result.skipped_existing += 1
            elif entry.type == "symlink":
                self.root.symlink(rel, entry.target, replace=self.replace)
                self._symlink_meta(rel, entry)
                self.result.symlinks += 1
            else:
                made = self._made.get(entry.target)
                if made is None:
                    raise RestoreError(f"hard link target {entry.target!r} was not restored")
                self.root.hardlink(rel, made.rel, made.identity, replace=self.replace)
                self.result.hardlinks += 1
                if entry.path in self._link_targets:
                    self._made[entry.path] = _Made(rel, made.identity)
        except (RestoreError, OSError) as exc:
            self._error(entry.path, exc)
        self.progress.files_done += 1

    def _symlink_meta(self, rel: str, entry: Entry) -> None:
        parent_fd, name = self.root.parent(rel, create=False)
        if self.owner:
            os.chown(name, entry.uid, entry.gid, dir_fd=parent_fd, follow_symlinks=False)
        if entry.xattrs:
            # Through the folder's descriptor: /proc/self/fd/N is that very folder.
            self._set_xattrs(f"/proc/self/fd/{parent_fd}/{name}", entry, follow=False)
        os.utime(name, ns=(entry.mtime_ns, entry.mtime_ns), dir_fd=parent_fd, follow_symlinks=False)
        if entry.path in self._link_targets:
            st = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
            self._made[entry.path] = _Made(rel, (st.st_dev, st.st_ino))

    def _error(self, path: str, exc: BaseException) -> None:
        message = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        logger.warning("restore: %s: %s", path, message)
        self.result.errors.append((path, message))


class _OpenFile:
    """A file being restored: its bytes hashed as they come, written unless it is skipped."""

    def __init__(self, entry: Entry, new: NewFile | None, rel: str) -> None:
        self.entry = entry
        self.new = new
        self.rel = rel
        self.written = 0
        self.digest = hashlib.sha256()
        self.failure: OSError | None = None
        self.damaged: str | None = None
        self._sparse = SparseWriter(new.fd) if new is not None and entry.sparse else None

    def write(self, data: bytes | memoryview) -> None:
        self.digest.update(data)
        self.written += len(data)
        if self.new is None or self.damaged is not None or self.failure is not None:
            return
        try:
            if self._sparse is not None:
                self._sparse.write(data)
                return
            view = memoryview(data)
            while view:
                n = os.write(self.new.fd, view)
                view = view[n:]
        except OSError as exc:  # e.g. disk full: this file fails, the restore goes on
            self.failure = exc

    def skip(self, count: int) -> None:
        self.written += count

    def finish(self) -> None:
        """Settle the file's length (a sparse file may end in a hole). Raise OSError."""
        if self._sparse is not None:
            self._sparse.finish()

    def discard(self, root: TargetDir) -> None:
        if self.new is not None:
            root.discard(self.new)
            self.new = None
