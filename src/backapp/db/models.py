"""SQLAlchemy models: configs, runs (the "backup logs"), alerts, users, tokens, sessions."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    """Return the current time, timezone-aware in UTC."""
    return datetime.now(UTC)


def new_id() -> str:
    """Return a new random UUID as a string."""
    return str(uuid.uuid4())


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always returned timezone-aware (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime, dict[str, Any]: JSON}


class User(Base):
    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    username: Mapped[str] = mapped_column(String(150), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))  # "admin" | "viewer"
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(150), default="")
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(default=None)


class WebSession(Base):
    __tablename__ = "web_sessions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]


class Config(Base):
    __tablename__ = "configs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200))
    slug: Mapped[str] = mapped_column(String(120), unique=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    document: Mapped[dict[str, Any]] = mapped_column(JSON)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    next_run_at: Mapped[datetime | None] = mapped_column(default=None)
    last_fired_at: Mapped[datetime | None] = mapped_column(default=None)
    next_verify_at: Mapped[datetime | None] = mapped_column(default=None)


class Run(Base):
    __tablename__ = "runs"
    __table_args__ = (
        Index("ix_runs_status", "status"),
        Index("ix_runs_config_queued", "config_id", "queued_at"),
        Index("ix_runs_queued_at", "queued_at"),
        # Each scheduled fire time produces one run, however many schedulers saw it.
        Index("ux_runs_fire", "config_id", "kind", "scheduled_for", unique=True),
        # A config never has two active runs of a kind: the database enforces it.
        Index(
            "ux_runs_active",
            "config_id",
            "kind",
            unique=True,
            sqlite_where=text("status IN ('queued', 'running')"),
            postgresql_where=text("status IN ('queued', 'running')"),
        ),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    # No foreign key: a run outlives its config (history stays readable after a delete).
    config_id: Mapped[str] = mapped_column(String(36))
    config_name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16), default="backup")  # backup|restore|verify
    trigger: Mapped[str] = mapped_column(String(16))  # manual|scheduled
    type: Mapped[str] = mapped_column(String(16))  # full|incremental (as configured)
    status: Mapped[str] = mapped_column(String(16))
    scheduled_for: Mapped[datetime | None] = mapped_column(default=None)
    queued_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    completed_at: Mapped[datetime | None] = mapped_column(default=None)
    duration_seconds: Mapped[float | None] = mapped_column(Float, default=None)
    files_processed: Mapped[int] = mapped_column(BigInteger, default=0)
    files_skipped: Mapped[int] = mapped_column(BigInteger, default=0)
    total_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    bytes_transferred: Mapped[int] = mapped_column(BigInteger, default=0)
    stored_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    backup_id: Mapped[str | None] = mapped_column(String(64), default=None)
    backup_deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    progress: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    request: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    worker_id: Mapped[str | None] = mapped_column(String(120), default=None)
    heartbeat_at: Mapped[datetime | None] = mapped_column(default=None)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    requested_by: Mapped[str | None] = mapped_column(String(150), default=None)


class Alert(Base):
    __tablename__ = "alerts"
    __table_args__ = (
        Index("ix_alerts_open", "acknowledged_at", "created_at"),
        # A success looks up its config's unresolved alerts of its kind.
        Index("ix_alerts_unresolved", "config_id", "run_kind", "resolved_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    kind: Mapped[str] = mapped_column(String(32))
    severity: Mapped[str] = mapped_column(String(16))  # critical|warning|info
    config_id: Mapped[str | None] = mapped_column(String(36), default=None)
    config_name: Mapped[str | None] = mapped_column(String(200), default=None)
    run_id: Mapped[str | None] = mapped_column(String(36), default=None)
    message: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    acknowledged_at: Mapped[datetime | None] = mapped_column(default=None)
    acknowledged_by: Mapped[str | None] = mapped_column(String(150), default=None)
    # The kind of run it is about (backup|restore|verify): a later success of the same
    # config and kind resolves it, naming the run that did.
    run_kind: Mapped[str | None] = mapped_column(String(16), default=None)
    resolved_at: Mapped[datetime | None] = mapped_column(default=None)
    resolved_by_run_id: Mapped[str | None] = mapped_column(String(36), default=None)


class NotificationTarget(Base):
    """Where notifications go: an Apprise URL (a secret), for every config or for one."""

    __tablename__ = "notification_targets"
    __table_args__ = (Index("ix_notification_targets_config", "config_id"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    # None: a global target (the settings page); else one of options.notify.urls of a config.
    config_id: Mapped[str | None] = mapped_column(String(36), default=None)
    label: Mapped[str] = mapped_column(String(200), default="")
    url: Mapped[str] = mapped_column(Text)
    events: Mapped[list[str]] = mapped_column(JSON)  # failure|success|recovered|missed
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class NotificationEvent(Base):
    """Something to tell (a failure, a success, a recovery, a missed backup): the outbox.

    Claimed (and then sent) once; a failed delivery is retried a few times, and targets
    that already got it are remembered so a retry never sends twice.
    """

    __tablename__ = "notification_events"
    __table_args__ = (Index("ix_notification_events_pending", "sent_at", "created_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    event: Mapped[str] = mapped_column(String(16))  # failure|success|recovered|missed
    severity: Mapped[str] = mapped_column(String(16))  # critical|warning|info
    subject: Mapped[str] = mapped_column(Text)  # what happened, in one line
    message: Mapped[str] = mapped_column(Text)
    config_id: Mapped[str | None] = mapped_column(String(36), default=None)
    config_name: Mapped[str | None] = mapped_column(String(200), default=None)
    run_id: Mapped[str | None] = mapped_column(String(36), default=None)
    alert_id: Mapped[str | None] = mapped_column(String(36), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    claimed_at: Mapped[datetime | None] = mapped_column(default=None)
    next_attempt_at: Mapped[datetime | None] = mapped_column(default=None)  # after a failure
    sent_at: Mapped[datetime | None] = mapped_column(default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    delivered: Mapped[list[str]] = mapped_column(JSON, default=list)  # target ids done


class Worker(Base):
    """A scheduler/worker process, as its own heartbeat records it (idle or busy).

    Its id is the one it claims runs with (``host:pid``). Written at start and every few
    seconds, removed on a clean shutdown; a row left by a process that died ages until it
    is forgotten.
    """

    __tablename__ = "workers"

    id: Mapped[str] = mapped_column(String(120), primary_key=True)
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    version: Mapped[str] = mapped_column(String(64))
    labels: Mapped[list[str]] = mapped_column(JSON, default=list)  # issue 16: none yet
    started_at: Mapped[datetime] = mapped_column()
    seen_at: Mapped[datetime] = mapped_column()
