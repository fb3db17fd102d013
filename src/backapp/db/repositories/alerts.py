"""Queries on alerts."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from backapp.db.models import Alert


def add(session: Session, alert: Alert) -> None:
    """Given a new alert, insert it."""
    session.add(alert)
    session.flush()


def get(session: Session, alert_id: str) -> Alert | None:
    """Given an id, return the alert or None."""
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
