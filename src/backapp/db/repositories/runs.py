"""Queries on runs: the queue, claims, progress, history and statistics."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from backapp.db.models import Run
from backapp.db.repositories import storable
from backapp.domain import runs as run_states
from backapp.errors import DuplicateRunError

ACTIVE = run_states.ACTIVE


@dataclass(frozen=True)
class RunOutcome:
    """What a finished run records, column by column (a failed run has few)."""

    error: str | None = None
    backup_id: str | None = None  # always written: a failed backup's pending id is cleared
    type: str | None = None  # the backup's actual type (None: the configured one stays)
    files_processed: int = 0
    files_skipped: int = 0
    total_bytes: int = 0
    bytes_transferred: int = 0
    stored_bytes: int = 0
    details: dict[str, Any] | None = None


def add(session: Session, run: Run) -> None:
    """Given a new run, insert it. Raise DuplicateRunError if the database refuses it."""
    try:
        with session.begin_nested():
            session.add(run)
            session.flush()
    except IntegrityError as exc:
        raise DuplicateRunError(str(exc.orig)) from exc


def get(session: Session, run_id: str) -> Run | None:
    """Given a run id, return the run or None."""
    if not storable(run_id):
        return None
    return session.get(Run, run_id)


def active_for(session: Session, config_id: str, kind: str = "backup") -> Run | None:
    """Given a config id, return its queued or running run of that kind, if any."""
    return session.scalar(
        select(Run).where(Run.config_id == config_id, Run.kind == kind, Run.status.in_(ACTIVE))
    )


def list_runs(
    session: Session,
    *,
    config_id: str | None = None,
    status: str | None = None,
    kind: str | None = None,
    limit: int = 50,
) -> list[Run]:
    """Return runs, newest first, optionally filtered."""
    if config_id and not storable(config_id):
        return []
    query = select(Run)
    if config_id:
        query = query.where(Run.config_id == config_id)
    if status:
        query = query.where(Run.status == status)
    if kind:
        query = query.where(Run.kind == kind)
    return list(session.scalars(query.order_by(Run.queued_at.desc(), Run.id).limit(limit)))


def queued_ids(session: Session, limit: int = 20) -> list[str]:
    """Return the ids of the oldest queued runs."""
    query = select(Run.id).where(Run.status == "queued").order_by(Run.queued_at).limit(limit)
    return list(session.scalars(query))


def claim(session: Session, run_id: str, worker_id: str, now: datetime) -> bool:
    """Given a queued run, mark it running for this worker; return whether we got it."""
    result = session.execute(
        update(Run)
        .where(Run.id == run_id, Run.status == "queued")
        .values(status="running", worker_id=worker_id, started_at=now, heartbeat_at=now)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def set_progress(session: Session, run_id: str, progress: dict[str, Any], now: datetime) -> bool:
    """Given a running run, store its progress and heartbeat; return whether cancel is asked."""
    session.execute(
        update(Run)
        .where(Run.id == run_id, Run.status == "running")
        .values(progress=progress, heartbeat_at=now)
        .execution_options(synchronize_session=False)
    )
    return bool(session.scalar(select(Run.cancel_requested).where(Run.id == run_id)))


def set_pending_backup(session: Session, run_id: str, backup_id: str) -> None:
    """Given a running run, record the id of the backup it is about to write."""
    session.execute(
        update(Run)
        .where(Run.id == run_id)
        .values(backup_id=backup_id)
        .execution_options(synchronize_session=False)
    )


def heartbeat(session: Session, run_ids: list[str], now: datetime) -> None:
    """Given running run ids, refresh their heartbeat."""
    if run_ids:
        session.execute(
            update(Run)
            .where(Run.id.in_(run_ids), Run.status == "running")
            .values(heartbeat_at=now)
            .execution_options(synchronize_session=False)
        )


def stale_running(session: Session, older_than: datetime) -> list[Run]:
    """Return running runs whose heartbeat is older than the given moment."""
    return list(
        session.scalars(select(Run).where(Run.status == "running", Run.heartbeat_at < older_than))
    )


def finish(
    session: Session,
    run_id: str,
    status: str,
    outcome: RunOutcome,
    *,
    completed_at: datetime,
    duration_seconds: float | None = None,
) -> bool:
    """Given a running run, record its outcome; return False if it was no longer running."""
    values = {k: v for k, v in asdict(outcome).items() if k != "type" or v is not None}
    if duration_seconds is not None:
        values["duration_seconds"] = duration_seconds
    result = session.execute(
        update(Run)
        .where(Run.id == run_id, Run.status == "running")
        .values(status=status, completed_at=completed_at, **values)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def completed_backups(session: Session, config_id: str) -> list[Run]:
    """Given a config, return its completed backup runs whose backup still exists."""
    return list(
        session.scalars(
            select(Run)
            .where(
                Run.config_id == config_id,
                Run.kind == "backup",
                Run.status == "completed",
                Run.backup_deleted.is_(False),
            )
            .order_by(Run.completed_at)
        )
    )


def mark_backups_deleted(session: Session, config_id: str, backup_ids: list[str]) -> None:
    """Given backup ids removed from storage, flag the runs that made them."""
    if backup_ids:
        session.execute(
            update(Run)
            .where(Run.config_id == config_id, Run.backup_id.in_(backup_ids))
            .values(backup_deleted=True)
            .execution_options(synchronize_session=False)
        )


def totals(session: Session) -> dict[str, int]:
    """Return counts and byte sums over all backup runs."""
    row = session.execute(
        select(
            func.count(),
            func.count().filter(Run.status == "completed"),
            func.count().filter(Run.status == "failed"),
            func.count().filter(Run.status == "cancelled"),
            func.count().filter(Run.status == "skipped"),
            func.count().filter(Run.status.in_(ACTIVE)),
            func.coalesce(func.sum(Run.bytes_transferred), 0),
            func.coalesce(
                func.sum(Run.stored_bytes).filter(
                    Run.status == "completed", Run.backup_deleted.is_(False)
                ),
                0,
            ),
        ).where(Run.kind == "backup")
    ).one()
    keys = (
        "runs",
        "completed",
        "failed",
        "cancelled",
        "skipped",
        "active",
        "transferred",
        "stored",
    )
    return {k: int(v or 0) for k, v in zip(keys, row, strict=True)}


def last_runs_per_config(session: Session) -> list[Run]:
    """Return the newest finished-or-active backup run of each config."""
    newest = (
        select(Run.config_id, func.max(Run.queued_at).label("queued_at"))
        .where(Run.kind == "backup")
        .group_by(Run.config_id)
        .subquery()
    )
    query = select(Run).join(
        newest, (Run.config_id == newest.c.config_id) & (Run.queued_at == newest.c.queued_at)
    )
    return list(session.scalars(query))


def last_completed_at(session: Session, config_id: str, kind: str) -> datetime | None:
    """Given a config and a run kind, return when its newest completed run ended (or None)."""
    query = select(func.max(Run.completed_at)).where(
        Run.config_id == config_id, Run.kind == kind, Run.status == "completed"
    )
    return session.scalar(query)
