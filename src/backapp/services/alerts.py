"""Alerts: raised when something needs a human, acknowledged by one."""

from __future__ import annotations

import logging

from backapp.db import Alert, Session, utcnow
from backapp.db.repositories import alerts as repo
from backapp.errors import ConflictError, NotFoundError
from backapp.notify import Notification, Notifier, TransportError
from backapp.services.context import AppContext

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


MAX_NOTIFY_ATTEMPTS = 5


def dispatch_notifications(ctx: AppContext, notifier: Notifier) -> int:
    """Send the notification of every alert not yet notified; return how many were sent.

    Each alert is claimed with a conditional update first, so several schedulers never
    send one twice; a failed delivery is retried on later ticks, a few times.
    """
    with ctx.db.session() as session:
        pending = repo.pending_notifications(session, MAX_NOTIFY_ATTEMPTS)
    sent = 0
    for alert_id in pending:
        with ctx.db.session() as session:
            if not repo.claim_notification(session, alert_id, utcnow()):
                continue
            alert = repo.get(session, alert_id)
            assert alert is not None
            note = Notification(
                title=f"BackApp {alert.severity}: {alert.kind.replace('_', ' ')}",
                body=alert.message,
                severity=alert.severity,
            )
        try:
            notifier.send(note)
        except TransportError as exc:
            logger.warning("notification of alert %s failed: %s", alert_id, exc)
            with ctx.db.session() as session:
                repo.release_notification(
                    session,
                    alert_id,
                    str(exc),
                    give_up=exc.permanent,
                    max_attempts=MAX_NOTIFY_ATTEMPTS,
                )
            continue
        sent += 1
    return sent
