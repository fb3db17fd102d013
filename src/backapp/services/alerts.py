"""Alerts: raised when something needs a human, acknowledged by one."""

from __future__ import annotations

import logging
from typing import Any

from backapp.db import Alert, Session, utcnow
from backapp.db.repositories import alerts as repo
from backapp.errors import ConflictError, NotFoundError

logger = logging.getLogger(__name__)

KINDS = {
    "backup_failed": "critical",
    "config_error": "critical",
    "storage_connection": "critical",
    "worker_lost": "critical",
    "verify_failed": "critical",
    "restore_failed": "warning",
    "missed_run": "warning",
}


def raise_alert(
    session: Session,
    kind: str,
    message: str,
    *,
    config_id: str | None = None,
    config_name: str | None = None,
    run_id: str | None = None,
) -> Alert:
    """Given a kind and a message (never a secret), record an open alert and return it."""
    alert = Alert(
        kind=kind,
        severity=KINDS.get(kind, "warning"),
        message=message,
        config_id=config_id,
        config_name=config_name,
        run_id=run_id,
    )
    repo.add(session, alert)
    logger.warning("alert (%s): %s", kind, message)
    return alert


def to_json(alert: Alert) -> dict[str, Any]:
    """Given an alert, return its API representation."""
    return {
        "id": alert.id,
        "kind": alert.kind,
        "severity": alert.severity,
        "configId": alert.config_id,
        "configName": alert.config_name,
        "runId": alert.run_id,
        "message": alert.message,
        "createdAt": alert.created_at.isoformat(),
        "acknowledged": alert.acknowledged_at is not None,
        "acknowledgedAt": alert.acknowledged_at.isoformat() if alert.acknowledged_at else None,
        "acknowledgedBy": alert.acknowledged_by,
    }


def list_alerts(session: Session, *, open_only: bool = False, limit: int = 100) -> list[Alert]:
    """Return alerts, newest first."""
    return repo.list_alerts(session, open_only=open_only, limit=limit)


def count_open(session: Session) -> int:
    """Return the number of unacknowledged alerts."""
    return repo.count_open(session)


def acknowledge(session: Session, alert_id: str, username: str) -> Alert:
    """Given an alert and who acknowledges it, mark it acknowledged. Raise NotFoundError."""
    alert = repo.get(session, alert_id)
    if alert is None:
        raise NotFoundError(f"alert {alert_id} not found")
    if alert.acknowledged_at is not None:
        raise ConflictError(f"alert {alert_id} was already acknowledged by {alert.acknowledged_by}")
    alert.acknowledged_at = utcnow()
    alert.acknowledged_by = username
    session.flush()
    return alert
