"""Aggregate queries for ``/metrics``: every number is summed by the database, per config,
so a scrape costs a handful of grouped queries however long the history is."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from backapp.db.models import Config, Run, Worker
from backapp.domain import runs as run_states

# Upper bounds (seconds) of the run-duration histogram: a second to a day.
DURATION_BUCKETS: tuple[float, ...] = (1, 5, 15, 60, 300, 900, 1800, 3600, 7200, 21600, 86400)


@dataclass(frozen=True)
class ConfigRow:
    """A config as metrics label it."""

    id: str
    slug: str
    name: str
    enabled: bool
    created_at: datetime
    next_run_at: datetime | None


@dataclass(frozen=True)
class RunGroup:
    """Finished runs of one config, kind and status: how many, and their sums."""

    config_id: str
    kind: str
    status: str
    count: int
    timed: int  # runs with a duration (the histogram's count)
    duration_sum: float
    duration_buckets: tuple[int, ...]  # cumulative counts, one per DURATION_BUCKETS bound
    bytes_read: int
    bytes_stored: int
    bytes_transferred: int
    files: int
    files_skipped: int


@dataclass(frozen=True)
class WorkerBeat:
    """A scheduler/worker process and when it last recorded its own heartbeat."""

    worker_id: str
    host: str
    seen_at: datetime


@dataclass(frozen=True)
class LastBackup:
    """The newest finished backup run of a config."""

    config_id: str
    status: str
    completed_at: datetime | None
    duration_seconds: float | None
    bytes_read: int
    bytes_stored: int
    files: int


def configs(session: Session) -> list[ConfigRow]:
    """Return every config's id, folder, name, state and times."""
    rows = session.execute(
        select(
            Config.id,
            Config.slug,
            Config.name,
            Config.enabled,
            Config.created_at,
            Config.next_run_at,
        )
    )
    return [ConfigRow(*row) for row in rows]


def finished_run_groups(session: Session) -> list[RunGroup]:
    """Return counts and sums of finished runs, grouped by config, kind and status."""
    timed = Run.duration_seconds.is_not(None)
    buckets = [func.count().filter(Run.duration_seconds <= b) for b in DURATION_BUCKETS]
    query = (
        select(
            Run.config_id,
            Run.kind,
            Run.status,
            func.count(),
            func.count().filter(timed),
            func.coalesce(func.sum(Run.duration_seconds), 0.0),
            func.coalesce(func.sum(Run.total_bytes), 0),
            func.coalesce(func.sum(Run.stored_bytes), 0),
            func.coalesce(func.sum(Run.bytes_transferred), 0),
            func.coalesce(func.sum(Run.files_processed), 0),
            func.coalesce(func.sum(Run.files_skipped), 0),
            *buckets,
        )
        .where(Run.status.in_(run_states.TERMINAL))
        .group_by(Run.config_id, Run.kind, Run.status)
    )
    groups = []
    for row in session.execute(query):
        values: tuple[Any, ...] = tuple(row)
        config_id, kind, status, count, n_timed, duration, read, stored, sent, files, skipped = (
            values[:11]
        )
        groups.append(
            RunGroup(
                config_id=str(config_id),
                kind=str(kind),
                status=str(status),
                count=int(count),
                timed=int(n_timed),
                duration_sum=float(duration),
                duration_buckets=tuple(int(c) for c in values[11:]),
                bytes_read=int(read),
                bytes_stored=int(stored),
                bytes_transferred=int(sent),
                files=int(files),
                files_skipped=int(skipped),
            )
        )
    return groups


def last_success_per_config(session: Session) -> dict[str, datetime]:
    """Return, per config id, when its newest completed backup run finished."""
    query = (
        select(Run.config_id, func.max(Run.completed_at))
        .where(Run.kind == "backup", Run.status == "completed")
        .group_by(Run.config_id)
    )
    return {config_id: at for config_id, at in session.execute(query) if at is not None}


def last_backup_per_config(session: Session) -> list[LastBackup]:
    """Return the newest finished (completed, failed, cancelled) backup run of each config."""
    finished = ("completed", "failed", "cancelled")
    newest = (
        select(Run.config_id, func.max(Run.queued_at).label("queued_at"))
        .where(Run.kind == "backup", Run.status.in_(finished))
        .group_by(Run.config_id)
        .subquery()
    )
    query = (
        select(
            Run.config_id,
            Run.status,
            Run.completed_at,
            Run.duration_seconds,
            Run.total_bytes,
            Run.stored_bytes,
            Run.files_processed,
        )
        .join(newest, (Run.config_id == newest.c.config_id) & (Run.queued_at == newest.c.queued_at))
        .where(Run.kind == "backup", Run.status.in_(finished))
    )
    return [LastBackup(*row) for row in session.execute(query)]


def active_counts(session: Session) -> dict[tuple[str, str], int]:
    """Return how many runs are queued or running, per (kind, status)."""
    query = (
        select(Run.kind, Run.status, func.count())
        .where(Run.status.in_(run_states.ACTIVE))
        .group_by(Run.kind, Run.status)
    )
    return {(kind, status): int(n) for kind, status, n in session.execute(query)}


def newest_heartbeat_per_worker(session: Session) -> dict[str, datetime]:
    """Return, per worker id, the newest heartbeat among its running runs."""
    query = (
        select(Run.worker_id, func.max(Run.heartbeat_at))
        .where(Run.status == "running", Run.worker_id.is_not(None))
        .group_by(Run.worker_id)
    )
    return {worker: at for worker, at in session.execute(query) if worker and at is not None}


def worker_heartbeats(session: Session) -> list[WorkerBeat]:
    """Return every known scheduler/worker process and its latest heartbeat, by id."""
    query = select(Worker.id, Worker.host, Worker.seen_at).order_by(Worker.id)
    return [WorkerBeat(*row) for row in session.execute(query)]
