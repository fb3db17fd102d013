"""Alerts: raised when something needs a human, acknowledged by one, resolved by a later
success of the same config and kind (kept in history, naming the run that resolved it).

Raising an alert, and resolving one, records the notification of it in the same
transaction (``services.notifications``), so no failure is ever told twice or lost.
"""

from __future__ import annotations

import logging

from backapp.db import Alert, Session, utcnow
from backapp.db.repositories import alerts as repo
from backapp.db.repositories import runs as run_repo
from backapp.errors import ConflictError, NotFoundError
from backapp.services import notifications

logger = logging.getLogger(__name__)

KINDS = {
    "backup_failed": "critical",
    "config_error": "critical",
    "storage_connection": "critical",
    "worker_lost": "critical",
    "verify_failed": "critical",
    "restore_failed": "warning",
    "missed_run": "warning",
    "backup_overdue": "warning",
}
# Alerts that a schedule did not run, or no backup completed in time: the "missed" event.
# Every other alert is a "failure". Both are about backups unless their run says otherwise.
MISSED_KINDS = frozenset({"missed_run", "backup_overdue"})
_WHAT = {"backup": "Backup", "restore": "Restore", "verify": "Verification"}


def raise_alert(
    session: Session,
    kind: str,
    message: str,
    *,
    config_id: str | None = None,
    config_name: str | None = None,
    run_id: str | None = None,
    run_kind: str | None = None,
) -> Alert:
    """Given a kind and a message (never a secret), record an open alert and its
    notification, and return it. ``run_kind`` (backup, restore, verify) is what a later
    success must be to resolve it (missed alerts: backup)."""
    alert = Alert(
        kind=kind,
        severity=KINDS.get(kind, "warning"),
        message=message,
        config_id=config_id,
        config_name=config_name,
        run_id=run_id,
        run_kind=run_kind or ("backup" if kind in MISSED_KINDS or run_id is None else None),
    )
    if alert.run_kind is None and run_id is not None:
        run = run_repo.get(session, run_id)
        alert.run_kind = run.kind if run else None
    repo.add(session, alert)
    logger.warning("alert (%s): %s", kind, message)
    event = "missed" if kind in MISSED_KINDS else "failure"
    what = _WHAT.get(alert.run_kind or "backup", "Run")
    if not config_name:
        subject = kind.replace("_", " ")
    elif event == "missed":
        subject = f"'{config_name}' missed a backup"
    else:
        subject = f"{what} of '{config_name}' failed"
    notifications.record(
        session,
        event,
        subject,
        message,
        severity=alert.severity,
        config_id=config_id,
        config_name=config_name,
        run_id=run_id,
        alert_id=alert.id,
    )
    return alert


def after_success(
    session: Session, config_id: str, config_name: str, run_kind: str, run_id: str
) -> list[Alert]:
    """Given a run that completed, resolve the config's unresolved alerts of that kind of
    run and record its notifications ("recovered" if it resolved any; "success" for a
    backup). Return the alerts it resolved."""
    now = utcnow()
    resolved = repo.unresolved_for(session, config_id, run_kind)
    for alert in resolved:
        alert.resolved_at = now
        alert.resolved_by_run_id = run_id
    session.flush()
    what = _WHAT.get(run_kind, "Run")
    if resolved:
        since = min(a.created_at for a in resolved)
        notifications.record(
            session,
            "recovered",
            f"{what} of '{config_name}' recovered",
            f"{what} of '{config_name}' completed again; it resolved {len(resolved)} alert(s) "
            f"open since {since:%Y-%m-%d %H:%M:%S} UTC (last: {resolved[-1].message})",
            severity="info",
            config_id=config_id,
            config_name=config_name,
            run_id=run_id,
        )
    if run_kind == "backup":
        notifications.record(
            session,
            "success",
            f"Backup of '{config_name}' completed",
            f"Backup of '{config_name}' completed.",
            severity="info",
            config_id=config_id,
            config_name=config_name,
            run_id=run_id,
        )
    return resolved


def list_alerts(session: Session, *, open_only: bool = False, limit: int = 100) -> list[Alert]:
    """Return alerts, newest first."""
    return repo.list_alerts(session, open_only=open_only, limit=limit)


def count_open(session: Session) -> int:
    """Return the number of open alerts (neither acknowledged nor resolved)."""
    return repo.count_open(session)


def has_unresolved(session: Session, config_id: str, kind: str) -> bool:
    """Given a config and an alert kind, return whether such an alert awaits a success."""
    return repo.has_unresolved(session, config_id, kind)


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


def acknowledge_all(session: Session, username: str) -> int:
    """Given who acknowledges, mark every open alert acknowledged; return how many."""
    return repo.acknowledge_open(session, username, utcnow())
