"""Checking that a destination is reachable and writable, and what it holds."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from backapp.domain.config import BackupConfig, LocalDestination, S3Destination
from backapp.engine.format.layout import ListedBackup
from backapp.errors import StorageError
from backapp.services.context import AppContext


@dataclass(frozen=True)
class DestinationCheck:
    """Whether a destination is reachable and writable, said in the Troubleshooting's words."""

    ok: bool
    message: str
    location: str  # the folder or s3://bucket checked ('' when it could not be told)


def test_destination(
    ctx: AppContext, destination: S3Destination | LocalDestination
) -> DestinationCheck:
    """Given a destination, check it; return whether it works, and a readable message."""
    where = _where(destination)
    try:
        storage = ctx.storage_for(destination, retry=False)  # a person is waiting: fail fast
        storage.check()
    except StorageError as exc:
        return DestinationCheck(False, exc.message, where)
    return DestinationCheck(True, f"Connected: {where} is reachable and writable", where)


def _where(destination: S3Destination | LocalDestination) -> str:
    if isinstance(destination, LocalDestination):
        return destination.path
    endpoint = f" at {destination.endpoint}" if destination.endpoint else ""
    return f"s3://{destination.bucket}{endpoint}"


@dataclass(frozen=True)
class SealedBackup:
    """An encrypted format-2 backup listed without the key: only its id, times and size
    are readable (the rest of its backup.json is sealed), which says nothing of damage."""

    backup_id: str
    created_at: datetime | None
    completed_at: datetime | None
    stored_bytes: int | None
    problem: str  # that the details need BACKUP_ENCRYPTION_KEY

    @classmethod
    def of(
        cls, backup_id: str, public: dict[str, object] | None, problem: str | None
    ) -> SealedBackup | None:
        """Given a listed backup's id, readable part and problem, return what it shows
        without the key; None if it is not such a backup (readable, or damaged)."""
        if public is None:
            return None
        stored = public.get("storedBytes")
        return cls(
            backup_id,
            _moment(public.get("createdAt")),
            _moment(public.get("completedAt")),
            stored if type(stored) is int and stored >= 0 else None,
            problem or "its details need BACKUP_ENCRYPTION_KEY",
        )


def _moment(value: object) -> datetime | None:
    # The readable part is not authenticated until the key opens the rest: shown only if sane.
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def sealed_backup(listed: ListedBackup) -> SealedBackup | None:
    """Given a listed backup, return what it shows without the key if it is an encrypted
    format-2 backup whose details need the key; None otherwise."""
    return SealedBackup.of(listed.backup_id, listed.public, listed.problem)


def stored_backups(ctx: AppContext, config: BackupConfig, slug: str) -> list[ListedBackup]:
    """Given a config, return the backups that exist in its storage, newest first; those
    whose backup.json cannot be read are listed too, with the problem. Raise StorageError."""
    return list(reversed(ctx.repository(config, slug).scan()))
