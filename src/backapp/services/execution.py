"""Executing a claimed run: drive the engine, report progress, record the outcome, alert.

The run is claimed in one short transaction, the long work happens with no
transaction open, and progress and the result are written in short
transactions of their own (SQLite's write lock is never held across an upload).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from backapp.db import Run, utcnow
from backapp.db.repositories import configs as config_repo
from backapp.db.repositories import runs as run_repo
from backapp.domain.config import BackupConfig
from backapp.engine.backup import BackupResult, run_backup
from backapp.engine.layout import new_backup_id
from backapp.engine.progress import CancelToken, Progress
from backapp.errors import (
    BackappError,
    CancelledError,
    ConfigError,
    EncryptionKeyError,
    SourceError,
    StorageError,
)
from backapp.services import alerts
from backapp.services import configs as config_service
from backapp.services.context import AppContext

logger = logging.getLogger(__name__)

PROGRESS_INTERVAL = 1.0


@dataclass
class ActiveRun:
    """A run this worker is executing: its cancel token and last progress write."""

    run_id: str
    cancel: CancelToken = field(default_factory=CancelToken)
    last_write: float = 0.0


def alert_kind_for(exc: BaseException) -> str:
    """Given the error that failed a backup, return the alert kind to raise."""
    if isinstance(exc, ConfigError | SourceError | EncryptionKeyError):
        return "config_error"
    if isinstance(exc, StorageError):
        return "storage_connection"
    return "backup_failed"


class RunExecutor:
    """Runs claimed runs to completion and records them."""

    def __init__(
        self,
        ctx: AppContext,
        *,
        after_backup: Callable[[Run, BackupConfig, BackupResult], dict[str, Any]] | None = None,
    ) -> None:
        self.ctx = ctx
        self.after_backup = after_backup

    def execute(self, active: ActiveRun) -> str:
        """Given a claimed run, execute it and return its final status."""
        db = self.ctx.db
        with db.session() as session:
            run = run_repo.get(session, active.run_id)
            if run is None:
                return "failed"
            config = config_repo.get(session, run.config_id)
            document = config_service.document_of(config) if config else None
            slug = config.slug if config else ""
            kind = run.kind
            snapshot = (run.id, run.config_id, run.config_name, run.scheduled_for)
        started = time.monotonic()
        if document is None:
            return self._finish_failed(
                snapshot, "the configuration was deleted before the run started", started
            )
        if kind != "backup":
            return self._finish_failed(snapshot, f"unknown run kind {kind!r}", started)
        # Recorded before anything is uploaded, so a lost run's upload can be found and removed.
        backup_id = new_backup_id(snapshot[3] or utcnow())
        with db.session() as session:
            run_repo.set_pending_backup(session, active.run_id, backup_id)
        try:
            key = self.ctx.master_key(required=document.options.encryption)
            storage = self.ctx.storage_for(document.destination, document.options.bandwidth)
            result = run_backup(
                document,
                storage,
                key=key,
                slug=slug,
                progress=lambda p: self._progress(active, p),
                cancel=active.cancel,
                now=snapshot[3],
                backup_id=backup_id,
            )
        except CancelledError as exc:
            return self._finish(
                snapshot, "cancelled", {"error": str(exc), "backup_id": None}, started
            )
        except BackappError as exc:
            return self._finish_failed(snapshot, exc.message, started, alert_kind_for(exc))
        except Exception as exc:  # the top of a run: record any failure, never lose it
            logger.exception("run %s failed unexpectedly", active.run_id)
            return self._finish_failed(
                snapshot, f"internal error: {type(exc).__name__}: {exc}", started
            )
        extra: dict[str, Any] = {}
        if self.after_backup is not None:
            with db.session() as session:
                run = run_repo.get(session, active.run_id)
                if run is not None:
                    extra = self.after_backup(run, document, result)
        doc = result.to_json()
        details = {
            "type": doc["type"],
            "parent": doc["parent"],
            "parentNote": result.parent_note,
            "dirs": doc["dirs"],
            "newFiles": doc["newFiles"],
            "changedFiles": doc["changedFiles"],
            "unchangedFiles": doc["unchangedFiles"],
            "deletedFiles": doc["deletedFiles"],
            "filesWithWarnings": doc["filesWithWarnings"],
            "skipReasons": dict(result.skips.reasons),
            "skipped": doc["skipped"][:100],
            **extra,
        }
        return self._finish(
            snapshot,
            "completed",
            {
                "files_processed": doc["filesProcessed"],
                "files_skipped": doc["filesSkipped"],
                "total_bytes": doc["totalBytes"],
                "bytes_transferred": doc["bytesTransferred"],
                "stored_bytes": doc["storedBytes"],
                "backup_id": result.backup_id,
                "details": details,
            },
            started,
        )

    # -- recording -------------------------------------------------------------

    def _progress(self, active: ActiveRun, progress: Progress) -> None:
        now = time.monotonic()
        if now - active.last_write < PROGRESS_INTERVAL and progress.phase != "completed":
            return
        active.last_write = now
        with self.ctx.db.session() as session:
            cancel = run_repo.set_progress(session, active.run_id, progress.to_json(), utcnow())
        if cancel and not active.cancel.cancelled:
            active.cancel.cancel("cancelled on request")

    def _finish_failed(
        self,
        snapshot: tuple[str, str, str, datetime | None],
        message: str,
        started: float,
        alert_kind: str = "backup_failed",
    ) -> str:
        run_id, config_id, config_name, _ = snapshot
        status = self._finish(snapshot, "failed", {"error": message, "backup_id": None}, started)
        if status == "failed":
            with self.ctx.db.session() as session:
                alerts.raise_alert(
                    session,
                    alert_kind,
                    f"Backup '{config_name}' failed: {message}",
                    config_id=config_id,
                    config_name=config_name,
                    run_id=run_id,
                )
        return status

    def _finish(
        self,
        snapshot: tuple[str, str, str, datetime | None],
        status: str,
        values: dict[str, Any],
        started: float,
    ) -> str:
        run_id = snapshot[0]
        now = utcnow()
        values = {
            "completed_at": now,
            "duration_seconds": round(time.monotonic() - started, 3),
            **values,
        }
        with self.ctx.db.session() as session:
            if not run_repo.finish(session, run_id, status, values):
                # Someone else settled it (e.g. its lease expired and it was failed).
                run = run_repo.get(session, run_id)
                return run.status if run else status
        logger.info("run %s %s", run_id, status)
        return status


class Heartbeat:
    """Keeps the lease of this worker's runs fresh and passes on cancel requests."""

    def __init__(self, ctx: AppContext, interval: float = 2.0) -> None:
        self.ctx = ctx
        self.interval = interval
        self.active: dict[str, ActiveRun] = {}
        self.lock = threading.Lock()

    def add(self, active: ActiveRun) -> None:
        """Given a run that started, watch it."""
        with self.lock:
            self.active[active.run_id] = active

    def remove(self, run_id: str) -> None:
        """Given a run that ended, stop watching it."""
        with self.lock:
            self.active.pop(run_id, None)

    def beat(self, now: datetime | None = None) -> None:
        """Refresh the heartbeat of every watched run and deliver cancel requests."""
        with self.lock:
            runs = dict(self.active)
        if not runs:
            return
        with self.ctx.db.session() as session:
            run_repo.heartbeat(session, list(runs), now or utcnow())
            for run_id, active in runs.items():
                row = run_repo.get(session, run_id)
                if row is not None and row.cancel_requested and not active.cancel.cancelled:
                    active.cancel.cancel("cancelled on request")
