"""Scheduling decisions: firing due configs exactly once, missed runs, lost workers.

Every decision is a short transaction on a locked config row (or a conditional
update of a run), so any number of schedulers sharing one PostgreSQL make each
decision exactly once.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from backapp.db import utcnow
from backapp.db.repositories import configs as config_repo
from backapp.db.repositories import runs as run_repo
from backapp.domain.config import BackupConfig
from backapp.domain.schedule import Schedule
from backapp.engine.lock import RepoLock, release_locks_of
from backapp.errors import BackappError, ConflictError
from backapp.services import alerts, restores
from backapp.services import configs as config_service
from backapp.services import runs as run_service
from backapp.services.context import AppContext

logger = logging.getLogger(__name__)


def fire_due(ctx: AppContext, now: datetime | None = None) -> int:
    """Queue a run for every enabled config whose fire time has come; return how many."""
    now = now or utcnow()
    with ctx.db.session() as session:
        due_ids = [c.id for c in config_repo.due(session, now)]
        verify_ids = [c.id for c in config_repo.due_verify(session, now)]
    fired = 0
    for config_id in due_ids:
        try:
            fired += _fire_one(ctx, config_id, now)
        except BackappError as exc:
            logger.error("could not fire config %s: %s", config_id, exc)
    for config_id in verify_ids:
        try:
            fired += _fire_verify(ctx, config_id, now)
        except BackappError as exc:
            logger.error("could not start the verification of config %s: %s", config_id, exc)
    return fired


def _fire_verify(ctx: AppContext, config_id: str, now: datetime) -> int:
    """Queue the scheduled full verification of a config's latest backup, exactly once."""
    with ctx.db.session() as session:
        config = config_repo.get(session, config_id, for_update=True)
        if config is None or config.next_verify_at is None or config.next_verify_at > now:
            return 0
        fire = config.next_verify_at
        document = config_service.document_of(config)
        config.next_verify_at = config_service.next_verify(document, now)
        session.flush()
        if now - fire > timedelta(seconds=ctx.settings.misfire_grace):
            logger.info("scheduled verification of %s at %s missed", config.name, fire)
            return 0
        try:
            restores.enqueue_verify(
                session, config, full=True, trigger="scheduled", scheduled_for=fire
            )
        except ConflictError as exc:
            logger.info("scheduled verification of %s not started: %s", config.name, exc)
            return 0
        logger.info("queued the scheduled verification of %s", config.name)
        return 1


def _fire_one(ctx: AppContext, config_id: str, now: datetime) -> int:
    grace = timedelta(seconds=ctx.settings.misfire_grace)
    with ctx.db.session() as session:
        config = config_repo.get(session, config_id, for_update=True)
        if config is None or not config.enabled or config.next_run_at is None:
            return 0
        if config.next_run_at > now:
            return 0  # another scheduler fired it first
        document = config_service.document_of(config)
        schedule = Schedule(document.schedule.cron_expression, document.schedule.timezone)
        first_due = config.next_run_at
        window_start = max(first_due, now - grace)
        latest: datetime | None = first_due if first_due >= now - grace else None
        collapsed = 0
        for fire in schedule.fire_times(window_start - timedelta(microseconds=1)):
            if fire > now:
                break
            if latest is not None and fire != latest:
                collapsed += 1
            latest = fire
        config.next_run_at = schedule.next_after(now)
        session.flush()
        if first_due < now - grace:
            message = (
                f"Scheduled backup of '{config.name}' due at {first_due:%Y-%m-%d %H:%M:%S} UTC "
                f"was missed: no scheduler was running"
                + ("" if latest else f" within the grace period of {int(grace.total_seconds())}s")
            )
            alerts.raise_alert(
                session, "missed_run", message, config_id=config.id, config_name=config.name
            )
            logger.warning("%s", message)
        if latest is None:
            return 0
        config.last_fired_at = latest
        if collapsed:
            logger.info("%s: %d missed fire times collapsed into one run", config.name, collapsed)
        try:
            run = run_service.enqueue(session, config, trigger="scheduled", scheduled_for=latest)
        except ConflictError as exc:
            active = run_repo.active_for(session, config.id)
            reason = f"previous run {active.id} was still {active.status}" if active else str(exc)
            skipped = run_service.record_skipped(session, config, latest, reason)
            if skipped is not None:
                logger.info("skipped %s at %s: %s", config.name, latest.isoformat(), reason)
            return 0
        logger.info(
            "fired %s for %s (run %s); next at %s",
            config.name,
            latest.isoformat(),
            run.id,
            config.next_run_at.isoformat() if config.next_run_at else "never",
        )
        return 1


def expire_lost_runs(
    ctx: AppContext, now: datetime | None = None, alive: frozenset[str] = frozenset()
) -> list[str]:
    """Fail running runs whose worker stopped heartbeating; clean up their uploads. Runs
    in ``alive`` (the caller's own, which it knows to be running) are never failed.

    Return the ids of the runs failed here.
    """
    now = now or utcnow()
    lease = timedelta(seconds=ctx.settings.run_lease)
    with ctx.db.session() as session:
        stale = [
            (r.id, r.worker_id, r.heartbeat_at)
            for r in run_repo.stale_running(session, now - lease)
            if r.id not in alive
        ]
    failed = []
    for run_id, worker_id, heartbeat_at in stale:
        message = (
            f"worker lost: {worker_id or 'a worker'} stopped responding "
            f"(no heartbeat since {heartbeat_at:%Y-%m-%d %H:%M:%S} UTC)"
            if heartbeat_at
            else "worker lost"
        )
        with ctx.db.session() as session:
            run = run_repo.get(session, run_id)
            if run is None:
                continue
            pending_backup = run.backup_id
            if not run_repo.finish(
                session, run_id, "failed", run_repo.RunOutcome(error=message), completed_at=now
            ):
                continue  # finished meanwhile, or another scheduler got here first
            alerts.raise_alert(
                session,
                "worker_lost",
                f"Backup '{run.config_name}' failed: {message}",
                config_id=run.config_id,
                config_name=run.config_name,
                run_id=run_id,
            )
            config = config_repo.get(session, run.config_id)
            target = (config_service.document_of(config), config.slug) if config else None
        failed.append(run_id)
        logger.warning("run %s: %s", run_id, message)
        if target is not None and pending_backup:
            _discard_partial_backup(ctx, target[0], target[1], pending_backup)
    return failed


def _discard_partial_backup(
    ctx: AppContext, document: BackupConfig, slug: str, backup_id: str
) -> None:
    """Remove what a dead run uploaded: aborted multipart uploads and uncommitted objects."""
    try:
        repo = ctx.repository(document, slug)
        release_locks_of(repo, backup_id)  # its run is dead: the next one need not wait
        if backup_id in repo.ids():
            return  # it did commit before dying: a complete backup stays
        repo.delete(backup_id)
        # Its unfinished pack uploads go too, if no other run is writing now (its finished
        # packs stay: their blocks are found again by the next run, or pruned).
        with RepoLock(repo, "cleanup", backup_id):
            repo.abort_unfinished()
        logger.info("removed the partial upload of backup %s", backup_id)
    except BackappError as exc:
        logger.warning("could not clean up partial backup %s: %s", backup_id, exc)
