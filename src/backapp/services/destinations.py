"""Checking that a destination is reachable and writable, and what it holds."""

from __future__ import annotations

from dataclasses import dataclass

from backapp.domain.config import BackupConfig, LocalDestination, S3Destination
from backapp.engine.layout import ListedBackup
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


def stored_backups(ctx: AppContext, config: BackupConfig, slug: str) -> list[ListedBackup]:
    """Given a config, return the backups that exist in its storage, newest first; those
    whose backup.json cannot be read are listed too, with the problem. Raise StorageError."""
    return list(reversed(ctx.repository(config, slug).scan()))
