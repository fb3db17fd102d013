"""Helpers of the configuration form: the schedule preview and the destination test."""

from __future__ import annotations

import itertools
from datetime import datetime
from functools import cache
from typing import Annotated
from zoneinfo import available_timezones

from fastapi import APIRouter, Query, Request, Response

from backapp.db import utcnow
from backapp.domain.schedule import Schedule, check_cron, check_timezone
from backapp.errors import ConfigError
from backapp.services import destinations
from backapp.services.context import AppContext
from backapp.services.destinations import DestinationCheck
from backapp.web.forms import ConfigForm, field_for, label_for, parse_destination
from backapp.web.rendering import render
from backapp.web.routing import WebRoute
from backapp.web.security import AdminPost, CtxDep, PageUser

router = APIRouter(route_class=WebRoute, include_in_schema=False)

PREVIEW_COUNT = 5


@cache
def timezone_names() -> list[str]:
    """Return every IANA timezone name, sorted (UTC first)."""
    return ["UTC", *sorted(z for z in available_timezones() if z != "UTC")]


def fire_times(
    expression: str, timezone: str, count: int = PREVIEW_COUNT, after: datetime | None = None
) -> tuple[list[datetime], str]:
    """Given a cron expression and a timezone, return (the next fire times, '') or ([], why)."""
    try:
        schedule = Schedule(check_cron(expression), timezone)
        check_timezone(timezone)
        times = list(itertools.islice(schedule.fire_times(after or utcnow()), count))
    except ConfigError as exc:
        return [], exc.message
    return times, ""


@router.get("/backups/schedule-preview")
def schedule_preview(
    request: Request,
    user: PageUser,
    cron: Annotated[str, Query(alias="schedule-cron", max_length=200)] = "",
    timezone: Annotated[str, Query(alias="schedule-timezone", max_length=100)] = "UTC",
) -> Response:
    """Return the next five run times of a schedule in its timezone (a partial for htmx)."""
    times, error = fire_times(cron, timezone.strip()) if cron.strip() else ([], "")
    return render(
        request,
        "partials/schedule_preview.html",
        user,
        times=times,
        error=error,
        timezone=timezone.strip(),
    )


def check_destination(ctx: AppContext, form: ConfigForm) -> DestinationCheck:
    """Given the form, test its destination; return whether it works, and why not."""
    try:
        destination = parse_destination(form.destination_document())
    except ConfigError as exc:
        problems = [f"{label_for(field_for(p))}: {m}" for p, m in exc.problems]
        return DestinationCheck(False, "Fix the destination first: " + "; ".join(problems), "")
    return destinations.test_destination(ctx, destination)


@router.post("/backups/destination-test")
def destination_test(request: Request, ctx: CtxDep, posted: AdminPost) -> Response:
    """Check the destination typed in the form; return its message (a partial for htmx)."""
    result = check_destination(ctx, ConfigForm.from_form(posted.form))
    return render(request, "partials/destination_test.html", posted.user, result=result)
