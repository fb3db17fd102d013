"""run_backup: sources -> tar -> compressed blocks -> (encryption) -> storage.

The pipeline streams: file data is read straight into 1 MiB tar blocks, blocks
are compressed on a thread pool, encrypted in order and written to a storage
writer (an S3 multipart upload, or a temp file renamed on commit). Nothing
holds the whole archive, in memory or on disk. The manifest goes up after the
data, and ``backup.json`` last: until it exists the backup does not.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import stat
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from backapp import __version__
from backapp.domain.config import BackupConfig
from backapp.engine.compress import DEFAULT_BLOCK_SIZE, BlockPipeline, Codec, codec_for
from backapp.engine.crypto import DEFAULT_SEGMENT_SIZE, Encryptor, MasterKey
from backapp.engine.layout import (
    BackupInfo,
    BackupStats,
    CompressionInfo,
    Repository,
    StoredObject,
    new_backup_id,
)
from backapp.engine.manifest import Entry, ManifestWriter, Trailer
from backapp.engine.objects import write_object
from backapp.engine.parent import ParentCursor, choose_parent
from backapp.engine.progress import CancelToken, Progress, ProgressCallback, Throttle
from backapp.engine.scan import ScanEntry, SkipLog, check_sources, os_reason, scan
from backapp.engine.streams import file_chunks
from backapp.engine.tarstream import TarSink, tar_header
from backapp.errors import EncryptionKeyError
from backapp.storage import ObjectWriter, Storage

logger = logging.getLogger(__name__)

_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
_NOATIME = getattr(os, "O_NOATIME", 0)


@dataclass
class BackupResult:
    """What a finished backup produced and cost."""

    backup_id: str
    info: BackupInfo
    skips: SkipLog
    bytes_transferred: int
    duration_seconds: float
    parent_note: str = ""

    @property
    def files_processed(self) -> int:
        """Return the number of non-directory entries stored or referenced."""
        s = self.info.stats
        return s.files + s.symlinks + s.hardlinks

    def to_json(self) -> dict[str, Any]:
        """Return the result as the camelCase JSON object the CLI and API report."""
        stats = self.info.stats
        return {
            "backupId": self.backup_id,
            "status": "completed",
            "type": self.info.type,
            "parent": self.info.parent,
            "filesProcessed": self.files_processed,
            "filesSkipped": self.skips.count,
            "filesWithWarnings": self.skips.warnings,
            "dirs": stats.dirs,
            "newFiles": stats.new_files,
            "changedFiles": stats.changed_files,
            "unchangedFiles": stats.unchanged_files,
            "renamedFiles": stats.renamed_files,
            "deletedFiles": stats.deleted_files,
            "totalBytes": stats.total_bytes,
            "bytesTransferred": self.bytes_transferred,
            "storedBytes": stats.stored_bytes,
            "durationSeconds": round(self.duration_seconds, 3),
            "skipped": [{"path": p, "reason": r} for p, r in self.skips.samples],
        }


@dataclass
class _Counters:
    transferred: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, n: int) -> None:
        with self.lock:
            self.transferred += n


def run_backup(
    config: BackupConfig,
    storage: Storage,
    *,
    key: MasterKey | None = None,
    slug: str | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    now: datetime | None = None,
    backup_id: str | None = None,
    block_size: int = DEFAULT_BLOCK_SIZE,
    segment_size: int = DEFAULT_SEGMENT_SIZE,
    workers: int | None = None,
) -> BackupResult:
    """Given a config and its storage, back up its sources and return the result.

    Raise EncryptionKeyError (before anything is uploaded), SourceError, StorageError,
    CancelledError; on any failure, whatever was uploaded is removed again.
    """
    opts = config.options
    if opts.encryption and key is None:
        raise EncryptionKeyError(
            "encryption is enabled but BACKUP_ENCRYPTION_KEY is not set "
            "(generate one with: openssl rand -base64 32)"
        )
    master = key if opts.encryption else None
    check_sources(config.sources)
    cancel = cancel or CancelToken()
    started_wall = (now or datetime.now(UTC)).astimezone(UTC)
    started = time.monotonic()
    repo = Repository(storage, config.destination.prefix, slug or config.slug)
    backup_id = backup_id or new_backup_id(started_wall)
    codec = codec_for(opts.compression, opts.compression_algorithm, opts.compression_level)
    parent, parent_note = choose_parent(repo, opts.type, opts.full_every, master)
    job = _BackupJob(
        config=config,
        repo=repo,
        backup_id=backup_id,
        codec=codec,
        master=master,
        block_size=block_size,
        segment_size=segment_size,
        workers=workers or min(4, os.cpu_count() or 2),
        cancel=cancel,
        progress=progress,
        parent=parent,
    )
    logger.info(
        "backup %s of %r started (%s%s)",
        backup_id,
        config.name,
        "incremental on " + parent.info.backup_id if parent else "full",
        ", encrypted" if master else "",
    )
    info = job.run(started_wall)
    duration = time.monotonic() - started
    logger.info(
        "backup %s completed: %d files, %d bytes read, %d bytes stored, %.1fs",
        backup_id,
        info.stats.files,
        info.stats.total_bytes,
        info.stats.stored_bytes,
        duration,
    )
    return BackupResult(
        backup_id=backup_id,
        info=info,
        skips=job.skips,
        bytes_transferred=job.counters.transferred,
        duration_seconds=duration,
        parent_note=parent_note,
    )


class _BackupJob:
    """The state of one backup while it runs."""

    def __init__(
        self,
        *,
        config: BackupConfig,
        repo: Repository,
        backup_id: str,
        codec: Codec,
        master: MasterKey | None,
        block_size: int,
        segment_size: int,
        workers: int,
        cancel: CancelToken,
        progress: ProgressCallback | None,
        parent: ParentCursor | None,
    ) -> None:
        self.config = config
        self.repo = repo
        self.backup_id = backup_id
        self.codec = codec
        self.master = master
        self.block_size = block_size
        self.segment_size = segment_size
        self.workers = workers
        self.cancel = cancel
        self.parent = parent
        self.skips = SkipLog()
        self.stats = BackupStats()
        self.counters = _Counters()
        self.progress = Progress(phase="backing up")
        self.report = Throttle(progress)
        self.estimate = progress is not None
        self.blocks: list[int] = []
        self.requires: set[str] = set()
        self.hardlinks: dict[tuple[int, int], tuple[str, bool]] = {}
        self._noatime = _NOATIME
        self._encryptor: Encryptor | None = None
        self._writer: ObjectWriter | None = None
        enc = ".enc" if master else ""
        self.data_name = f"data.tar{codec.suffix}{enc}"
        self.manifest_name = f"manifest.json.gz{enc}"

    # -- orchestration -------------------------------------------------------

    def run(self, started: datetime) -> BackupInfo:
        counter = (
            _start_counting(self.config, self.progress, self.cancel) if self.estimate else None
        )
        manifest = ManifestWriter(
            {
                "backupId": self.backup_id,
                "blockSize": self.block_size,
                "compression": self.codec.algorithm,
            }
        )
        committed: list[str] = []
        try:
            data_obj, tar_size = self._write_data(manifest)
            committed.append(self.data_name)
            self.progress.phase = "writing manifest"
            self.report(self.progress, force=True)
            spool = manifest.finish(
                Trailer(
                    entries=0, blocks=self.blocks, tar_size=tar_size, block_size=self.block_size
                )
            )
            manifest_info = write_object(
                self.repo.storage,
                self.repo.key(self.backup_id, self.manifest_name),
                file_chunks(spool),
                self.master,
                self.counters.add,
            )
            committed.append(self.manifest_name)
            self.cancel.raise_if_cancelled()
            if self.parent is not None:
                self.stats.deleted_files += self.parent.remaining_files()
            self.stats.data_bytes = data_obj.size
            self.stats.stored_bytes = data_obj.size + manifest_info.size
            self.stats.files_skipped = self.skips.count
            info = BackupInfo(
                backup_id=self.backup_id,
                config_name=self.config.name,
                config_slug=self.repo.base.rsplit("/", 1)[-1],
                type="incremental" if self.parent else "full",
                parent=self.parent.info.backup_id if self.parent else None,
                chain=(self.parent.info.chain + 1) if self.parent else 0,
                requires=sorted(self.requires),
                created_at=started,
                completed_at=datetime.now(UTC),
                encrypted=self.master is not None,
                compression=CompressionInfo(
                    algorithm=self.codec.algorithm,
                    level=self.codec.level,
                    block_size=self.block_size,
                ),
                manifest=StoredObject(name=self.manifest_name, size=manifest_info.size),
                data=StoredObject(name=self.data_name, size=data_obj.size, plain_size=tar_size),
                stats=self.stats,
                sources=[s.path for s in self.config.sources],
                host=socket.gethostname(),
                tool=f"backapp {__version__}",
            )
            self.repo.commit(info)
            self.counters.add(len(info.to_bytes()))
            self.progress.phase = "completed"
            self.progress.counting = False
            self.report(self.progress, force=True)
            return info
        except BaseException:
            if self._writer is not None:
                self._writer.abort()
            for name in committed:
                try:
                    self.repo.storage.delete(self.repo.key(self.backup_id, name))
                except Exception:  # cleanup must not hide the original error
                    logger.warning("could not remove %s of failed backup %s", name, self.backup_id)
            raise
        finally:
            manifest.close()
            if counter is not None:
                counter.set()
            if self.parent is not None:
                self.parent.close()

    def _write_data(self, manifest: ManifestWriter) -> tuple[Any, int]:
        key = self.repo.key(self.backup_id, self.data_name)
        self._writer = self.repo.storage.open_writer(key, on_transfer=self._on_transfer)
        self._encryptor = Encryptor(self.master, self.segment_size) if self.master else None
        spare: list[bytearray] = []

        def compress(block: bytes | bytearray) -> bytes:
            out = self.codec.compress(block)
            if isinstance(block, bytearray) and len(block) == self.block_size:
                spare.append(block)  # compressed: the buffer can take the next block
            return out

        pipeline = BlockPipeline(
            compress,
            self._put_block,
            workers=self.workers,
            depth=self.workers * 2,
            interrupt=self.cancel.raise_if_cancelled,
        )

        def emit(block: bytearray) -> None:
            self.cancel.raise_if_cancelled()
            pipeline.submit(block)

        sink = TarSink(self.block_size, emit, spare)
        try:
            for entry in scan(self.config.sources, self.skips):
                self.cancel.raise_if_cancelled()
                made = self._archive_entry(sink, entry)
                if made is not None:
                    manifest.add(made)
                self.progress.files_skipped = self.skips.count
                self.report(self.progress)
            sink.finish()
        except BaseException:
            pipeline.abort()
            raise
        pipeline.close()
        if self._encryptor is not None:
            self._writer.write(self._encryptor.finalize())
        self.progress.phase = "finishing upload"
        self.report(self.progress, force=True)
        obj = self._writer.commit()
        self._writer = None
        return obj, sink.offset

    def _put_block(self, compressed: bytes) -> None:
        assert self._writer is not None
        self.blocks.append(len(compressed))
        out = self._encryptor.update(compressed) if self._encryptor else compressed
        if out:
            self._writer.write(out)

    def _on_transfer(self, n: int) -> None:
        self.counters.add(n)
        self.progress.bytes_transferred = self.counters.transferred
        self.report(self.progress)

    # -- entries -------------------------------------------------------------

    def _archive_entry(self, sink: TarSink, item: ScanEntry) -> Entry | None:
        st = item.st
        if item.kind == "dir":
            self.stats.dirs += 1
            entry = _meta_entry(item.path, "dir", st)
            sink.write(_header(entry))
            self._lookup_parent(item.path)
            return entry
        if item.kind == "symlink":
            try:
                target = os.readlink(item.abspath)
            except OSError as exc:
                self.skips.skip(item.path, os_reason(exc))
                return None
            entry = _meta_entry(item.path, "symlink", st, target=target)
            sink.write(_header(entry))
            self.stats.symlinks += 1
            self._done_file(0)
            self._lookup_parent(item.path)
            return entry
        return self._archive_file(sink, item)

    def _archive_file(self, sink: TarSink, item: ScanEntry) -> Entry | None:
        st = item.st
        self.progress.current = item.path
        link_key = (st.st_dev, st.st_ino)
        if st.st_nlink > 1 and link_key in self.hardlinks:
            first, in_tar = self.hardlinks[link_key]
            entry = _meta_entry(item.path, "hardlink", st, target=first)
            if in_tar:  # an unchanged first link is not in this tar: tar xzf could not link it
                sink.write(_header(entry))
            self.stats.hardlinks += 1
            self._done_file(0)
            self._lookup_parent(item.path)
            return entry

        previous = self._lookup_parent(item.path)
        if previous is not None and _unchanged(previous, st):
            entry = _meta_entry(item.path, "file", st)
            entry.size = previous.size
            entry.sha256 = previous.sha256
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
        if known is None:
            return None
        entry = _meta_entry(item.path, "file", st)
        entry.size = st.st_size
        entry.sha256 = digest.hexdigest()
        entry.backup = known.backup
        entry.offset = known.offset
        self.requires.add(known.backup)
        self.stats.files += 1
        self.stats.renamed_files += 1
        self.stats.total_bytes += entry.size
        self._done_file(entry.size)
        return entry

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
            sink.write(_header(entry, size=st.st_size))
            entry.offset = sink.offset
            digest = hashlib.sha256()
            try:
                got = sink.read_from(fd, st.st_size, lambda view: self._read(digest, view))
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

    def _open(self, item: ScanEntry) -> int | None:
        try:
            return os.open(item.abspath, _OPEN_FLAGS | self._noatime)
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


def _start_counting(
    config: BackupConfig, progress: Progress, cancel: CancelToken
) -> threading.Event:
    """Start a thread that walks the sources to estimate totals; return its stop flag."""
    stop = threading.Event()

    def count() -> None:
        files = size = 0
        try:
            for item in scan(config.sources, SkipLog()):
                if stop.is_set() or cancel.cancelled:
                    return
                if item.kind != "dir":
                    files += 1
                    size += item.st.st_size if item.kind == "file" else 0
                    progress.files_total = max(files, progress.files_done)
                    progress.bytes_total = max(size, progress.bytes_done)
        except Exception:  # an estimate is optional; the backup itself reports errors
            logger.debug("progress estimate failed", exc_info=True)
            return
        progress.counting = False

    threading.Thread(target=count, name="backapp-count", daemon=True).start()
    return stop
