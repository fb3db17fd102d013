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
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from backapp.db import DatabaseError, Run, utcnow
from backapp.db.repositories import configs as config_repo
from backapp.db.repositories import runs as run_repo
from backapp.db.repositories.runs import RunOutcome
from backapp.domain.config import BackupConfig
from backapp.domain.restore import RestoreRequest, VerifyRequest
from backapp.engine.backup import BackupResult, run_backup
from backapp.engine.format.layout import new_backup_id
from backapp.engine.progress import CancelToken, Progress
from backapp.engine.restore import run_restore
from backapp.engine.verify import run_verify
from backapp.errors import (
    BackappError,
    CancelledError,
    ConfigError,
    EncryptionKeyError,
    SourceError,
    StorageCredentialsError,
    StorageError,
)
from backapp.services import alerts
from backapp.services import configs as config_service
from backapp.services.context import AppContext
from backapp.services.hooks import RunHooks, run_variables
from backapp.services.restores import new_restore_folder

logger = logging.getLogger(__name__)

PROGRESS_INTERVAL = 1.0
DB_PATIENCE = 30 * 60.0  # a finished run waits this long for the database to come back
T = TypeVar("T")


@dataclass
class ActiveRun:
    """A run this worker is executing: its cancel token and last progress write."""

    run_id: str
    cancel: CancelToken = field(default_factory=CancelToken)
    last_write: float = 0.0


def alert_kind_for(exc: BaseException, kind: str = "backup") -> str:
    """Given the error that failed a run (and its kind), return the alert kind to raise."""
    if isinstance(exc, ConfigError | SourceError | EncryptionKeyError | StorageCredentialsError):
        return "config_error"
    if isinstance(exc, StorageError):
        return "storage_connection"
    return f"{kind}_failed"


@dataclass(frozen=True)
class _Job:
    """What a run needs, read in one short transaction before the long work."""

    run_id: str
    config_id: str
    config_name: str
    scheduled_for: datetime | None
    kind: str
    request: dict[str, Any]
    document: BackupConfig | None
    slug: str
    trigger: str = "manual"
    hooks: RunHooks | None = None  # a backup's hooks, and what they did (its log keeps it)


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
        with self.ctx.db.session() as session:
            run = run_repo.get(session, active.run_id)
            if run is None:
                return "failed"
            config = config_repo.get(session, run.config_id)
            job = _Job(
                run_id=run.id,
                config_id=run.config_id,
                config_name=run.config_name,
                scheduled_for=run.scheduled_for,
                kind=run.kind,
                request=dict(run.request or {}),
                document=config_service.document_of(config) if config else None,
                slug=config.slug if config else "",
                trigger=run.trigger,
            )
        job = replace(job, hooks=self._hooks_of(job, active))
        started = time.monotonic()
        if job.document is None:
            return self._finish_failed(
                job, "the configuration was deleted before the run started", started
            )
        handler = {"backup": self._backup, "restore": self._restore, "verify": self._verify}
        if job.kind not in handler:
            return self._finish_failed(job, f"unknown run kind {job.kind!r}", started)
        try:
            return handler[job.kind](job, active, started)
        except CancelledError as exc:
            return self._finish(job, "cancelled", RunOutcome(error=str(exc)), started)
        except BackappError as exc:
            return self._finish_failed(job, exc.message, started, alert_kind_for(exc, job.kind))
        except Exception as exc:  # the top of a run: record any failure, never lose it
            logger.exception("run %s failed unexpectedly", active.run_id)
            return self._finish_failed(
                job, f"internal error: {type(exc).__name__}: {exc}", started, f"{job.kind}_failed"
            )

    def _backup(self, job: _Job, active: ActiveRun, started: float) -> str:
        document = job.document
        assert document is not None
        # Recorded before anything is uploaded, so a lost run's upload can be found and removed.
        backup_id = new_backup_id(job.scheduled_for or utcnow())

        def pending() -> None:
            with self.ctx.db.session() as session:
                run_repo.set_pending_backup(session, active.run_id, backup_id)

        self.patient(pending, f"recording the backup id of run {active.run_id}")
        if job.hooks is not None:  # a failing one raises HookError: the run fails
            job.hooks.run(
                "before",
                BACKAPP_STATUS="running",
                BACKAPP_BACKUP_ID=backup_id,
                BACKAPP_BACKUP_TYPE=document.options.type,
            )
        key = self.ctx.master_key(required=document.options.encryption)
        storage = self.ctx.storage_for(
            document.destination,
            upload_kbps=document.options.bandwidth,
            download_kbps=document.options.download_bandwidth,
            cancel=active.cancel,
        )
        result = run_backup(
            document,
            storage,
            key=key,
            slug=job.slug,
            progress=lambda p: self._progress(active, p),
            cancel=active.cancel,
            now=job.scheduled_for,
            backup_id=backup_id,
        )
        extra: dict[str, Any] = {}
        if self.after_backup is not None:

            def load() -> Run | None:
                with self.ctx.db.session() as session:
                    return run_repo.get(session, active.run_id)

            run = self.patient(load, f"reading run {active.run_id}")
            if run is not None:
                extra = self.after_backup(run, document, result)
        stats, doc = result.info.stats, result.to_json()
        if job.hooks is not None:
            job.hooks.run(
                "after",
                BACKAPP_STATUS="completed",
                BACKAPP_BACKUP_ID=result.backup_id,
                BACKAPP_BACKUP_TYPE=result.info.type,
                BACKAPP_FILES_PROCESSED=result.files_processed,
                BACKAPP_TOTAL_BYTES=stats.total_bytes,
                BACKAPP_STORED_BYTES=stats.stored_bytes,
            )
        outcome = RunOutcome(
            backup_id=result.backup_id,
            type=result.info.type,
            files_processed=result.files_processed,
            files_skipped=result.skips.count,
            total_bytes=stats.total_bytes,
            bytes_transferred=result.bytes_transferred,
            stored_bytes=stats.stored_bytes,
            # The result as the CLI's --json reports it, with the reasons of its skips and
            # what retention did (a run page shows them); skips are sampled.
            details={
                **doc,
                "skipped": doc["skipped"][:100],
                "skipReasons": dict(result.skips.reasons),
                **extra,
            },
        )
        return self._finish(job, "completed", outcome, started)

    def _hooks_of(self, job: _Job, active: ActiveRun) -> RunHooks | None:
        if job.kind != "backup" or job.document is None or job.document.options.hooks is None:
            return None
        variables = run_variables(
            config_id=job.config_id,
            config_name=job.config_name,
            slug=job.slug,
            run_id=job.run_id,
            trigger=job.trigger,
        )

        def shown(phase: str) -> None:  # the progress bar names the hook running
            self._progress(active, Progress(phase=phase, counting=False))

        return RunHooks.of(
            self.ctx.settings,
            job.document.options.hooks,
            variables,
            cancel=active.cancel,
            on_command=shown,
        )

    def _restore(self, job: _Job, active: ActiveRun, started: float) -> str:
        assert job.document is not None
        request = RestoreRequest.from_json(job.request)
        repo = self.ctx.repository(job.document, job.slug, active.cancel)
        if request.in_place:
            target = Path("/")
        elif request.target is not None:
            target = Path(request.target)
        else:  # a new folder: this worker's own (the web process may be elsewhere)
            target = new_restore_folder(self.ctx.settings.data_dir, job.slug, request.backup_id)
        result = run_restore(
            repo,
            request.backup_id,
            target,
            master=self.ctx.master_key(required=False),
            include=list(request.include) or None,
            existing=request.existing,
            progress=lambda p: self._progress(active, p),
            cancel=active.cancel,
        )
        doc = result.to_json()
        outcome = RunOutcome(
            backup_id=result.backup_id,
            files_processed=result.files_restored,
            total_bytes=result.bytes,
            details={**doc, "errors": doc["errors"][:200]},
        )
        if result.ok:
            return self._finish(job, "completed", outcome, started)
        summary = "; ".join(f"{p}: {m}" for p, m in result.errors[:3])
        message = f"{len(result.errors)} file(s) could not be restored: {summary}"
        return self._finish_failed(job, message, started, "restore_failed", outcome)

    def _verify(self, job: _Job, active: ActiveRun, started: float) -> str:
        assert job.document is not None
        request = VerifyRequest.from_json(job.request)
        repo = self.ctx.repository(job.document, job.slug, active.cancel)
        result = run_verify(
            repo,
            request.backup_id,
            master=self.ctx.master_key(required=False),
            full=request.full,
            progress=lambda p: self._progress(active, p),
            cancel=active.cancel,
        )
        doc = result.to_json()
        outcome = RunOutcome(
            backup_id=result.backup_id,
            files_processed=result.files,
            total_bytes=result.bytes,
            details={**doc, "problems": doc["problems"][:200]},
        )
        if result.ok:
            return self._finish(job, "completed", outcome, started)
        message = f"backup {result.backup_id} is damaged: {result.summary()}"
        return self._finish_failed(job, message, started, "verify_failed", outcome)

    # -- recording -------------------------------------------------------------

    def patient(self, work: Callable[[], T], what: str) -> T:
        """Given database work, do it, waiting out an outage of the database (retrying with
        a growing pause, up to DB_PATIENCE seconds). Raise DatabaseError after that."""
        delay, waited = 0.5, 0.0
        while True:
            try:
                return work()
            except DatabaseError as exc:
                if waited >= DB_PATIENCE:
                    raise
                logger.warning("%s: %s; retrying in %.0fs", what, exc, delay)
                time.sleep(delay)
                waited += delay
                delay = min(delay * 2, 15.0)

    def _progress(self, active: ActiveRun, progress: Progress) -> None:
        now = time.monotonic()
        if now - active.last_write < PROGRESS_INTERVAL and progress.phase != "completed":
            return
        active.last_write = now
        try:
            with self.ctx.db.session() as session:
                cancel = run_repo.set_progress(session, active.run_id, progress.to_json(), utcnow())
        except DatabaseError as exc:
            # An outage pauses the progress shown, never the backup: the next write retries.
            logger.warning("run %s: progress not recorded (%s)", active.run_id, exc)
            return
        if cancel and not active.cancel.cancelled:
            active.cancel.cancel("cancelled on request")

    def _finish_failed(
        self,
        job: _Job,
        message: str,
        started: float,
        alert_kind: str = "backup_failed",
        outcome: RunOutcome | None = None,
    ) -> str:
        failed = replace(outcome or RunOutcome(), error=message)
        what = {"backup": "Backup", "restore": "Restore", "verify": "Verification"}
        alert = (
            alert_kind,
            f"{what.get(job.kind, 'Run')} of '{job.config_name}' failed: {message}",
        )
        return self._finish(job, "failed", failed, started, alert=alert)

    def _finish(
        self,
        job: _Job,
        status: str,
        outcome: RunOutcome,
        started: float,
        *,
        alert: tuple[str, str] | None = None,
    ) -> str:
        """Record the outcome (and its alert, in the same transaction: a failed run is
        never seen without its alert); return the run's final status."""
        if job.hooks is not None:  # a backup's: onError reports a failure; the log keeps all
            if status != "completed":
                job.hooks.run("onError", BACKAPP_STATUS=status, BACKAPP_ERROR=outcome.error)
            outcome = job.hooks.into(outcome)
        now = utcnow()
        duration = round(time.monotonic() - started, 3)

        def record() -> str | None:
            with self.ctx.db.session() as session:
                if not run_repo.finish(
                    session,
                    job.run_id,
                    status,
                    outcome,
                    completed_at=now,
                    duration_seconds=duration,
                ):
                    # Someone else settled it (e.g. its lease expired and it was failed).
                    run = run_repo.get(session, job.run_id)
                    return run.status if run else status
                if alert is not None:
                    alerts.raise_alert(
                        session,
                        alert[0],
                        alert[1],
                        config_id=job.config_id,
                        config_name=job.config_name,
                        run_id=job.run_id,
                        run_kind=job.kind,
                    )
                elif status == "completed":  # resolves its alerts, says so
                    alerts.after_success(
                        session, job.config_id, job.config_name, job.kind, job.run_id
                    )
            return None

        settled = self.patient(record, f"recording the end of run {job.run_id}")
        if settled is not None:
            return settled
        logger.info("%s run %s %s", job.kind, job.run_id, status)
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
