"""Queries on alerts."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement, and_, func, select, update
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


def _open() -> ColumnElement[bool]:
    # Open: nobody acknowledged it and no later success resolved it.
    return and_(Alert.acknowledged_at.is_(None), Alert.resolved_at.is_(None))


def list_alerts(session: Session, *, open_only: bool, limit: int) -> list[Alert]:
    """Return alerts, newest first (only open ones if asked)."""
    query = select(Alert)
    if open_only:
        query = query.where(_open())
    return list(session.scalars(query.order_by(Alert.created_at.desc()).limit(limit)))


def count_open(session: Session) -> int:
    """Return how many alerts are open (neither acknowledged nor resolved)."""
    query = select(func.count()).where(_open())
    return int(session.scalar(query) or 0)


def unresolved_for(session: Session, config_id: str, run_kind: str) -> list[Alert]:
    """Given a config and a run kind, return its unresolved alerts, oldest first."""
    query = select(Alert).where(
        Alert.config_id == config_id, Alert.run_kind == run_kind, Alert.resolved_at.is_(None)
    )
    return list(session.scalars(query.order_by(Alert.created_at)))


def has_unresolved(session: Session, config_id: str, kind: str) -> bool:
    """Given a config and an alert kind, return whether such an alert is unresolved."""
    query = select(Alert.id).where(
        Alert.config_id == config_id, Alert.kind == kind, Alert.resolved_at.is_(None)
    )
    return session.scalar(query.limit(1)) is not None


def acknowledge_open(session: Session, username: str, now: datetime) -> int:
    """Given who acknowledges, mark every open alert acknowledged; return how many."""
    result = session.execute(
        update(Alert)
        .where(_open())
        .values(acknowledged_at=now, acknowledged_by=username)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]
