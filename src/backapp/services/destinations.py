"""Checking that a destination is reachable and writable, and what it holds."""

from __future__ import annotations

from typing import Any

from backapp.domain.config import BackupConfig, LocalDestination, S3Destination
from backapp.engine.layout import BackupInfo, ListedBackup
from backapp.errors import StorageError
from backapp.services.context import AppContext


def test_destination(
    ctx: AppContext, destination: S3Destination | LocalDestination
) -> dict[str, Any]:
    """Given a destination, check it; return {ok, message} in the Troubleshooting's words."""
    try:
        storage = ctx.storage_for(destination, retry=False)  # a person is waiting: fail fast
        storage.check()
    except StorageError as exc:
        return {"ok": False, "message": exc.message, "location": _where(destination)}
    return {
        "ok": True,
        "message": f"Connected: {_where(destination)} is reachable and writable",
        "location": _where(destination),
    }


def _where(destination: S3Destination | LocalDestination) -> str:
    if isinstance(destination, LocalDestination):
        return destination.path
    endpoint = f" at {destination.endpoint}" if destination.endpoint else ""
    return f"s3://{destination.bucket}{endpoint}"


def backup_to_json(info: BackupInfo) -> dict[str, Any]:
    """Given a stored backup's info, return its API representation."""
    return info.model_dump(mode="json", by_alias=True)


def damaged_to_json(listed: ListedBackup) -> dict[str, Any]:
    """Given a committed backup whose backup.json cannot be read, return its API form."""
    return {"backupId": listed.backup_id, "damaged": True, "problem": listed.problem}


def stored_backups(ctx: AppContext, config: BackupConfig, slug: str) -> list[dict[str, Any]]:
    """Given a config, return the backups that exist in its storage, newest first; those
    whose backup.json cannot be read are listed too, marked ``damaged`` with the problem."""
    repo = ctx.repository(config, slug)
    return [
        backup_to_json(b.info) if b.info is not None else damaged_to_json(b)
        for b in reversed(repo.scan())
    ]
