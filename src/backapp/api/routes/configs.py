"""Backup configurations: /api/backups/configs."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, Query, Response

from backapp.api.deps import AdminDep, CtxDep, UserDep
from backapp.api.schemas import (
    ERROR_RESPONSES,
    ConfigOut,
    DeletedBackupOut,
    PruneResultOut,
    RetentionPreviewOut,
    StoredBackupOut,
    stored_backup_out,
)
from backapp.domain.config import BackupConfig
from backapp.errors import ConfigError
from backapp.services import configs as config_service
from backapp.services import destinations, retention

router = APIRouter(prefix="/api/backups/configs", tags=["configs"], responses=ERROR_RESPONSES)


@router.get("")
def list_configs(ctx: CtxDep, user: UserDep) -> list[ConfigOut]:
    """List all backup configurations."""
    with ctx.db.session() as session:
        return [ConfigOut.of(c) for c in config_service.list_all(session)]


@router.post("", status_code=201)
def create_config(ctx: CtxDep, user: AdminDep, document: BackupConfig) -> ConfigOut:
    """Create a backup configuration; returns it with its new `id`."""
    with ctx.db.session() as session:
        config = config_service.create(session, document.to_json_dict())
        return ConfigOut.of(config)


@router.get("/{config_id}")
def get_config(ctx: CtxDep, user: UserDep, config_id: str) -> ConfigOut:
    """Get a backup configuration by id."""
    with ctx.db.session() as session:
        return ConfigOut.of(config_service.get(session, config_id))


def _version(if_match: str | None) -> int | None:
    if if_match is None:
        return None
    raw = if_match.strip().removeprefix("W/").strip('"')
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(
            "If-Match must be the config's version number", [("header.If-Match", "not a number")]
        ) from None


@router.patch("/{config_id}")
def update_config(
    ctx: CtxDep,
    user: AdminDep,
    config_id: str,
    patch: Annotated[dict[str, Any], Body(description="A partial config document, deep-merged.")],
    if_match: Annotated[str | None, Header()] = None,
) -> ConfigOut:
    """Update a configuration with a partial document (deep-merged, then revalidated).

    Send `If-Match: <version>` to refuse the edit if someone changed it meanwhile.
    """
    with ctx.db.session() as session:
        config = config_service.update(
            session, config_id, patch, expected_version=_version(if_match)
        )
        return ConfigOut.of(config)


@router.delete("/{config_id}", status_code=204)
def delete_config(ctx: CtxDep, user: AdminDep, config_id: str) -> Response:
    """Delete a configuration; its run history and stored backups are kept."""
    with ctx.db.session() as session:
        config_service.delete(session, config_id)
    return Response(status_code=204)


@router.get("/{config_id}/backups")
def list_stored_backups(ctx: CtxDep, user: UserDep, config_id: str) -> list[StoredBackupOut]:
    """List the backups that exist in storage for this configuration, newest first."""
    with ctx.db.session() as session:
        config = config_service.get(session, config_id)
        document, slug = config_service.document_of(config), config.slug
    return [stored_backup_out(b) for b in destinations.stored_backups(ctx, document, slug)]


@router.get("/{config_id}/retention-preview")
def retention_preview(ctx: CtxDep, user: UserDep, config_id: str) -> RetentionPreviewOut:
    """What retention would delete now, and why each backup is kept (a dry run)."""
    with ctx.db.session() as session:
        config = config_service.get(session, config_id)
        document, slug = config_service.document_of(config), config.slug
    return RetentionPreviewOut.of(retention.preview(ctx, document, slug))


@router.delete("/{config_id}/backups/{backup_id}")
def delete_stored_backup(
    ctx: CtxDep, user: AdminDep, config_id: str, backup_id: str
) -> DeletedBackupOut:
    """Delete one stored backup (its exact id), then prune the blocks no other backup uses.

    Refused (409) while a backup that stays requires it (a format-1 chain) or while a run
    holds the config's lock. Prune waits briefly for a running backup; if it cannot run
    (a backup cannot be read, the lock is still held), the backup is deleted all the same
    and `pruneSkipped` says why.
    """
    with ctx.db.session() as session:
        config = config_service.get(session, config_id)
        document, slug = config_service.document_of(config), config.slug
    deleted = retention.delete_backup(ctx, ctx.db.session, config_id, document, slug, backup_id)
    return DeletedBackupOut.of(deleted)


@router.post("/{config_id}/prune")
def prune_config(
    ctx: CtxDep,
    user: AdminDep,
    config_id: str,
    dry_run: Annotated[
        bool, Query(alias="dryRun", description="Only say what would be deleted")
    ] = False,
) -> PruneResultOut:
    """Delete the stored blocks that no backup of this configuration references any more.

    Waits briefly for a running backup; refused (409) while one holds the lock, and when a
    backup cannot be read (what it references is not known: nothing is deleted).
    """
    with ctx.db.session() as session:
        config = config_service.get(session, config_id)
        document, slug = config_service.document_of(config), config.slug
    repo = ctx.repository(document, slug)
    return PruneResultOut.of(
        retention.prune(repo, dry_run=dry_run, lock_wait=retention.REQUEST_LOCK_WAIT)
    )
