"""Retention planning: restic's keep-N rules, against a simple reference model."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backapp.domain.config import RetentionPolicy, parse_config
from backapp.domain.retention import StoredBackup, plan_retention
from backapp.errors import ConfigError

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Pacific/Chatham", "Asia/Kolkata"]


def _period_keys(tz: ZoneInfo) -> dict[str, object]:
    return {
        "keep_hourly": lambda t: t.astimezone(tz).strftime("%Y-%m-%d %H"),
        "keep_daily": lambda t: t.astimezone(tz).date(),
        "keep_weekly": lambda t: t.astimezone(tz).isocalendar()[:2],
        "keep_monthly": lambda t: (t.astimezone(tz).year, t.astimezone(tz).month),
        "keep_yearly": lambda t: t.astimezone(tz).year,
    }


def reference_kept(backups: list[StoredBackup], policy: RetentionPolicy, tz: str) -> set[str]:
    """The rules as the task states them, written the plain way (no chains)."""
    newest_first = sorted(backups, key=lambda b: (b.completed_at, b.backup_id), reverse=True)
    kept = {newest_first[0].backup_id}
    if policy.keep_last:
        kept |= {b.backup_id for b in newest_first[: policy.keep_last]}
    for name, key in _period_keys(ZoneInfo(tz)).items():
        n = getattr(policy, name)
        if not n:
            continue
        seen: list[object] = []
        for b in newest_first:  # the first of each period met is its newest
            k = key(b.completed_at)  # type: ignore[operator]
            if k not in seen:
                seen.append(k)
                if len(seen) <= n:
                    kept.add(b.backup_id)
    if policy.keep_within_days:
        cutoff = NOW - timedelta(days=policy.keep_within_days)
        kept |= {b.backup_id for b in backups if b.completed_at >= cutoff}
    return kept


policies = st.builds(
    RetentionPolicy,
    keep_last=st.none() | st.integers(1, 6),
    keep_hourly=st.none() | st.integers(1, 6),
    keep_daily=st.none() | st.integers(1, 6),
    keep_weekly=st.none() | st.integers(1, 4),
    keep_monthly=st.none() | st.integers(1, 4),
    keep_yearly=st.none() | st.integers(1, 3),
    keep_within_days=st.none() | st.integers(1, 60),
).filter(lambda p: not p.empty)


@st.composite
def backup_sets(draw: st.DrawFn) -> list[StoredBackup]:
    ages = draw(st.lists(st.integers(0, 400 * 24 * 60), min_size=1, max_size=25, unique=True))
    times = sorted(NOW - timedelta(minutes=a) for a in ages)
    backups: list[StoredBackup] = []
    for i, when in enumerate(times):  # ids sort by time, as real backup ids do
        parent = backups[-1].backup_id if backups and draw(st.booleans()) else None
        backups.append(StoredBackup(f"{i:03d}", when, (parent,) if parent else ()))
    return backups


@settings(max_examples=300, deadline=None)
@given(backups=backup_sets(), policy=policies, tz=st.sampled_from(ZONES))
def test_the_plan_keeps_what_some_rule_keeps_and_what_kept_backups_need(
    backups: list[StoredBackup], policy: RetentionPolicy, tz: str
) -> None:
    plan = plan_retention(backups, policy, NOW, tz)
    by_id = {b.backup_id: b for b in backups}
    keep, delete = set(plan.keep), set(plan.delete)
    assert keep | delete == set(by_id) and not keep & delete
    newest = max(backups, key=lambda b: b.completed_at)
    assert newest.backup_id in keep
    for kept in keep:
        assert set(by_id[kept].requires) <= keep
    # Kept by a rule or needed by what is: exactly the reference model, closed over chains.
    expected = reference_kept(backups, policy, tz)
    closure = set(expected)
    pending = list(expected)
    while pending:
        for dep in by_id[pending.pop()].requires:
            if dep not in closure:
                closure.add(dep)
                pending.append(dep)
    assert keep == closure
    for gone in delete:  # a backup kept by no rule is deleted, and says so
        assert "kept by no rule" in plan.reasons[gone] or "older than" in plan.reasons[gone]
    assert plan.delete == sorted(delete, reverse=True)  # newest first


@settings(max_examples=200, deadline=None)
@given(backups=backup_sets(), n=st.integers(1, 30))
def test_keep_last_n_keeps_exactly_the_n_newest_fulls(backups: list[StoredBackup], n: int) -> None:
    fulls = [StoredBackup(b.backup_id, b.completed_at) for b in backups]
    plan = plan_retention(fulls, RetentionPolicy(keep_last=n), NOW)
    assert plan.keep == sorted(b.backup_id for b in fulls)[-n:]


@settings(max_examples=200, deadline=None)
@given(backups=backup_sets(), n=st.integers(1, 10), tz=st.sampled_from(ZONES))
def test_keep_daily_keeps_at_most_one_backup_per_day(
    backups: list[StoredBackup], n: int, tz: str
) -> None:
    fulls = [StoredBackup(b.backup_id, b.completed_at) for b in backups]
    plan = plan_retention(fulls, RetentionPolicy(keep_daily=n), NOW, tz)
    days = [
        b.completed_at.astimezone(ZoneInfo(tz)).date() for b in fulls if b.backup_id in plan.keep
    ]
    assert len(days) == len(set(days)) <= n


def test_reasons_name_the_rules_that_keep_a_backup_in_the_config_timezone() -> None:
    day = timedelta(days=1)
    backups = [
        StoredBackup("01", datetime(2026, 11, 27, 23, 30, tzinfo=UTC)),  # 28th in Berlin
        StoredBackup("02", datetime(2026, 11, 28, 10, 0, tzinfo=UTC)),
        StoredBackup("03", datetime(2026, 11, 29, 10, 0, tzinfo=UTC)),
        StoredBackup("04", datetime(2026, 11, 29, 22, 0, tzinfo=UTC), ("03",)),
        StoredBackup("05", NOW - day / 2),
    ]
    plan = plan_retention(backups, RetentionPolicy(keep_daily=3), NOW, "Europe/Berlin")
    assert plan.reasons["05"] == "newest backup (always kept); daily #1 (2026-12-01)"
    assert plan.reasons["04"] == "kept by daily #2 (2026-11-29)"  # 23:00 in Berlin
    assert plan.reasons["03"] == "expired, but needed by kept backup 04"
    assert plan.reasons["02"] == "kept by daily #3 (2026-11-28)"
    assert plan.delete == ["01"]  # the 28th's older backup
    assert plan.reasons["01"].startswith("kept by no rule (daily 3; completed 2026-11-28 00:30")
    both = plan_retention(backups, RetentionPolicy(keep_last=2, keep_within_days=3), NOW)
    assert both.reasons["04"] == "kept by last #2; within 3 days"


def test_no_policy_keeps_everything() -> None:
    backups = [StoredBackup("01", NOW - timedelta(days=900))]
    assert plan_retention(backups, None, NOW).keep == ["01"]
    assert plan_retention(backups, RetentionPolicy(), NOW).delete == []


def _options(**options: object) -> dict[str, object]:
    return {
        "name": "n",
        "enabled": True,
        "sources": [{"path": "/srv"}],
        "destination": {"type": "local", "path": "/backups"},
        "schedule": {"cronExpression": "0 2 * * *"},
        "options": options,
    }


def test_bad_keep_numbers_are_refused_with_their_field_path() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(_options(retention={"keepDaily": 0, "keepLast": "x"}))
    paths = [path for path, _ in err.value.problems]
    assert paths == ["options.retention.keepLast", "options.retention.keepDaily"]
    with pytest.raises(ConfigError) as err:
        parse_config(_options(retention={"keepEvery": 3}))
    assert [p for p, _ in err.value.problems] == ["options.retention.keepEvery"]


def test_retention_days_is_keep_within_days_and_may_not_disagree_with_it() -> None:
    both = parse_config(
        _options(retentionDays=30, retention={"keepWithinDays": 30, "keepDaily": 7})
    )
    assert both.options.retention_policy == RetentionPolicy(keep_within_days=30, keep_daily=7)
    assert parse_config(_options(retentionDays=5)).options.retention_policy == RetentionPolicy(
        keep_within_days=5
    )
    assert parse_config(_options(retention={})).options.retention_policy is None
    with pytest.raises(ConfigError) as err:
        parse_config(_options(retentionDays=30, retention={"keepWithinDays": 14}))
    [(path, message)] = err.value.problems
    assert path == "options" and "retentionDays (30) and retention.keepWithinDays (14)" in message
