"""Applying retention to a config's stored backups (and previewing it)."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from backapp.db import Session, utcnow
from backapp.db.repositories import runs as run_repo
from backapp.domain.config import BackupConfig, RetentionPolicy
from backapp.domain.retention import RetentionPlan, StoredBackup, plan_retention
from backapp.engine.format.layout import BackupInfo, ListedBackup, Repository, is_backup_id
from backapp.engine.lock import RepoLock
from backapp.engine.prune import LOCK_WAIT, PruneResult, run_prune
from backapp.errors import BackappError, BackupNotFoundError, BackupRequiredError, CancelledError
from backapp.services.context import AppContext
from backapp.services.destinations import SealedBackup

logger = logging.getLogger(__name__)

# How long a prune asked for by a person (API, page) waits for a running backup's lock:
# a request cannot wait the ten minutes a command or a scheduled run does.
REQUEST_LOCK_WAIT = 15.0


def _stored(infos: list[BackupInfo]) -> list[StoredBackup]:
    # A format-1 incremental needs its parent and what it requires; a format-2 backup
    # needs no other backup (its blocks are kept by prune while any backup names them).
    return [
        StoredBackup(
            i.backup_id,
            i.completed_at,
            tuple(sorted({*i.requires, *([i.parent] if i.parent else [])}))
            if i.format_version < 2
            else (),
        )
        for i in infos
    ]


def plan_for(
    ctx: AppContext, config: BackupConfig, slug: str, now: datetime | None = None
) -> tuple[RetentionPlan, list[BackupInfo], list[ListedBackup]]:
    """Given a config, return its retention plan over what is stored now, the backups it
    planned over, and the damaged ones (never deleted by retention: a person should look).
    Raise StorageError."""
    return plan_over(ctx.repository(config, slug), config, now)


def plan_over(
    repo: Repository, config: BackupConfig, now: datetime | None = None
) -> tuple[RetentionPlan, list[BackupInfo], list[ListedBackup]]:
    """Given a config's repository, return what ``plan_for`` returns. Raise StorageError."""
    listed = repo.scan()
    infos = [b.info for b in listed if b.info is not None]
    damaged = [b for b in listed if b.info is None]
    plan = plan_retention(
        _stored(infos), config.options.retention_policy, now or utcnow(), config.schedule.timezone
    )
    return plan, infos, damaged


@dataclass(frozen=True)
class RetentionDecision:
    """One stored backup, whether retention deletes it now, and why."""

    backup_id: str
    info: BackupInfo | None  # None: its backup.json cannot be read
    problem: str | None  # why it cannot be read
    delete: bool
    reason: str
    sealed: SealedBackup | None = None  # encrypted, listed without the key: not damaged


@dataclass(frozen=True)
class RetentionPreview:
    """What retention would do now (a dry run): each list newest first."""

    retention_days: int | None  # the policy's keepWithinDays (the specification's name)
    policy: RetentionPolicy | None  # the rules in force (None: everything is kept)
    timezone: str  # what the periods of the policy are counted in
    delete: list[RetentionDecision]  # in the order retention deletes them
    keep: list[RetentionDecision]
    damaged: list[RetentionDecision]  # never deleted by retention: a person should look

    def newest_first(self) -> list[RetentionDecision]:
        """Return every stored backup's decision, newest first."""
        every = [*self.delete, *self.keep, *self.damaged]
        return sorted(every, key=lambda d: d.backup_id, reverse=True)


def preview(ctx: AppContext, config: BackupConfig, slug: str) -> RetentionPreview:
    """Given a config, return what retention would delete and keep, and why (a dry run).
    Raise StorageError."""
    return preview_over(ctx.repository(config, slug), config)


def preview_over(repo: Repository, config: BackupConfig) -> RetentionPreview:
    """Given a config's repository, return what ``preview`` returns. Raise StorageError."""
    plan, infos, damaged = plan_over(repo, config)
    by_id = {i.backup_id: i for i in infos}

    def decision(backup_id: str, delete: bool) -> RetentionDecision:
        return RetentionDecision(backup_id, by_id[backup_id], None, delete, plan.reasons[backup_id])

    policy = config.options.retention_policy
    return RetentionPreview(
        retention_days=policy.keep_within_days if policy else None,
        policy=policy,
        timezone=config.schedule.timezone,
        delete=[decision(b, True) for b in plan.delete],
        keep=[decision(b, False) for b in sorted(plan.keep, reverse=True)],
        damaged=[
            RetentionDecision(
                b.backup_id,
                None,
                b.problem,
                False,
                f"cannot be read, kept: {b.problem}",
                SealedBackup.of(b.backup_id, b.public, b.problem),
            )
            for b in damaged
        ],
    )


def apply(
    ctx: AppContext, session_factory: Any, config_id: str, config: BackupConfig, slug: str
) -> dict[str, Any]:
    """Given a stored config, delete its expired backups and mark their runs; return what
    was deleted (for the run log). Failures are reported, never raised."""
    outcome = delete_expired(ctx.repository(config, slug), config)
    deleted = [d["backupId"] for d in outcome.get("retention", {}).get("deleted", [])]
    if deleted:
        with session_factory() as session:
            _mark_deleted(session, config_id, deleted)
    return outcome


def delete_expired(repo: Repository, config: BackupConfig) -> dict[str, Any]:
    """Given a config's repository, delete its expired backups under the config's lock;
    return what was deleted (``{}`` without a retention setting). Scheduled runs and CLI
    runs alike. Failures to delete are reported, never raised: the backup succeeded.
    """
    if config.options.retention_policy is None:
        return {}
    deleted: list[dict[str, str]] = []
    errors: list[str] = []
    try:
        # Under the config's lock: no backup is being made on a backup this deletes.
        with RepoLock(repo, "retention"):
            plan, _, _ = plan_over(repo, config)
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
    result: dict[str, Any] = {"deleted": deleted, "kept": len(plan.keep)}
    if errors:
        result["errors"] = errors
    if deleted:
        result["prune"] = prune_after(repo)
    return {"retention": result}


def prune_after(repo: Repository, *, lock_wait: float = LOCK_WAIT) -> dict[str, Any]:
    """Given a repository whose backups were just forgotten, delete the blocks no backup
    references any more; return what prune did (or why it did not). Never raises but
    for a cancel."""
    result, skipped = try_prune(repo, lock_wait=lock_wait)
    return result.to_json() if result is not None else {"error": skipped}


def try_prune(
    repo: Repository, *, lock_wait: float = LOCK_WAIT
) -> tuple[PruneResult | None, str | None]:
    """Given a repository whose backups were just forgotten, prune it; return what prune
    did, or None and why it did not. Never raises but for a cancel."""
    try:
        return run_prune(repo, master=repo.master, lock_wait=lock_wait), None
    except CancelledError:
        raise
    except BackappError as exc:
        logger.warning("prune of %s skipped: %s", repo.location, exc)
        return None, f"prune skipped: {exc}"


def prune(repo: Repository, *, dry_run: bool = False, lock_wait: float = LOCK_WAIT) -> PruneResult:
    """Given a config's repository, prune it (see engine.prune; ``lock_wait``: seconds to
    wait for a running backup). Raise PruneRefusedError, RepositoryLockedError,
    StorageError."""
    return run_prune(repo, master=repo.master, dry_run=dry_run, lock_wait=lock_wait)


def forget_backup(repo: Repository, ref: str, *, dry_run: bool = False) -> str:
    """Given a config's repository and a backup id (or unique prefix), delete that one backup
    under the config's lock (``dry_run``: only check that it could go); return its id. Raise
    BackupNotFoundError, BackupRequiredError (a backup that stays requires it: its chain),
    RepositoryLockedError, StorageError."""
    with contextlib.nullcontext() if dry_run else RepoLock(repo, "forget"):
        backup_id = repo.resolve(ref)
        needing = sorted(
            b.backup_id
            for b in _stored([b.info for b in repo.scan() if b.info is not None])
            if backup_id in b.requires
        )
        if needing:
            raise BackupRequiredError(
                f"backup {backup_id} is not forgotten: {', '.join(needing)} still "
                f"require{'s' if len(needing) == 1 else ''} it (forget "
                f"{'that' if len(needing) == 1 else 'those'} first)"
            )
        if not dry_run:
            repo.delete(backup_id)
            logger.info("forgot backup %s of %s", backup_id, repo.location)
    return backup_id


def forget_recorded(
    ctx: AppContext,
    session_factory: Any,
    config_id: str,
    config: BackupConfig,
    slug: str,
    ref: str,
    *,
    dry_run: bool = False,
) -> str:
    """Given a stored config and a backup id, do what ``forget_backup`` does and mark the
    backup's run deleted. Raise what ``forget_backup`` raises."""
    backup_id = forget_backup(ctx.repository(config, slug), ref, dry_run=dry_run)
    if not dry_run:
        with session_factory() as session:
            _mark_deleted(session, config_id, [backup_id])
    return backup_id


def _mark_deleted(session: Session, config_id: str, backup_ids: list[str]) -> None:
    run_repo.mark_backups_deleted(session, config_id, backup_ids)


@dataclass(frozen=True)
class DeletedBackup:
    """A backup a person deleted, and what the prune after it did (or why it did not)."""

    backup_id: str
    prune: PruneResult | None
    prune_skipped: str | None  # why prune did not run (the backup is deleted all the same)


def delete_backup(
    ctx: AppContext,
    session_factory: Any,
    config_id: str,
    config: BackupConfig,
    slug: str,
    backup_id: str,
) -> DeletedBackup:
    """Given a stored config and the exact id of one of its backups (not 'latest' nor a
    prefix), forget it, mark its run deleted and prune; prune waits REQUEST_LOCK_WAIT for
    a running backup and is skipped, saying why, if it cannot run. Raise
    BackupNotFoundError, BackupRequiredError, RepositoryLockedError (a run holds the lock),
    StorageError."""
    if not is_backup_id(backup_id):
        raise BackupNotFoundError(f"{backup_id!r} is not a backup id")
    forgotten = forget_recorded(ctx, session_factory, config_id, config, slug, backup_id)
    result, skipped = try_prune(ctx.repository(config, slug), lock_wait=REQUEST_LOCK_WAIT)
    return DeletedBackup(forgotten, result, skipped)
