"""Queries on workers: each scheduler/worker process's own heartbeat."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from backapp.db.models import Worker


@dataclass(frozen=True)
class Presence:
    """Who a worker process is: what its heartbeat writes besides the time."""

    worker_id: str  # host:pid, the id it claims runs with
    host: str
    pid: int
    version: str
    started_at: datetime


def beat(session: Session, presence: Presence, now: datetime) -> None:
    """Given a worker and the time, record that it is alive (inserting its row if missing)."""
    updated = session.execute(
        update(Worker)
        .where(Worker.id == presence.worker_id)
        .values(
            host=presence.host,
            pid=presence.pid,
            version=presence.version,
            started_at=presence.started_at,
            seen_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    if updated.rowcount == 0:  # type: ignore[attr-defined]
        session.add(
            Worker(
                id=presence.worker_id,
                host=presence.host,
                pid=presence.pid,
                version=presence.version,
                labels=[],
                started_at=presence.started_at,
                seen_at=now,
            )
        )
    session.flush()


def list_workers(session: Session) -> list[Worker]:
    """Return every known worker, by id."""
    return list(session.scalars(select(Worker).order_by(Worker.id)))


def remove(session: Session, worker_id: str) -> None:
    """Given a worker id, forget that worker (it stopped cleanly)."""
    session.execute(delete(Worker).where(Worker.id == worker_id))


def forget_unseen(session: Session, before: datetime) -> int:
    """Given a time, forget the workers not seen since then; return how many."""
    result = session.execute(delete(Worker).where(Worker.seen_at < before))
    return int(result.rowcount)  # type: ignore[attr-defined]
