"""Queries on alerts."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from backapp.db.models import Alert
from backapp.db.repositories import storable


def add(session: Session, alert: Alert) -> None:
    """Given a new alert, insert it."""
    session.add(alert)
    session.flush()


def get(session: Session, alert_id: str) -> Alert | None:
    """Given an id, return the alert or None."""
    if not storable(alert_id):
        return None
    return session.get(Alert, alert_id)


def list_alerts(session: Session, *, open_only: bool, limit: int) -> list[Alert]:
    """Return alerts, newest first (only unacknowledged ones if asked)."""
    query = select(Alert)
    if open_only:
        query = query.where(Alert.acknowledged_at.is_(None))
    return list(session.scalars(query.order_by(Alert.created_at.desc()).limit(limit)))


def count_open(session: Session) -> int:
    """Return how many alerts are not acknowledged."""
    query = select(func.count()).where(Alert.acknowledged_at.is_(None))
    return int(session.scalar(query) or 0)


def pending_notifications(session: Session, max_attempts: int, limit: int = 20) -> list[str]:
    """Return ids of alerts not yet notified (and not given up on), oldest first."""
    query = (
        select(Alert.id)
        .where(Alert.notified_at.is_(None), Alert.notify_attempts < max_attempts)
        .order_by(Alert.created_at)
        .limit(limit)
    )
    return list(session.scalars(query))


def claim_notification(session: Session, alert_id: str, now: datetime) -> bool:
    """Given an alert, mark it as being notified; return whether this caller got it."""
    result = session.execute(
        update(Alert)
        .where(Alert.id == alert_id, Alert.notified_at.is_(None))
        .values(notified_at=now)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def release_notification(
    session: Session, alert_id: str, error: str, *, give_up: bool, max_attempts: int
) -> None:
    """Given an alert whose notification failed, record why and allow a retry (or give up)."""
    alert = session.get(Alert, alert_id)
    if alert is None:
        return
    alert.notify_attempts = max_attempts if give_up else alert.notify_attempts + 1
    alert.notify_error = error
    alert.notified_at = None
