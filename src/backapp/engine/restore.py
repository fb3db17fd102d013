"""Restore a backup (all of it, or chosen paths) into a target folder.

Restore is driven by the manifest: it says what each entry is and where its
bytes live (which backup, which offset of that backup's tar stream), so the
archive's own headers are never trusted to name a path. Every path is checked
before anything is written: no absolute paths, no ``..``, nothing written
through a symlink. Symlinks and hard links are made last, directory modes and
mtimes after their contents, and every file's SHA-256 is checked as it is
written.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import stat
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pathspec

from backapp.engine.crypto import MasterKey
from backapp.engine.layout import BackupInfo, Repository
from backapp.engine.manifest import Entry, ManifestReader, Trailer
from backapp.engine.parent import open_manifest, spool_manifest
from backapp.engine.progress import CancelToken, Progress, ProgressCallback, Throttle
from backapp.engine.reader import ArchiveReader
from backapp.engine.restore_plan import RestorePlan, check_entry_path
from backapp.errors import RestoreError, TargetNotEmptyError

logger = logging.getLogger(__name__)

ExistingPolicy = Literal["refuse", "overwrite", "skip", "keep-both"]


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
    duration_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """Return whether everything selected was restored exactly."""
        return not self.errors

    def to_json(self) -> dict[str, Any]:
        """Return the result as a camelCase JSON object."""
        return {
            "backupId": self.backup_id,
            "status": "completed" if self.ok else "failed",
            "target": self.target,
            "filesRestored": self.files + self.symlinks + self.hardlinks,
            "dirsRestored": self.dirs,
            "bytesRestored": self.bytes,
            "skippedExisting": self.skipped_existing,
            "errors": [{"path": p, "message": m} for p, m in self.errors],
            "durationSeconds": round(self.duration_seconds, 3),
        }


def _selector(include: list[str] | None) -> pathspec.PathSpec[Any] | None:
    if not include:
        return None
    return pathspec.GitIgnoreSpec.from_lines(include)


def run_restore(
    repo: Repository,
    backup: str,
    target: Path,
    *,
    master: MasterKey | None = None,
    include: list[str] | None = None,
    existing: ExistingPolicy = "refuse",
    restore_owner: bool | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> RestoreResult:
    """Given a repository, a backup ('latest' or an id) and a target folder, restore into it.

    With ``existing="refuse"`` a non-empty target is refused; the other policies
    decide what happens to files already there. Return the result (its ``errors``
    name any file that could not be restored exactly). Raise BackupNotFoundError,
    RestoreError, IntegrityError, StorageError, CancelledError.
    """
    started = time.monotonic()
    cancel = cancel or CancelToken()
    backup_id = repo.resolve(backup)
    info = repo.load(backup_id)
    target = target.absolute()
    _prepare_target(target, existing)
    select = _selector(include)
    if restore_owner is None:
        restore_owner = os.geteuid() == 0

    # Pass 1: read the manifest (downloaded once, kept locally), check every path, plan.
    name = f"manifest of backup {backup_id}"
    plan = RestorePlan(select)
    with spool_manifest(repo, info, master) as spool:

        def manifest() -> Iterator[Entry]:
            spool.seek(0)
            return iter(ManifestReader(spool, name))

        reader = ManifestReader(spool, name)
        for entry in reader:
            check_entry_path(entry.path)
            if entry.type == "hardlink" and entry.target is not None:
                check_entry_path(entry.target)
            plan.add(entry)
        own_trailer = reader.read_trailer()
        if plan.missing_link_targets():
            # Hard links whose first path was not selected: restore them from its data.
            for entry in manifest():
                plan.resolve_link_target(entry)
        if select is not None and not plan.anything():
            raise RestoreError(f"nothing in backup {backup_id} matches {', '.join(include or [])}")
        job = _RestoreJob(repo, info, target, master, existing, restore_owner, progress, cancel)
        job.trailers[backup_id] = own_trailer
        job.progress.files_total = plan.file_count
        job.progress.bytes_total = plan.byte_count
        job.progress.counting = False
        try:
            job.run(plan, manifest)
        finally:
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


class _RestoreJob:
    def __init__(
        self,
        repo: Repository,
        info: BackupInfo,
        target: Path,
        master: MasterKey | None,
        existing: ExistingPolicy,
        restore_owner: bool,
        progress: ProgressCallback | None,
        cancel: CancelToken,
    ) -> None:
        self.repo = repo
        self.info = info
        self.root = str(target)
        self.master = master
        self.existing = existing
        self.owner = restore_owner
        self.cancel = cancel
        self.progress = Progress(phase="restoring")
        self.report = Throttle(progress)
        self.result = RestoreResult(backup_id=info.backup_id, target=self.root)
        self.trailers: dict[str, Trailer] = {}  # block tables of manifests already read
        self._safe_dirs: set[str] = {""}
        self._symlinks: set[str] = set()

    def run(self, plan: RestorePlan, manifest: Callable[[], Iterator[Entry]]) -> None:
        self._symlinks = plan.symlink_paths
        for entry in plan.dirs:
            self.cancel.raise_if_cancelled()
            self._make_dir(entry)
        # One pass over the manifest per backup holding data, each in that archive's order.
        for source in sorted(plan.sources, key=lambda s: s or ""):
            entries = plan.files_from(manifest() if plan.kept is None else iter(()), source)
            self._restore_files(source, entries)
        for entry in plan.links:
            self.cancel.raise_if_cancelled()
            self._make_link(entry)
        # Directory metadata last, deepest first, so writing children does not disturb it.
        for entry in sorted(plan.dirs, key=lambda e: e.path.count("/"), reverse=True):
            self._apply_meta(entry, self._dest(entry.path), is_dir=True)
        self.progress.phase = "completed"
        self.report(self.progress, force=True)

    # -- paths ---------------------------------------------------------------

    def _dest(self, path: str) -> str:
        return f"{self.root}/{path}"

    def _ensure_parent(self, path: str) -> None:
        """Create the parents of path, refusing to pass through a symlink or a file."""
        parent = path.rpartition("/")[0]
        if parent in self._safe_dirs:
            return
        parts = parent.split("/")
        for i in range(1, len(parts) + 1):
            sub = "/".join(parts[:i])
            if sub in self._safe_dirs:
                continue
            if sub in self._symlinks:
                raise RestoreError(f"refusing {path!r}: it lies beneath the symlink {sub!r}")
            full = self._dest(sub)
            try:
                st = os.lstat(full)
            except FileNotFoundError:
                os.mkdir(full, 0o700)
            else:
                if stat.S_ISLNK(st.st_mode):
                    raise RestoreError(
                        f"refusing {path!r}: {full} is a symlink and restore never writes "
                        "through links"
                    )
                if not stat.S_ISDIR(st.st_mode):
                    raise RestoreError(f"refusing {path!r}: {full} exists and is not a folder")
            self._safe_dirs.add(sub)

    def _make_dir(self, entry: Entry) -> None:
        try:
            self._ensure_parent(entry.path)
            full = self._dest(entry.path)
            try:
                os.mkdir(full, 0o700)
            except FileExistsError:
                st = os.lstat(full)
                if not stat.S_ISDIR(st.st_mode):
                    raise RestoreError(
                        f"refusing {entry.path!r}: {full} exists and is not a folder"
                    ) from None
            self._safe_dirs.add(entry.path)
            self.result.dirs += 1
        except (RestoreError, OSError) as exc:
            self._error(entry.path, exc)

    # -- files ---------------------------------------------------------------

    def _restore_files(self, backup_id: str | None, entries: Iterable[Entry]) -> None:
        source = self.info
        if backup_id is not None and backup_id != self.info.backup_id:
            source = self.repo.load(backup_id)
        trailer = self.trailers.get(source.backup_id)
        if trailer is None:
            trailer = open_manifest(self.repo, source, self.master).read_trailer()
        archive = ArchiveReader(self.repo, source, trailer, self.master)
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
                    handle.written += piece.lost  # no bytes, but this much of the file
                else:
                    handle.write(piece.data)
                    self.progress.bytes_done += len(piece.data)
                self.report(self.progress)
                if handle.written >= piece.entry.size:
                    del open_files[id(piece.entry)]
                    self._finish_file(handle)
        finally:
            for handle in open_files.values():  # interrupted mid-file: no partial files left
                handle.close()
                if handle.dest is not None:
                    with contextlib.suppress(OSError):
                        os.unlink(handle.dest)

    def _open_file(self, entry: Entry) -> _OpenFile:
        self.progress.current = entry.path
        try:
            self._ensure_parent(entry.path)
            dest = self._existing(entry.path)
            if dest is None:
                self.result.skipped_existing += 1
                return _OpenFile(entry, None, None)
            # Created with its final permission bits when it can be (usually no chmod
            # later); owner read and write are needed to write it.
            fd = os.open(
                dest,
                os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                (entry.mode & 0o777) | 0o600,
            )
            return _OpenFile(entry, fd, dest)
        except (RestoreError, OSError) as exc:
            self._error(entry.path, exc)
            return _OpenFile(entry, None, None)

    def _finish_file(self, handle: _OpenFile) -> None:
        """Check a completely written file; keep it with its metadata, or remove it."""
        entry = handle.entry
        self.progress.files_done += 1
        problem: BaseException | None = handle.failure
        if problem is None and handle.damaged is not None:
            problem = RestoreError(f"not restored: {handle.damaged}")
        if problem is None and (
            handle.written != entry.size or handle.digest.hexdigest() != entry.sha256
        ):
            problem = RestoreError(
                "restored content does not match the backup's SHA-256 (damaged data)"
            )
        if problem is None and handle.fd is not None:
            try:
                self._apply_file_meta(handle.fd, entry)
            except OSError as exc:
                problem = exc
        handle.close()
        if handle.dest is None:
            return
        if problem is not None:
            self._error(entry.path, problem)
            with contextlib.suppress(OSError):
                os.unlink(handle.dest)  # never leave a file that is not what was backed up
            return
        self.result.files += 1
        self.result.bytes += handle.written

    def _apply_file_meta(self, fd: int, entry: Entry) -> None:
        """Given a restored file still open, give it its owner, mode and mtime.

        Works on the descriptor (no path look-ups) and skips what already matches: on a
        tree of small files these calls are much of a restore's time.
        """
        st = os.fstat(fd)
        chowned = False
        if self.owner and (st.st_uid, st.st_gid) != (entry.uid, entry.gid):
            os.fchown(fd, entry.uid, entry.gid)
            chowned = True  # which clears setuid/setgid bits: set the mode after it
        if chowned or stat.S_IMODE(st.st_mode) != entry.mode:
            os.fchmod(fd, entry.mode)
        os.utime(fd, ns=(entry.mtime_ns, entry.mtime_ns))

    def _existing(self, path: str) -> str | None:
        """Given an entry path, clear the way for it per the policy; return where to write."""
        dest = self._dest(path)
        try:
            st = os.lstat(dest)
        except FileNotFoundError:
            return dest
        if self.existing == "refuse":
            raise RestoreError(f"{dest} already exists (listed twice in the backup?)")
        if self.existing == "skip":
            return None
        if self.existing == "keep-both":
            n = 0
            while True:
                suffix = f".restored-{self.info.backup_id}" + (f"-{n}" if n else "")
                candidate = dest + suffix
                if not os.path.lexists(candidate):
                    return candidate
                n += 1
        if stat.S_ISDIR(st.st_mode):
            raise RestoreError(f"{dest} is a folder in the target; not replaced by a file")
        os.unlink(dest)  # a file or a link: the link itself goes, never its target
        return dest

    # -- links and metadata ----------------------------------------------------

    def _make_link(self, entry: Entry) -> None:
        assert entry.target is not None
        try:
            self._ensure_parent(entry.path)
            dest = self._existing(entry.path)
            if dest is None:
                self.result.skipped_existing += 1
                return
            if entry.type == "symlink":
                os.symlink(entry.target, dest)
                self._apply_meta(entry, dest, is_link=True)
                self.result.symlinks += 1
            else:
                check_entry_path(entry.target)
                source = self._dest(entry.target)
                if not os.path.isfile(source) or os.path.islink(source):
                    raise RestoreError(f"hard link target {entry.target!r} was not restored")
                os.link(source, dest, follow_symlinks=False)
                self.result.hardlinks += 1
        except (RestoreError, OSError) as exc:
            self._error(entry.path, exc)
        self.progress.files_done += 1

    def _apply_meta(
        self, entry: Entry, dest: str, *, is_dir: bool = False, is_link: bool = False
    ) -> None:
        try:
            if self.owner:
                os.lchown(dest, entry.uid, entry.gid)
            if not is_link:
                os.chmod(dest, entry.mode)
            os.utime(dest, ns=(entry.mtime_ns, entry.mtime_ns), follow_symlinks=not is_link)
        except OSError as exc:
            if is_dir and exc.errno == errno.ENOENT:
                return  # the directory could not be made: already reported
            self._error(entry.path, exc)

    def _error(self, path: str, exc: BaseException) -> None:
        message = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        logger.warning("restore: %s: %s", path, message)
        self.result.errors.append((path, message))


class _OpenFile:
    def __init__(self, entry: Entry, fd: int | None, dest: str | None) -> None:
        self.entry = entry
        self.fd = fd
        self.dest = dest
        self.written = 0
        self.digest = hashlib.sha256()
        self.failure: OSError | None = None
        self.damaged: str | None = None

    def write(self, data: bytes | memoryview) -> None:
        self.digest.update(data)
        self.written += len(data)
        if self.fd is None or self.damaged is not None:
            return
        view = memoryview(data)
        try:
            while view:
                n = os.write(self.fd, view)
                view = view[n:]
        except OSError as exc:  # e.g. disk full: this file fails, the restore goes on
            self.failure = exc
            self.close()

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
