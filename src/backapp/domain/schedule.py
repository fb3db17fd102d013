"""Cron schedules with IANA timezones.

Expressions have 5 fields (minute first) or 6 with a *leading* seconds field,
as node-cron has it (``*/10 * * * * *`` fires every ten seconds). croniter
wants seconds last unless told otherwise, so the conversion lives here.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from croniter.croniter import CroniterError

from backapp.errors import ConfigError


def check_cron(expression: str) -> str:
    """Given a cron expression, return it normalised (single spaces). Raise ConfigError."""
    fields = expression.split()
    if len(fields) not in (5, 6):
        raise ConfigError(
            f"cron expression must have 5 fields (minute hour day month weekday) or 6 with "
            f"leading seconds; got {len(fields)}"
        )
    normalised = " ".join(fields)
    try:
        croniter(normalised, datetime(2026, 1, 1, tzinfo=UTC), second_at_beginning=True)
        valid = croniter.is_valid(normalised, second_at_beginning=True)
    except (CroniterError, ValueError, KeyError) as exc:
        raise ConfigError(f"invalid cron expression {normalised!r}: {exc}") from exc
    if not valid:
        raise ConfigError(f"invalid cron expression {normalised!r}")
    return normalised


def check_timezone(name: str) -> ZoneInfo:
    """Given an IANA timezone name, return its ZoneInfo. Raise ConfigError."""
    if not name or name != name.strip() or name.startswith("/") or ".." in name:
        raise ConfigError(f"unknown timezone {name!r}: use an IANA name such as 'Europe/Paris'")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise ConfigError(
            f"unknown timezone {name!r}: use an IANA name such as 'Europe/Paris'"
        ) from exc


@dataclass(frozen=True)
class Schedule:
    """A validated cron expression in a timezone."""

    expression: str
    timezone: str

    def next_after(self, moment: datetime) -> datetime:
        """Given an aware moment, return the next fire time after it (aware, in UTC)."""
        return next(self.fire_times(moment))

    def fire_times(self, after: datetime) -> Iterator[datetime]:
        """Given an aware moment, yield the fire times after it, in UTC, in order, forever.

        The expression is matched against wall-clock time in the schedule's timezone:
        - a wall time skipped by a spring-forward change still fires once, right at the
          change (02:30 fires at 03:00 when clocks jump from 02:00 to 03:00), as cron does;
        - a wall time repeated by a fall-back change fires once (the first time) — unless
          the hour field is a wildcard (``*``, ``*/2``): such schedules follow elapsed
          time and also fire in the repeated hour, as cron does.
        """
        zone = check_timezone(self.timezone)
        fields = self.expression.split()
        hour_field = fields[2] if len(fields) == 6 else fields[1]
        both_folds = hour_field.startswith("*")
        # Near a transition, start earlier: the second pass of a repeated hour maps wall
        # times *before* the local time of `after` to instants *after* it.
        start = after
        if (after - _NEAR).astimezone(zone).utcoffset() != (after + _NEAR).astimezone(
            zone
        ).utcoffset():
            start = after - _NEAR
        naive = start.astimezone(zone).replace(tzinfo=None)
        it = croniter(self.expression, naive, second_at_beginning=True)
        last = after
        later: list[datetime] = []  # second-pass instants of a repeated hour, pending
        while True:
            wall = it.get_next(datetime)
            assert isinstance(wall, datetime)
            first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
            second = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
            exists = _exists(wall, zone)
            if not exists:
                first = _transition(second, first, zone)
            repeated = second != first and exists
            if repeated and both_folds:
                later.append(second)
            while later and later[0] < first:
                pending = later.pop(0)
                if pending > last:
                    last = pending
                    yield pending
            if first > last:
                last = first
                yield first


_NEAR = timedelta(hours=3)


def _exists(wall: datetime, zone: ZoneInfo) -> bool:
    """Given a naive wall time, return whether it occurs at all in the zone (not in a gap)."""
    instant = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    return instant.astimezone(zone).replace(tzinfo=None) == wall


def _transition(before: datetime, after: datetime, zone: ZoneInfo) -> datetime:
    """Given instants on both sides of a clock change, return the instant of the change."""
    low, high = before, after
    offset = low.astimezone(zone).utcoffset()
    while high - low > timedelta(seconds=1):
        mid = low + (high - low) / 2
        if mid.astimezone(zone).utcoffset() == offset:
            low = mid
        else:
            high = mid
    return high.replace(microsecond=0)
