"""Cron schedules with IANA timezones.

Expressions have 5 fields (minute first) or 6 with a *leading* seconds field,
as node-cron has it (``*/10 * * * * *`` fires every ten seconds). croniter
wants seconds last unless told otherwise, so the conversion lives here.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
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
        """Given an aware moment, yield the fire times after it, in UTC, forever.

        Times are computed in the schedule's timezone, so a wall-clock time skipped by a
        spring-forward change fires once (at the shifted instant) and a repeated one by a
        fall-back change fires once.
        """
        zone = check_timezone(self.timezone)
        it = croniter(self.expression, after.astimezone(zone), second_at_beginning=True)
        last: datetime | None = None
        while True:
            value = it.get_next(datetime)
            assert isinstance(value, datetime)
            fire = value.astimezone(UTC)
            if last is not None and fire <= last:
                continue
            # croniter yields a wall-clock time repeated by a fall-back change twice (fold=0,
            # then fold=1); keep the first, even across calls (next_after after that first run).
            if fire > value.replace(tzinfo=zone, fold=0).astimezone(UTC):
                continue
            last = fire
            yield fire
