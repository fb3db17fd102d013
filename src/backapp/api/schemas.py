"""The API's response bodies: one pydantic model per JSON shape, the routes' return types.

Services return what they know (db rows, engine and domain objects, service dataclasses);
each ``…Out.of(…)`` here turns one into the camelCase document the API promises, so the
OpenAPI document describes every body exactly. Moments are ISO 8601 with a ``+00:00``
offset, as ``datetime.isoformat`` writes them; a stored backup is its ``backup.json``
(``BackupInfo``, whose moments end in ``Z``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
    WrapSerializer,
)
from pydantic.alias_generators import to_camel

from backapp.db import Alert, Config
from backapp.domain.config import Destination, Options, RetentionPolicy, ScheduleSpec, Source
from backapp.domain.runs import RunKind, RunStatus
from backapp.engine.format.layout import BackupInfo, ListedBackup
from backapp.engine.prune import PruneResult
from backapp.services import configs as config_service
from backapp.services.destinations import DestinationCheck, sealed_backup
from backapp.services.notify_targets import Target as NotificationTarget
from backapp.services.restores import Folder, TreeEntry
from backapp.services.retention import DeletedBackup, RetentionDecision, RetentionPreview
from backapp.services.runs import RunView
from backapp.services.stats import Stats
from backapp.services.users import Identity


def _iso(moment: datetime) -> str:
    return moment.isoformat()


Moment = Annotated[
    datetime,
    PlainSerializer(_iso, return_type=str),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]


def _without_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_none(v) for v in value]
    return value


# A part of a config document, written as it is stored: unset optional fields are absent.
# (A lambda: a serializer's return annotation would replace the part's schema with "any".)
AsStored = WrapSerializer(lambda value, handler: _without_none(handler(value)))


class _Out(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


def _is_none(value: Any) -> bool:
    return value is None


def _absent_if_none(description: str | None = None) -> Any:
    """Return the Field of an optional member that is left out, not null, when unset."""
    return Field(None, exclude_if=_is_none, description=description)


class ErrorProblemOut(_Out):
    """One field of a refused request, and what is wrong with it."""

    field: str = Field(description="Where, as a dotted path (`sources[0].path`, `query.limit`)")
    message: str


class ErrorOut(_Out):
    """Every 4xx and 5xx body: a message, and the fields at fault when there are some."""

    error: str
    problems: list[ErrorProblemOut] | None = _absent_if_none("Only when fields are at fault")

    @classmethod
    def of(cls, message: str, problems: list[tuple[str, str]] | None = None) -> ErrorOut:
        """Given a message and (field, message) problems, return the error body."""
        listed = [ErrorProblemOut(field=f, message=m) for f, m in problems or []]
        return cls(error=message, problems=listed or None)


# What every API router declares besides its success bodies (FastAPI's default 422 body,
# {"detail": …}, is not what api/errors.py sends).
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    "4XX": {"model": ErrorOut, "description": "Refused: why, and the fields at fault"},
    "5XX": {"model": ErrorOut, "description": "Storage or database trouble: what happened"},
}


class ConfigOut(_Out):
    """A stored backup configuration: its document, and what the server keeps about it."""

    id: str
    name: str
    enabled: bool
    sources: Annotated[list[Source], AsStored]
    destination: Annotated[Destination, AsStored]
    schedule: Annotated[ScheduleSpec, AsStored]
    options: Annotated[Options, AsStored]
    slug: str = Field(description="The config's folder in its destination (fixed at creation)")
    version: int = Field(description="Raised by every edit; send it as If-Match")
    created_at: Moment
    updated_at: Moment
    next_run_at: Moment | None
    next_verify_at: Moment | None

    @classmethod
    def of(cls, config: Config) -> ConfigOut:
        """Given a stored config, return its body. Raise ConfigError if it no longer parses."""
        document = config_service.document_of(config)
        return cls(
            id=config.id,
            name=document.name,
            enabled=document.enabled,
            sources=document.sources,
            destination=document.destination,
            schedule=document.schedule,
            options=document.options,
            slug=config.slug,
            version=config.version,
            created_at=config.created_at,
            updated_at=config.updated_at,
            next_run_at=config.next_run_at,
            next_verify_at=config.next_verify_at,
        )


class RunOut(_Out):
    """A run of a config (backup, restore or verification): the backup log entry."""

    id: str
    config_id: str
    config_name: str
    config_deleted: bool = Field(description="The config was deleted since (its runs stay)")
    kind: RunKind
    trigger: str = Field(description="manual | scheduled")
    type: str = Field(description="full | incremental, as configured when it was queued")
    status: RunStatus
    scheduled_for: Moment | None
    queued_at: Moment
    started_at: Moment | None
    completed_at: Moment | None
    duration_seconds: float | None
    files_processed: int
    files_skipped: int
    total_bytes: int
    bytes_transferred: int
    stored_bytes: int
    backup_id: str | None
    backup_deleted: bool = Field(description="Retention deleted the backup since")
    error: str | None
    requested_by: str | None
    cancel_requested: bool
    progress: dict[str, Any] | None = Field(
        description="While running: phase, filesDone, filesTotal, bytesDone, bytesTotal, "
        "rateBytesPerSecond, etaSeconds, …"
    )
    details: dict[str, Any] = Field(description="The result, by kind (empty until it ends)")

    @classmethod
    def of(cls, view: RunView) -> RunOut:
        """Given a run's view, return its body."""
        run = view.run
        return cls(
            id=run.id,
            config_id=run.config_id,
            config_name=run.config_name,
            config_deleted=not view.config_exists,
            kind=run.kind,
            trigger=run.trigger,
            type=run.type,
            status=run.status,
            scheduled_for=run.scheduled_for,
            queued_at=run.queued_at,
            started_at=run.started_at,
            completed_at=run.completed_at,
            duration_seconds=run.duration_seconds,
            files_processed=run.files_processed,
            files_skipped=run.files_skipped,
            total_bytes=run.total_bytes,
            bytes_transferred=run.bytes_transferred,
            stored_bytes=run.stored_bytes,
            backup_id=run.backup_id,
            backup_deleted=run.backup_deleted,
            error=run.error,
            requested_by=run.requested_by,
            cancel_requested=run.cancel_requested,
            progress=view.progress,
            details=view.details,
        )


class AlertOut(_Out):
    """Something that needs a human, and whether one acknowledged it."""

    id: str
    kind: str = Field(description="backup_failed, config_error, storage_connection, …")
    severity: str = Field(description="critical | warning")
    config_id: str | None
    config_name: str | None
    run_id: str | None
    message: str
    created_at: Moment
    acknowledged: bool
    acknowledged_at: Moment | None
    acknowledged_by: str | None
    resolved: bool = Field(description="a later success of the same config and kind ended it")
    resolved_at: Moment | None
    resolved_by_run_id: str | None = Field(description="the run whose success resolved it")

    @classmethod
    def of(cls, alert: Alert) -> AlertOut:
        """Given an alert, return its body."""
        return cls(
            id=alert.id,
            kind=alert.kind,
            severity=alert.severity,
            config_id=alert.config_id,
            config_name=alert.config_name,
            run_id=alert.run_id,
            message=alert.message,
            created_at=alert.created_at,
            acknowledged=alert.acknowledged_at is not None,
            acknowledged_at=alert.acknowledged_at,
            acknowledged_by=alert.acknowledged_by,
            resolved=alert.resolved_at is not None,
            resolved_at=alert.resolved_at,
            resolved_by_run_id=alert.resolved_by_run_id,
        )


class AcknowledgedOut(_Out):
    """How many open alerts were acknowledged."""

    acknowledged: int


NotifyEventName = Literal["failure", "success", "recovered", "missed"]


class NotificationTargetOut(_Out):
    """Where notifications go. The URL is a secret: only its masked form is shown."""

    id: str = Field(description="env-N for BACKAPP_NOTIFY_URLS (read-only)")
    source: Literal["environment", "settings", "config"]
    label: str
    url: str = Field(description="masked: passwords and tokens hidden")
    events: list[NotifyEventName]
    config_id: str | None
    added_at: Moment | None = Field(description="told only of what happened after this")

    @classmethod
    def of(cls, target: NotificationTarget) -> NotificationTargetOut:
        """Given a target, return its body (the URL masked)."""
        return cls(
            id=target.id,
            source=target.source,
            label=target.label,
            url=target.masked,
            events=list(target.events),
            config_id=target.config_id,
            added_at=target.added_at,
        )


class NotificationTargetIn(BaseModel):
    """A global notification target: an Apprise URL and the events it is told about."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(description="an Apprise URL: mailto://…, json://…, ntfy://…, slack://…")
    events: list[NotifyEventName] = Field(default=["failure", "recovered", "missed"])
    label: str = ""


class NotificationTargetPatch(BaseModel):
    """Changes to a global target; a URL left out (or its masked form) is kept."""

    model_config = ConfigDict(extra="forbid")

    url: str | None = None
    events: list[NotifyEventName] | None = None
    label: str | None = None


class TestMessageOut(_Out):
    """Whether the test message was delivered."""

    delivered: bool
    target: str = Field(description="the masked URL it was sent to")


class StatsOut(_Out):
    """Totals over every backup run, the last run per config and overall, the next one."""

    total_configs: int
    active_configs: int
    total_backups: int
    completed_backups: int
    failed_backups: int
    cancelled_backups: int
    skipped_backups: int
    active_runs: int
    success_rate: float | None = Field(description="Percent of finished backups that completed")
    total_bytes_stored: int
    bytes_transferred: int
    open_alerts: int
    last_run: RunOut | None
    last_run_per_config: dict[str, RunOut] = Field(description="By config id")
    next_run_at: Moment | None

    @classmethod
    def of(cls, stats: Stats) -> StatsOut:
        """Given the statistics, return their body."""
        return cls(
            total_configs=stats.total_configs,
            active_configs=stats.active_configs,
            total_backups=stats.total_backups,
            completed_backups=stats.completed_backups,
            failed_backups=stats.failed_backups,
            cancelled_backups=stats.cancelled_backups,
            skipped_backups=stats.skipped_backups,
            active_runs=stats.active_runs,
            success_rate=stats.success_rate,
            total_bytes_stored=stats.total_bytes_stored,
            bytes_transferred=stats.bytes_transferred,
            open_alerts=stats.open_alerts,
            last_run=RunOut.of(stats.last_run) if stats.last_run else None,
            last_run_per_config={k: RunOut.of(v) for k, v in stats.last_run_per_config.items()},
            next_run_at=stats.next_run_at,
        )


class DamagedBackupOut(_Out):
    """A committed backup whose backup.json cannot be read."""

    backup_id: str
    damaged: Literal[True] = True
    problem: str | None


class SealedBackupOut(_Out):
    """An encrypted backup listed without the key: not damaged, but only its id, times and
    size are readable (the rest of its backup.json is sealed)."""

    backup_id: str
    encrypted: Literal[True] = True
    needs_key: Literal[True] = Field(
        True, description="Its details need BACKUP_ENCRYPTION_KEY on this server"
    )
    created_at: datetime | None = Field(description="null when its readable part is unclear")
    completed_at: datetime | None
    stored_bytes: int | None = Field(description="Bytes this backup added to storage")
    problem: str = Field(description="What needs the key, in words")


# A stored backup: its backup.json (docs/FORMAT.md), what an encrypted one shows without
# the key, or why its backup.json cannot be read.
StoredBackupOut = BackupInfo | SealedBackupOut | DamagedBackupOut


def stored_backup_out(listed: ListedBackup) -> StoredBackupOut:
    """Given a listed backup, return its body."""
    if listed.info is not None:
        return listed.info
    sealed = sealed_backup(listed)
    if sealed is not None:
        return SealedBackupOut(
            backup_id=sealed.backup_id,
            created_at=sealed.created_at,
            completed_at=sealed.completed_at,
            stored_bytes=sealed.stored_bytes,
            problem=sealed.problem,
        )
    return DamagedBackupOut(backup_id=listed.backup_id, problem=listed.problem)


class PruneResultOut(_Out):
    """What prune found and did (or, as a dry run, would do)."""

    dry_run: bool
    backups: int = Field(description="Backups whose blocks were kept")
    blocks_kept: int
    blocks_removed: int
    blocks_unused_left: int = Field(
        description="Unused blocks left in packs mostly in use (removed by a later prune)"
    )
    packs_removed: int
    packs_repacked: int
    unlisted_packs_removed: int = Field(description="Packs left by runs that were interrupted")
    bytes_freed: int
    bytes_repacked: int
    notes: list[str]

    @classmethod
    def of(cls, result: PruneResult) -> PruneResultOut:
        """Given a prune's result, return its body."""
        return cls(
            dry_run=result.dry_run,
            backups=result.backups,
            blocks_kept=result.blocks_kept,
            blocks_removed=result.blocks_removed,
            blocks_unused_left=result.blocks_unused_left,
            packs_removed=result.packs_removed,
            packs_repacked=result.packs_repacked,
            unlisted_packs_removed=result.packs_unlisted_removed,
            bytes_freed=result.bytes_freed,
            bytes_repacked=result.bytes_repacked,
            notes=list(result.notes),
        )


class DeletedBackupOut(_Out):
    """A deleted backup, and what the prune after it freed (or why it did not run)."""

    backup_id: str
    prune: PruneResultOut | None = Field(description="null when prune was skipped")
    prune_skipped: str | None = Field(
        description="Why prune did not run (a backup cannot be read, a run held the lock); "
        "the backup is deleted all the same"
    )

    @classmethod
    def of(cls, deleted: DeletedBackup) -> DeletedBackupOut:
        """Given a deleted backup, return its body."""
        return cls(
            backup_id=deleted.backup_id,
            prune=PruneResultOut.of(deleted.prune) if deleted.prune is not None else None,
            prune_skipped=deleted.prune_skipped,
        )


class RetainedBackupOut(_Out):
    """A readable backup, and why retention deletes or keeps it."""

    backup_id: str
    type: str
    completed_at: Moment
    stored_bytes: int
    reason: str


class UnreadableBackupOut(_Out):
    """A backup retention keeps because it cannot be read (a person should look)."""

    backup_id: str
    reason: str


def _retained(decision: RetentionDecision) -> RetainedBackupOut:
    info = decision.info
    assert info is not None, "only readable backups are deleted or kept by age"
    return RetainedBackupOut(
        backup_id=decision.backup_id,
        type=info.type,
        completed_at=info.completed_at,
        stored_bytes=info.stats.stored_bytes,
        reason=decision.reason,
    )


class RetentionPreviewOut(_Out):
    """What retention would delete now and what it keeps, and why (a dry run)."""

    retention_days: int | None = Field(description="The policy's keepWithinDays")
    policy: RetentionPolicy | None = Field(
        description="The rules in force (retentionDays as keepWithinDays); null keeps everything"
    )
    timezone: str = Field(description="The schedule's timezone, which the periods are counted in")
    delete: list[RetainedBackupOut] = Field(description="Newest first, as retention deletes")
    keep: list[RetainedBackupOut]
    damaged: list[UnreadableBackupOut]

    @classmethod
    def of(cls, preview: RetentionPreview) -> RetentionPreviewOut:
        """Given a retention preview, return its body."""
        return cls(
            retention_days=preview.retention_days,
            policy=preview.policy,
            timezone=preview.timezone,
            delete=[_retained(d) for d in preview.delete],
            keep=[_retained(d) for d in preview.keep],
            damaged=[
                UnreadableBackupOut(backup_id=d.backup_id, reason=d.reason) for d in preview.damaged
            ],
        )


class TreeEntryOut(_Out):
    """An entry of a folder of a backup; what it does not have is absent."""

    name: str
    path: str
    type: str = Field(description="file | dir | symlink | hardlink")
    mode: str | None = _absent_if_none("Permission bits in octal ('0644')")
    mtime: Moment | None = _absent_if_none()
    size: int | None = _absent_if_none("Files only")
    target: str | None = _absent_if_none("What a symlink or hard link points to")

    @classmethod
    def of(cls, entry: TreeEntry) -> TreeEntryOut:
        """Given a tree entry, return its body."""
        return cls(
            name=entry.name,
            path=entry.path,
            type=entry.type,
            mode=None if entry.mode is None else f"{entry.mode:04o}",
            mtime=entry.mtime,
            size=entry.size,
            target=entry.target,
        )


class FolderOut(_Out):
    """One folder of a backup (its path without a leading '/'), folders first."""

    backup_id: str
    path: str
    entries: list[TreeEntryOut]

    @classmethod
    def of(cls, folder: Folder) -> FolderOut:
        """Given a folder of a backup, return its body."""
        entries = [TreeEntryOut.of(e) for e in folder.entries]
        return cls(backup_id=folder.backup_id, path=folder.path, entries=entries)


class DestinationCheckOut(_Out):
    """Whether a destination is reachable and writable, with a readable message."""

    ok: bool
    message: str
    location: str

    @classmethod
    def of(cls, check: DestinationCheck) -> DestinationCheckOut:
        """Given a destination check, return its body."""
        return cls(ok=check.ok, message=check.message, location=check.location)


class SessionUserOut(_Out):
    """Who a session belongs to."""

    username: str
    role: str = Field(description="admin | operator | viewer")


class LoginOut(_Out):
    """A started session: who, and the CSRF token to send as X-CSRF-Token."""

    user: SessionUserOut
    csrf_token: str


class IdentityOut(_Out):
    """Who is calling, and how they proved it."""

    username: str
    role: str = Field(description="admin | operator | viewer")
    via: Literal["session", "token"]

    @classmethod
    def of(cls, identity: Identity) -> IdentityOut:
        """Given an identity, return its body."""
        return cls(username=identity.username, role=identity.role, via=identity.via)


class HealthOut(_Out):
    """Liveness, and whether the database answers (nothing more, without authentication)."""

    status: Literal["ok", "degraded"]
    database: Literal["ok", "unavailable"]
