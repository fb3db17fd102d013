"""run_backup: sources -> tar -> compressed blocks -> (encryption) -> storage.

The pipeline streams: file data is read straight into 1 MiB tar blocks, blocks
are compressed on a thread pool, encrypted in order and written to a storage
writer (an S3 multipart upload, or a temp file renamed on commit). Nothing
holds the whole archive, in memory or on disk. The manifest goes up after the
data, and ``backup.json`` last: until it exists the backup does not.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from backapp import __version__
from backapp.domain.config import BackupConfig
from backapp.engine.backup.archiver import EntryArchiver
from backapp.engine.backup.blockbackup import BlockBackupJob
from backapp.engine.backup.parent import ParentCursor, choose_parent
from backapp.engine.backup.scan import SkipLog, check_sources, scan
from backapp.engine.blockstore import BlockWriter
from backapp.engine.compress import DEFAULT_BLOCK_SIZE, BlockPipeline, Codec, codec_for
from backapp.engine.format.crypto import DEFAULT_SEGMENT_SIZE, Encryptor, MasterKey, encrypted_size
from backapp.engine.format.layout import (
    FORMAT_VERSION,
    BackupInfo,
    CompressionInfo,
    Repository,
    StoredObject,
    new_backup_id,
)
from backapp.engine.format.manifest import ManifestWriter, Trailer
from backapp.engine.format.tarstream import TarSink
from backapp.engine.lock import RepoLock
from backapp.engine.objects import write_object
from backapp.engine.progress import CancelToken, Progress, ProgressCallback, Throttle
from backapp.engine.streams import file_chunks
from backapp.errors import ArchiveError, EncryptionKeyError, IntegrityError, StorageError
from backapp.storage import ObjectWriter, Storage

logger = logging.getLogger(__name__)


@dataclass
class BackupResult:
    """What a finished backup produced and cost."""

    backup_id: str
    info: BackupInfo
    skips: SkipLog
    bytes_transferred: int
    duration_seconds: float
    parent_note: str = ""
    cleanup_note: str = ""
    resumed_bytes: int = 0  # found stored by an interrupted run: not uploaded again

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
            "parentNote": self.parent_note,
            "cleanup": self.cleanup_note,
            "resumedBytes": self.resumed_bytes,
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
    slug: str,
    key: MasterKey | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    now: datetime | None = None,
    backup_id: str | None = None,
    block_size: int = DEFAULT_BLOCK_SIZE,
    segment_size: int = DEFAULT_SEGMENT_SIZE,
    workers: int | None = None,
    format_version: int = FORMAT_VERSION,
) -> BackupResult:
    """Given a config, its storage and its folder there (``slug``, from the config's
    identity), back up its sources and return the result (in storage format 2; format 1
    is written only for tests of what older releases wrote).

    Raise EncryptionKeyError (before anything is uploaded), SourceError, StorageError,
    CancelledError. On a failure, no backup is committed; the blocks already stored stay
    (listed in the run's checkpoint indexes), for the next run to resume from.
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
    repo = Repository(storage, config.destination.prefix, slug, master)
    backup_id = backup_id or new_backup_id(started_wall)
    with RepoLock(repo, "backup", backup_id) as lock:
        cleanup_note = _clean_up(repo, lock)
        run = _run_locked if format_version == 1 else _run_blocks
        result = run(
            config,
            repo,
            master,
            backup_id,
            started_wall,
            started,
            cancel,
            progress,
            block_size,
            segment_size,
            workers,
        )
    result.cleanup_note = cleanup_note
    return result


def _clean_up(repo: Repository, lock: RepoLock) -> str:
    """Under the lock: remove stale locks' and dead runs' leftovers; return what was done."""
    removed, freed = repo.remove_leftovers()
    notes = [f"removed the stale lock of {what}" for what in lock.removed_stale]
    if removed:
        notes.append(f"removed {removed} object(s) ({freed} bytes) left by interrupted runs")
        logger.info("backups of %s: %s", repo.location, notes[-1])
    return "; ".join(notes)


def _run_blocks(
    config: BackupConfig,
    repo: Repository,
    master: MasterKey | None,
    backup_id: str,
    started_wall: datetime,
    started: float,
    cancel: CancelToken,
    progress: ProgressCallback | None,
    block_size: int,
    segment_size: int,
    workers: int | None,
) -> BackupResult:
    """A format-2 backup (under the lock): blocks, packs, index, then the marker."""
    opts = config.options
    codec = codec_for(opts.compression, opts.compression_algorithm, opts.compression_level)
    counters = _Counters()
    state = Progress(phase="backing up")
    report = Throttle(progress)
    skips = SkipLog()

    def on_transfer(n: int) -> None:
        counters.add(n)
        state.bytes_transferred = counters.transferred
        report(state)

    writer = BlockWriter(
        repo,
        codec,
        run=backup_id,
        workers=workers or min(4, os.cpu_count() or 2),
        on_transfer=on_transfer,
        interrupt=cancel.raise_if_cancelled,
    )
    parent: ParentCursor | None = None
    counter = _start_counting(config, state, cancel) if progress is not None else None
    try:
        parent, parent_note = choose_parent(
            repo, opts.type, opts.full_every, master, index=writer.index
        )
        _log_start(backup_id, config, parent, master)
        job = BlockBackupJob(
            config=config,
            repo=repo,
            backup_id=backup_id,
            codec=codec,
            writer=writer,
            cancel=cancel,
            progress=state,
            report=report,
            parent=parent,
            skips=skips,
        )
        info, marker = job.run(started_wall)
        cancel.raise_if_cancelled()
        try:
            repo.commit(info, marker)
        except StorageError:
            if not repo.holds_marker(info, marker):  # False, or None: cannot tell
                raise
            logger.warning("backup %s: the commit marker landed; its reply was lost", backup_id)
        counters.add(len(marker))
        writer.committed()
    except BaseException:
        # What the run stored stays, listed in its checkpoint indexes: the next run finds
        # those blocks and does not upload them again; prune removes them once no backup
        # names them and the grace period has passed.
        writer.abort()
        raise
    finally:
        writer.close()
        if counter is not None:
            counter.set()
        if parent is not None:
            parent.close()
    state.phase = "completed"
    state.counting = False
    report(state, force=True)
    result = _finished(info, skips, counters.transferred, started, parent, parent_note)
    result.resumed_bytes = writer.stats.resumed_bytes
    if result.resumed_bytes:
        logger.info(
            "backup %s resumed: %d bytes were already stored by an interrupted run",
            backup_id,
            result.resumed_bytes,
        )
    return result


def _log_start(
    backup_id: str, config: BackupConfig, parent: ParentCursor | None, master: MasterKey | None
) -> None:
    logger.info(
        "backup %s of %r started (%s%s)",
        backup_id,
        config.name,
        "incremental on " + parent.info.backup_id if parent else "full",
        ", encrypted" if master else "",
    )


def _finished(
    info: BackupInfo,
    skips: SkipLog,
    transferred: int,
    started: float,
    parent: ParentCursor | None,
    parent_note: str,
) -> BackupResult:
    """Given a committed backup, log it and return its result."""
    duration = time.monotonic() - started
    if parent is not None and parent.problem is not None:
        parent_note += f"; the parent's manifest is damaged part-way ({parent.problem}): "
        parent_note += "what follows the damage was read and stored anew"
    logger.info(
        "backup %s completed: %d files, %d bytes read, %d bytes stored, %.1fs",
        info.backup_id,
        info.stats.files,
        info.stats.total_bytes,
        info.stats.stored_bytes,
        duration,
    )
    return BackupResult(
        backup_id=info.backup_id,
        info=info,
        skips=skips,
        bytes_transferred=transferred,
        duration_seconds=duration,
        parent_note=parent_note,
    )


def _run_locked(
    config: BackupConfig,
    repo: Repository,
    master: MasterKey | None,
    backup_id: str,
    started_wall: datetime,
    started: float,
    cancel: CancelToken,
    progress: ProgressCallback | None,
    block_size: int,
    segment_size: int,
    workers: int | None,
) -> BackupResult:
    opts = config.options
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
    _log_start(backup_id, config, parent, master)
    info = job.run(started_wall)
    return _finished(info, job.skips, job.counters.transferred, started, parent, parent_note)


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
        self.counters = _Counters()
        self.progress = Progress(phase="backing up")
        self.report = Throttle(progress)
        self.estimate = progress is not None
        self.blocks: list[int] = []
        self.archiver = EntryArchiver(
            parent=parent, skips=self.skips, progress=self.progress, report=self.report
        )
        self.stats = self.archiver.stats
        self._encryptor: Encryptor | None = None
        self._writer: ObjectWriter | None = None
        self._written = 0  # bytes handed to the data object's writer
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
            },
            version=1,
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
                format_version=1,
                backup_id=self.backup_id,
                config_name=self.config.name,
                config_slug=self.repo.base.rsplit("/", 1)[-1],
                type="incremental" if self.parent else "full",
                parent=self.parent.info.backup_id if self.parent else None,
                chain=(self.parent.info.chain + 1) if self.parent else 0,
                requires=sorted(self.archiver.requires),
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
            # The marker goes up only once storage holds every object, whole.
            self._check_stored(self.data_name, data_obj.size)
            self._check_stored(self.manifest_name, manifest_info.size)
            self.cancel.raise_if_cancelled()
            self._commit(info, committed)
            # Committed: from here on a failure must not delete what the marker points to.
            committed.clear()
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

    def _check_stored(self, name: str, expected: int) -> None:
        """Given an object just uploaded and the bytes written to it, check storage holds
        exactly that many. Raise StorageError, IntegrityError."""
        key = self.repo.key(self.backup_id, name)
        head = self.repo.storage.head(key)
        if head is None:
            raise StorageError(f"{key} is missing from storage right after its upload")
        if head.size != expected:
            raise IntegrityError(
                f"{key} holds {head.size} bytes in storage, but {expected} were written"
            )

    def _commit(self, info: BackupInfo, committed: list[str]) -> None:
        """Write the commit marker; if its reply was lost, check whether it landed. If that
        cannot be told, the objects stay (``committed`` is emptied): a marker may point to
        them, and the next run's cleanup removes them if none does."""
        marker = self.repo.marker(info)
        try:
            self.repo.commit(info, marker)
        except StorageError:
            landed = self.repo.holds_marker(info, marker)
            if landed is None:
                committed.clear()
                raise
            if not landed:
                raise
            logger.warning(
                "backup %s: the commit marker landed; its reply was lost", info.backup_id
            )

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
                made = self.archiver.archive(sink, entry)
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
            self._written += self._write(self._encryptor.finalize())
        expected_blocks = -(-sink.offset // self.block_size)
        if len(self.blocks) != expected_blocks or pipeline.submitted != expected_blocks:
            raise ArchiveError(
                f"the archive has {len(self.blocks)} stored blocks of {expected_blocks} "
                "(data was lost on the way to storage)"
            )
        stored = sum(self.blocks)
        expected_size = (
            encrypted_size(stored, self.segment_size) if self._encryptor is not None else stored
        )
        if self._written != expected_size:
            raise ArchiveError(
                f"{self._written} bytes of the archive were written, {expected_size} expected"
            )
        self.progress.phase = "finishing upload"
        self.report(self.progress, force=True)
        obj = self._writer.commit()
        self._writer = None
        if obj.size != expected_size:
            raise IntegrityError(
                f"storage reports {obj.size} bytes for {key}, {expected_size} were written"
            )
        return obj, sink.offset

    def _write(self, data: bytes) -> int:
        assert self._writer is not None
        if data:
            self._writer.write(data)
        return len(data)

    def _put_block(self, compressed: bytes) -> None:
        assert self._writer is not None
        self.blocks.append(len(compressed))
        out = self._encryptor.update(compressed) if self._encryptor else compressed
        self._written += self._write(out)

    def _on_transfer(self, n: int) -> None:
        self.counters.add(n)
        self.progress.bytes_transferred = self.counters.transferred
        self.report(self.progress)


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
