"""Cron schedules across daylight-saving changes: nothing doubled, nothing lost."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import islice, pairwise
from zoneinfo import ZoneInfo

from croniter import croniter
from hypothesis import given, settings
from hypothesis import strategies as st

from backapp.domain.schedule import Schedule

PARIS = ZoneInfo("Europe/Paris")


def _fires(expr: str, tz: str, start: datetime, end: datetime) -> list[datetime]:
    out = []
    for fire in Schedule(expr, tz).fire_times(start):
        if fire >= end:
            return out
        out.append(fire)
    return out


def test_wildcard_hour_schedule_keeps_firing_through_the_repeated_hour() -> None:
    # 25 October 2026: Paris goes from 03:00 CEST back to 02:00 CET; the day has 25 hours.
    day = _fires(
        "*/30 * * * *",
        "Europe/Paris",
        datetime(2026, 10, 24, 22, tzinfo=UTC) - timedelta(seconds=1),
        datetime(2026, 10, 25, 23, tzinfo=UTC),
    )
    assert len(day) == 50  # 25 hours of half-hours
    assert all(b - a == timedelta(minutes=30) for a, b in pairwise(day))


def test_fixed_time_in_the_repeated_hour_fires_once() -> None:
    fires = _fires(
        "30 2 * * *",
        "Europe/Paris",
        datetime(2026, 10, 24, tzinfo=UTC),
        datetime(2026, 10, 27, tzinfo=UTC),
    )
    assert [f.astimezone(PARIS).strftime("%d %H:%M %Z") for f in fires] == [
        "24 02:30 CEST",
        "25 02:30 CEST",
        "26 02:30 CET",
    ]


def test_next_after_a_first_pass_fire_skips_the_second_pass_of_a_fixed_time() -> None:
    first = datetime(2026, 10, 25, 0, 30, tzinfo=UTC)  # 02:30 CEST
    assert Schedule("30 2 * * *", "Europe/Paris").next_after(first) == datetime(
        2026, 10, 26, 1, 30, tzinfo=UTC
    )


def test_next_after_inside_the_repeated_hour_continues_the_second_pass() -> None:
    during = datetime(2026, 10, 25, 1, 5, tzinfo=UTC)  # 02:05 CET, second pass
    assert Schedule("*/20 * * * *", "Europe/Paris").next_after(during) == datetime(
        2026, 10, 25, 1, 20, tzinfo=UTC
    )


def test_times_skipped_by_spring_forward_fire_once_at_the_change() -> None:
    fires = _fires(
        "*/20 * * * *",
        "Europe/Paris",
        datetime(2026, 3, 29, 0, 30, tzinfo=UTC),
        datetime(2026, 3, 29, 1, 30, tzinfo=UTC),
    )
    assert fires == [
        datetime(2026, 3, 29, 0, 40, tzinfo=UTC),  # 01:40 CET
        datetime(2026, 3, 29, 1, 0, tzinfo=UTC),  # the change itself: 03:00 CEST
        datetime(2026, 3, 29, 1, 20, tzinfo=UTC),
    ]


def test_six_field_expressions_have_seconds_first() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    fires = list(islice(Schedule("*/10 * * * * *", "UTC").fire_times(start), 4))
    assert [f.second for f in fires] == [10, 20, 30, 40]
    assert Schedule("0 0 12 * * *", "UTC").next_after(start) == datetime(2026, 1, 1, 12, tzinfo=UTC)


zones = st.sampled_from(
    [
        "UTC",
        "Europe/Paris",
        "America/New_York",
        "Australia/Lord_Howe",
        "Asia/Kolkata",
        "America/Santiago",
        "Pacific/Chatham",
    ]
)
expressions = st.sampled_from(
    ["*/15 * * * *", "30 2 * * *", "0 0 * * *", "0 */3 * * *", "45 1,2,3 * * 0", "5 4 1 * *"]
)


@settings(max_examples=60, deadline=None)
@given(expr=expressions, tz=zones, day=st.integers(0, 364))
def test_fire_times_increase_and_match_the_expression_in_local_time(
    expr: str, tz: str, day: int
) -> None:
    zone = ZoneInfo(tz)
    start = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(days=day)
    fires = _fires(expr, tz, start, start + timedelta(days=3))
    assert fires == sorted(set(fires))
    assert all(f > start for f in fires)
    for fire in fires:
        local = fire.astimezone(zone).replace(tzinfo=None)
        exact = croniter.match(expr, local)
        shifted = (
            fire.astimezone(zone).utcoffset()
            != (fire - timedelta(seconds=1)).astimezone(zone).utcoffset()
        )
        assert exact or shifted, f"{fire} ({local} local) does not match {expr}"
