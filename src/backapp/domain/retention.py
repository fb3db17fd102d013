"""Retention: which backups to delete, as a pure decision over what exists.

Rules are restic's ``forget --keep-*``: walking the backups newest first, ``keepLast N``
keeps the N newest; ``keepHourly/Daily/Weekly/Monthly/Yearly N`` keep the newest backup
of each of the last N distinct hours/days/ISO weeks/months/years that have one (counted
in the config's timezone); ``keepWithinDays N`` keeps every backup completed within N
days of now (restic counts from the newest backup; BackApp keeps the specification's
``retentionDays`` meaning). A backup is kept if any rule keeps it; the newest completed
backup is always kept, and so is any backup a kept backup still needs (an incremental's
chain goes only when its last member expires).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from backapp.domain.config import RetentionPolicy


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


# The period rules: policy field -> the period of a local time, as reasons show it.
_PERIODS: dict[str, Callable[[datetime], str]] = {
    "keep_hourly": lambda t: f"{t:%Y-%m-%d %H}:00",
    "keep_daily": lambda t: f"{t:%Y-%m-%d}",
    "keep_weekly": lambda t: "{}-W{:02d}".format(*t.isocalendar()[:2]),
    "keep_monthly": lambda t: f"{t:%Y-%m}",
    "keep_yearly": lambda t: f"{t:%Y}",
}


def _rule_reasons(
    newest_first: list[StoredBackup], policy: RetentionPolicy, now: datetime, tz: ZoneInfo
) -> dict[str, list[str]]:
    """Given the backups newest first, return the rules that keep each backup kept by one."""
    kept: dict[str, list[str]] = {}
    periods = [
        (getattr(policy, f), f.removeprefix("keep_"), of)
        for f, of in _PERIODS.items()
        if getattr(policy, f)
    ]
    seen: list[list[str]] = [[] for _ in periods]  # each rule's periods kept so far
    within = policy.keep_within_days
    cutoff = now - timedelta(days=within) if within else None
    for index, b in enumerate(newest_first):
        why: list[str] = []
        if policy.keep_last and index < policy.keep_last:
            why.append(f"last #{index + 1}")
        local = b.completed_at.astimezone(tz)
        for (limit, name, period_of), kept_periods in zip(periods, seen, strict=True):
            period = period_of(local)
            # Newest first, a backup of a period not seen yet is that period's newest.
            if len(kept_periods) < limit and (not kept_periods or kept_periods[-1] != period):
                kept_periods.append(period)
                why.append(f"{name} #{len(kept_periods)} ({period})")
        if cutoff is not None and b.completed_at >= cutoff:
            why.append(f"within {within} days")
        if why:
            kept[b.backup_id] = why
    return kept


def plan_retention(
    backups: list[StoredBackup],
    policy: RetentionPolicy | None,
    now: datetime,
    timezone: str = "UTC",
) -> RetentionPlan:
    """Given the stored backups, the retention policy (None: keep everything), now and the
    timezone periods are counted in, return the plan."""
    plan = RetentionPlan()
    if not backups:
        return plan
    by_id = {b.backup_id: b for b in backups}
    if policy is None or policy.empty:
        plan.keep = sorted(by_id)
        plan.reasons = {b: "no retention configured" for b in by_id}
        return plan
    tz = ZoneInfo(timezone)
    newest_first = sorted(backups, key=lambda b: (b.completed_at, b.backup_id), reverse=True)
    whys = _rule_reasons(newest_first, policy, now, tz)
    newest = newest_first[0].backup_id
    keep = {b: "kept by " + "; ".join(why) for b, why in whys.items() if b != newest}
    keep[newest] = "; ".join(["newest backup (always kept)", *whys.get(newest, [])])
    # Whatever a kept backup needs is kept too, transitively.
    pending = list(keep)
    while pending:
        needed_by = pending.pop()
        for dep in by_id[needed_by].requires:
            if dep in by_id and dep not in keep:
                keep[dep] = f"expired, but needed by kept backup {needed_by}"
                pending.append(dep)
    only_within = policy.describe() == f"within {policy.keep_within_days} days"
    for b in sorted(backups, key=lambda b: b.backup_id, reverse=True):
        if b.backup_id in keep:
            continue
        plan.delete.append(b.backup_id)
        when = f"completed {b.completed_at.astimezone(tz):%Y-%m-%d %H:%M} {timezone}"
        plan.reasons[b.backup_id] = (
            f"older than {policy.keep_within_days} days ({when})"
            if only_within
            else f"kept by no rule ({policy.describe()}; {when})"
        )
    plan.keep = sorted(keep)
    plan.reasons.update(keep)
    return plan
