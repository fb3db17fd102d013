"""One backup run in format 2: sources -> tar stream as blocks -> packs -> marker.

Blocks already stored (by any earlier backup of the config, or the parent's blocks of
an unchanged file) are not uploaded again. The manifest is stored as blocks too; the
commit marker, written last and only once storage holds every pack and index object,
names the manifest's blocks. A failed run removes the packs and index objects it
wrote.
"""

from __future__ import annotations

import logging
import socket
from datetime import UTC, datetime
from typing import IO

from backapp import __version__
from backapp.domain.config import BackupConfig
from backapp.engine.backup.blockarchiver import BlockArchiver, BlockSink
from backapp.engine.backup.parent import ParentCursor
from backapp.engine.backup.scan import SkipLog, scan
from backapp.engine.blockstore import BlockRef, BlockWriter
from backapp.engine.compress import Codec
from backapp.engine.format.layout import BackupInfo, BackupStats, CompressionInfo, Repository
from backapp.engine.format.manifest import ManifestWriter, Trailer
from backapp.engine.progress import CancelToken, Progress, Throttle

logger = logging.getLogger(__name__)

MANIFEST_PIECE = 1024 * 1024  # the gzip'd manifest is stored in pieces of this size


class BlockBackupJob:
    """The state of one format-2 backup while it runs."""

    def __init__(
        self,
        *,
        config: BackupConfig,
        repo: Repository,
        backup_id: str,
        codec: Codec,
        writer: BlockWriter,
        cancel: CancelToken,
        progress: Progress,
        report: Throttle,
        parent: ParentCursor | None,
        skips: SkipLog,
    ) -> None:
        self.config = config
        self.repo = repo
        self.backup_id = backup_id
        self.codec = codec
        self.writer = writer
        self.cancel = cancel
        self.progress = progress
        self.report = report
        self.parent = parent
        self.skips = skips
        self.archiver = BlockArchiver(parent=parent, skips=skips, progress=progress, report=report)
        self.stats: BackupStats = self.archiver.stats

    def run(self, started: datetime) -> tuple[BackupInfo, bytes]:
        """Back up the sources; return the finished backup's info and its marker's bytes
        (not written yet). Raise SourceError, StorageError, CancelledError, IntegrityError."""
        manifest = ManifestWriter(
            {"backupId": self.backup_id, "configSlug": self.repo.slug}, version=2
        )
        try:
            sink = BlockSink(self.writer)
            for entry in scan(self.config.sources, self.skips):
                self.cancel.raise_if_cancelled()
                made = self.archiver.archive(sink, entry)
                if made is not None:
                    manifest.add(made)
                self.progress.files_skipped = self.skips.count
                self.report(self.progress)
            tail = sink.finish()
            self.progress.phase = "writing manifest"
            self.report(self.progress, force=True)
            spool = manifest.finish(
                Trailer(entries=0, blocks=[], tar_size=sink.offset, extra={"tail": list(tail)})
            )
            manifest_blocks = self._store_manifest(spool)
            self.progress.phase = "finishing upload"
            self.report(self.progress, force=True)
            written = self.writer.finish()
            self.cancel.raise_if_cancelled()
            self.writer.check_stored()
        finally:
            manifest.close()
        if self.parent is not None:
            self.stats.deleted_files += self.parent.remaining_files()
        self.stats.files_skipped = self.skips.count
        self.stats.data_bytes = written.stored_bytes
        self.stats.stored_bytes = written.stored_bytes
        info = BackupInfo(
            format_version=2,
            backup_id=self.backup_id,
            config_name=self.config.name,
            config_slug=self.repo.slug,
            type="incremental" if self.parent else "full",
            parent=self.parent.info.backup_id if self.parent else None,
            chain=(self.parent.info.chain + 1) if self.parent else 0,
            created_at=started,
            completed_at=datetime.now(UTC),
            encrypted=self.repo.keys.encrypted,
            compression=CompressionInfo(
                algorithm=self.codec.algorithm, level=self.codec.level, block_size=1024 * 1024
            ),
            manifest_blocks=manifest_blocks,
            tar_size=sink.offset,
            stored_bytes=written.stored_bytes,
            stats=self.stats,
            sources=[s.path for s in self.config.sources],
            host=socket.gethostname(),
            tool=f"backapp {__version__}",
        )
        logger.info(
            "backup %s: %d new blocks (%d bytes), %d blocks already stored (%d bytes), %d packs",
            self.backup_id,
            written.new_blocks,
            written.new_bytes,
            written.reused_blocks,
            written.reused_bytes,
            len(written.packs),
        )
        return info, self.repo.marker(info)

    def _store_manifest(self, spool: IO[bytes]) -> list[BlockRef]:
        """Given the gzip'd manifest, store it as blocks (compressed already); return them."""
        refs = []
        while piece := spool.read(MANIFEST_PIECE):
            refs.append(self.writer.put(piece, algorithm="none", meta=True))
        return refs
