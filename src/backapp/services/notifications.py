"""The outbox of notifications: events recorded with what caused them, sent by the
scheduler's notification thread.

An event is recorded in the transaction of its cause (a failed run's alert, a success),
claimed with a conditional update before it is sent (several schedulers never send one
twice), sent to every target that asks for its kind and existed when it happened, and
retried with a growing pause when a delivery fails; targets that got it are remembered.
"""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta

from backapp.db import NotificationEvent, Session, utcnow
from backapp.db.repositories import configs as config_repo
from backapp.db.repositories import notifications as repo
from backapp.db.repositories import runs as run_repo
from backapp.domain.config import BackupConfig, LocalDestination
from backapp.errors import BackappError, ConfigError, TransportError
from backapp.notify import Notification, build_transport
from backapp.services import configs as config_service
from backapp.services import notify_targets
from backapp.services.context import AppContext

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 5
RETRY_PAUSE = 10.0  # seconds before the first retry; tripled for each next one
STALE_CLAIM = timedelta(minutes=10)  # a claim this old belonged to a sender that died
KEEP_EVENTS = timedelta(days=30)


def record(
    session: Session,
    event: str,
    subject: str,
    message: str,
    *,
    severity: str = "warning",
    config_id: str | None = None,
    config_name: str | None = None,
    run_id: str | None = None,
    alert_id: str | None = None,
) -> NotificationEvent:
    """Given an event (failure, success, recovered, missed) and its words (never a secret),
    put it in the outbox and return it."""
    row = NotificationEvent(
        event=event,
        severity=severity,
        subject=subject,
        message=message,
        config_id=config_id,
        config_name=config_name,
        run_id=run_id,
        alert_id=alert_id,
        delivered=[],
    )
    repo.add_event(session, row)
    return row


def _size(count: int) -> str:
    size = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


def _where(document: BackupConfig | None) -> str:
    if document is None:
        return ""
    dest = document.destination
    if isinstance(dest, LocalDestination):
        return f"folder {dest.path}" + (f" (prefix {dest.prefix})" if dest.prefix else "")
    place = f"s3://{dest.bucket}/{dest.prefix}".rstrip("/")
    return place + (f" at {dest.endpoint}" if dest.endpoint else "")


def compose(session: Session, event: NotificationEvent, base_url: str) -> Notification:
    """Given an event, return its message: what happened, where, when, and a link."""
    run = run_repo.get(session, event.run_id) if event.run_id else None
    config = config_repo.get(session, event.config_id) if event.config_id else None
    document = None
    if config is not None:
        try:
            document = config_service.document_of(config)
        except ConfigError:  # an old document this release refuses: say less, still send
            document = None
    host = run.worker_id.rpartition(":")[0] if run and run.worker_id else socket.gethostname()
    base = base_url.rstrip("/")
    lines = [event.message, ""]
    if event.config_name:
        where = _where(document)
        lines.append(f"Config: {event.config_name}" + (f" (backs up to {where})" if where else ""))
    if run is not None and run.status == "completed" and run.kind == "backup":
        lines.append(
            f"Backup: {run.backup_id} ({run.type}), {run.files_processed} files, "
            f"{_size(run.total_bytes)} read, {_size(run.stored_bytes)} stored"
            + (f", in {run.duration_seconds:.0f} s" if run.duration_seconds is not None else "")
        )
    lines.append(f"Host: {host}")
    lines.append(f"When: {event.created_at:%Y-%m-%d %H:%M:%S} UTC")
    if event.run_id:
        lines.append(f"Run: {base}/backups/logs/{event.run_id}")
    elif event.config_id:
        lines.append(f"Config page: {base}/backups/{event.config_id}")
    severity = "success" if event.event in ("success", "recovered") else event.severity
    return Notification(title=f"BackApp: {event.subject}", body="\n".join(lines), severity=severity)


@dataclass(frozen=True)
class _Claimed:
    event_id: str
    note: Notification
    due: list[notify_targets.Target]


def _claim(ctx: AppContext, event_id: str, now: datetime, env_since: datetime) -> _Claimed | None:
    with ctx.db.session() as session:
        if not repo.claim_event(session, event_id, now):
            return None
        event = repo.get_event(session, event_id)
        assert event is not None
        targets = notify_targets.targets_for(session, ctx.settings, event.config_id, env_since)
        due = [
            t
            for t in targets
            if t.wants(event.event, event.created_at) and t.id not in event.delivered
        ]
        if not due:
            event.sent_at = now
            return None
        return _Claimed(event_id, compose(session, event, ctx.settings.base_url), due)


def _settle(
    ctx: AppContext,
    event_id: str,
    delivered: list[str],
    failures: list[tuple[str, TransportError]],
    now: datetime,
) -> None:
    with ctx.db.session() as session:
        event = repo.get_event(session, event_id)
        if event is None:
            return
        # Permanent failures (a URL Apprise cannot use) are done with, like deliveries.
        done = delivered + [target for target, exc in failures if exc.permanent]
        event.delivered = [*event.delivered, *done]
        event.claimed_at = None
        retry = [exc for _, exc in failures if not exc.permanent]
        event.error = "; ".join(str(exc) for _, exc in failures) or None
        if not retry:
            event.sent_at = now
            return
        event.attempts += 1
        event.next_attempt_at = now + timedelta(seconds=RETRY_PAUSE * 3 ** (event.attempts - 1))


def tidy(ctx: AppContext, now: datetime | None = None) -> None:
    """Free the claims of senders that died mid-way, and forget events older than
    KEEP_EVENTS (the scheduler calls this now and then, not at every send)."""
    now = now or utcnow()
    with ctx.db.session() as session:
        repo.release_stale_claims(session, now - STALE_CLAIM)
        repo.prune_events(session, now - KEEP_EVENTS)


def dispatch(ctx: AppContext, env_since: datetime, now: datetime | None = None) -> int:
    """Given when the environment's targets were read, send every due event to its targets;
    return how many deliveries succeeded. A failed delivery is logged and retried later."""
    now = now or utcnow()
    with ctx.db.session(read_only=True) as session:
        pending = repo.pending_events(session, now, MAX_ATTEMPTS)
    sent = 0
    for event_id in pending:
        claimed = _claim(ctx, event_id, now, env_since)
        if claimed is None:
            continue
        delivered: list[str] = []
        failures: list[tuple[str, TransportError]] = []
        for target in claimed.due:
            try:
                build_transport(target.url).send(claimed.note)
            except TransportError as exc:
                logger.warning("notification %s to %s failed: %s", event_id, target.masked, exc)
                failures.append((target.id, exc))
                continue
            except BackappError as exc:  # never let one target stop the others
                logger.warning("notification %s to %s failed: %s", event_id, target.masked, exc)
                failures.append((target.id, TransportError(str(exc))))
                continue
            delivered.append(target.id)
            sent += 1
        _settle(ctx, event_id, delivered, failures, now)
    return sent
