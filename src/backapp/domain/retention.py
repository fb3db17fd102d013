"""Retention: which backups to delete, as a pure decision over what exists.

Rules: a backup older than ``retentionDays`` goes, except the newest completed
backup (always kept) and any backup a kept backup still needs (an incremental's
chain goes only when its last member expires).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta


@dataclass(frozen=True)
class StoredBackup:
    """What retention needs to know of a stored backup."""

    backup_id: str
    completed_at: datetime
    requires: tuple[str, ...] = ()


@dataclass
class RetentionPlan:
    """The decision: what to delete (newest first) and why every backup is kept or not."""

    delete: list[str] = field(default_factory=list)
    keep: list[str] = field(default_factory=list)
    reasons: dict[str, str] = field(default_factory=dict)


def plan_retention(
    backups: list[StoredBackup], retention_days: int | None, now: datetime
) -> RetentionPlan:
    """Given the stored backups, the retention in days and now, return the plan."""
    plan = RetentionPlan()
    if not backups:
        return plan
    by_id = {b.backup_id: b for b in backups}
    if retention_days is None:
        plan.keep = sorted(by_id)
        plan.reasons = {b: "no retention configured" for b in by_id}
        return plan
    cutoff = now - timedelta(days=retention_days)
    newest = max(backups, key=lambda b: (b.completed_at, b.backup_id))
    keep: dict[str, str] = {}
    for b in backups:
        if b.backup_id == newest.backup_id:
            keep[b.backup_id] = "newest backup (always kept)"
        elif b.completed_at >= cutoff:
            keep[b.backup_id] = f"within {retention_days} days"
    # Whatever a kept backup needs is kept too, transitively.
    pending = list(keep)
    while pending:
        needed_by = pending.pop()
        for dep in by_id[needed_by].requires:
            if dep in by_id and dep not in keep:
                keep[dep] = f"expired, but needed by kept backup {needed_by}"
                pending.append(dep)
    for b in sorted(backups, key=lambda b: b.backup_id, reverse=True):
        if b.backup_id in keep:
            continue
        plan.delete.append(b.backup_id)
        plan.reasons[b.backup_id] = (
            f"older than {retention_days} days (completed {b.completed_at:%Y-%m-%d %H:%M} UTC)"
        )
    plan.keep = sorted(keep)
    plan.reasons.update(keep)
    return plan
