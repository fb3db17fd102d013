"""Applying retention to a config's stored backups (and previewing it)."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from backapp.db import Session, utcnow
from backapp.db.repositories import runs as run_repo
from backapp.domain.config import BackupConfig
from backapp.domain.retention import RetentionPlan, StoredBackup, plan_retention
from backapp.engine.layout import BackupInfo, ListedBackup
from backapp.engine.lock import RepoLock
from backapp.errors import BackappError
from backapp.services.context import AppContext

logger = logging.getLogger(__name__)


def _stored(infos: list[BackupInfo]) -> list[StoredBackup]:
    return [
        StoredBackup(
            i.backup_id,
            i.completed_at,
            tuple(sorted({*i.requires, *([i.parent] if i.parent else [])})),
        )
        for i in infos
    ]


def plan_for(
    ctx: AppContext, config: BackupConfig, slug: str, now: datetime | None = None
) -> tuple[RetentionPlan, list[BackupInfo], list[ListedBackup]]:
    """Given a config, return its retention plan over what is stored now, the backups it
    planned over, and the damaged ones (never deleted by retention: a person should look).
    Raise StorageError."""
    listed = ctx.repository(config, slug).scan()
    infos = [b.info for b in listed if b.info is not None]
    damaged = [b for b in listed if b.info is None]
    plan = plan_retention(_stored(infos), config.options.retention_days, now or utcnow())
    return plan, infos, damaged


def preview(ctx: AppContext, config: BackupConfig, slug: str) -> dict[str, Any]:
    """Given a config, return what retention would delete and keep, and why (a dry run)."""
    plan, infos, damaged = plan_for(ctx, config, slug)
    by_id = {i.backup_id: i for i in infos}

    def item(backup_id: str) -> dict[str, Any]:
        info = by_id[backup_id]
        return {
            "backupId": backup_id,
            "type": info.type,
            "completedAt": info.completed_at.isoformat(),
            "storedBytes": info.stats.stored_bytes,
            "reason": plan.reasons[backup_id],
        }

    return {
        "retentionDays": config.options.retention_days,
        "delete": [item(b) for b in plan.delete],
        "keep": [item(b) for b in sorted(plan.keep, reverse=True)],
        "damaged": [
            {"backupId": b.backup_id, "reason": f"cannot be read, kept: {b.problem}"}
            for b in damaged
        ],
    }


def apply(
    ctx: AppContext, session_factory: Any, config_id: str, config: BackupConfig, slug: str
) -> dict[str, Any]:
    """Given a config, delete its expired backups; return what was deleted (for the run log).

    Failures to delete are reported, never raised: the backup itself succeeded.
    """
    if config.options.retention_days is None:
        return {}
    repo = ctx.repository(config, slug)
    deleted: list[dict[str, str]] = []
    errors: list[str] = []
    try:
        # Under the config's lock: no backup is being made on a backup this deletes.
        with RepoLock(repo, "retention"):
            plan, _, _ = plan_for(ctx, config, slug)
            for backup_id in plan.delete:  # newest first: an incremental before its base
                try:
                    repo.delete(backup_id)
                except BackappError as exc:
                    errors.append(f"{backup_id}: {exc}")
                    continue
                logger.info("retention deleted backup %s of %s", backup_id, config.name)
                deleted.append({"backupId": backup_id, "reason": plan.reasons[backup_id]})
    except BackappError as exc:
        logger.warning("retention for %s skipped: %s", config.name, exc)
        return {"retention": {"error": f"retention skipped: {exc}", "deleted": deleted}}
    if deleted:
        with session_factory() as session:
            _mark_deleted(session, config_id, [d["backupId"] for d in deleted])
    result: dict[str, Any] = {"deleted": deleted, "kept": len(plan.keep)}
    if errors:
        result["errors"] = errors
    return {"retention": result}


def _mark_deleted(session: Session, config_id: str, backup_ids: list[str]) -> None:
    run_repo.mark_backups_deleted(session, config_id, backup_ids)
