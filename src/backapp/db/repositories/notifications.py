"""Queries on notification targets and the outbox of notification events."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement, delete, or_, select, update
from sqlalchemy.orm import Session

from backapp.db.models import NotificationEvent, NotificationTarget
from backapp.db.repositories import storable


def add_target(session: Session, target: NotificationTarget) -> None:
    """Given a new target, insert it."""
    session.add(target)
    session.flush()


def get_target(session: Session, target_id: str) -> NotificationTarget | None:
    """Given an id, return the target or None."""
    if not storable(target_id):
        return None
    return session.get(NotificationTarget, target_id)


def list_targets(session: Session) -> list[NotificationTarget]:
    """Return every target: global ones first, then by config, oldest first."""
    query = select(NotificationTarget).order_by(
        NotificationTarget.config_id.is_not(None),
        NotificationTarget.config_id,
        NotificationTarget.created_at,
    )
    return list(session.scalars(query))


def targets_of(session: Session, config_id: str | None) -> list[NotificationTarget]:
    """Given a config id (None: none), return the global targets and that config's."""
    where: ColumnElement[bool] = NotificationTarget.config_id.is_(None)
    if config_id is not None:
        where = or_(where, NotificationTarget.config_id == config_id)
    query = select(NotificationTarget).where(where).order_by(NotificationTarget.created_at)
    return list(session.scalars(query))


def config_targets(session: Session, config_id: str) -> list[NotificationTarget]:
    """Given a config id, return its own targets in the order they were added."""
    query = (
        select(NotificationTarget)
        .where(NotificationTarget.config_id == config_id)
        .order_by(NotificationTarget.created_at, NotificationTarget.id)
    )
    return list(session.scalars(query))


def delete_target(session: Session, target: NotificationTarget) -> None:
    """Given a target, delete it."""
    session.delete(target)
    session.flush()


def delete_config_targets(session: Session, config_id: str) -> None:
    """Given a config id, delete its own targets."""
    session.execute(delete(NotificationTarget).where(NotificationTarget.config_id == config_id))


def add_event(session: Session, event: NotificationEvent) -> None:
    """Given a new event, put it in the outbox."""
    session.add(event)
    session.flush()


def get_event(session: Session, event_id: str) -> NotificationEvent | None:
    """Given an id, return the event or None."""
    return session.get(NotificationEvent, event_id)


def pending_events(
    session: Session, now: datetime, max_attempts: int, limit: int = 20
) -> list[str]:
    """Return ids of events due to be sent (not sent, not being sent, not given up on, not
    waiting to be retried), oldest first."""
    query = (
        select(NotificationEvent.id)
        .where(
            NotificationEvent.sent_at.is_(None),
            NotificationEvent.claimed_at.is_(None),
            NotificationEvent.attempts < max_attempts,
            or_(
                NotificationEvent.next_attempt_at.is_(None),
                NotificationEvent.next_attempt_at <= now,
            ),
        )
        .order_by(NotificationEvent.created_at)
        .limit(limit)
    )
    return list(session.scalars(query))


def claim_event(session: Session, event_id: str, now: datetime) -> bool:
    """Given an event, mark it as being sent; return whether this caller got it."""
    result = session.execute(
        update(NotificationEvent)
        .where(
            NotificationEvent.id == event_id,
            NotificationEvent.claimed_at.is_(None),
            NotificationEvent.sent_at.is_(None),
        )
        .values(claimed_at=now)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def release_stale_claims(session: Session, before: datetime) -> int:
    """Given a moment, free the claims of events claimed before it and never settled (their
    sender died mid-way); return how many."""
    result = session.execute(
        update(NotificationEvent)
        .where(NotificationEvent.sent_at.is_(None), NotificationEvent.claimed_at < before)
        .values(claimed_at=None)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def prune_events(session: Session, before: datetime) -> None:
    """Given a moment, delete the events created before it (sent or given up on)."""
    session.execute(delete(NotificationEvent).where(NotificationEvent.created_at < before))
