"""The execution history, /backups/logs: the list, a run's page, its live progress and cancel."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from backapp.domain.patterns import pattern_path
from backapp.domain.runs import RUN_STATUSES, RunKind, RunStatus
from backapp.errors import ConflictError, NotFoundError
from backapp.services import configs as config_service
from backapp.services import runs as run_service
from backapp.services.context import AppContext
from backapp.web.formatting import progress_view
from backapp.web.rendering import local_path, redirect, render
from backapp.web.routing import WebRoute
from backapp.web.security import CtxDep, OperatorPost, PageUser

router = APIRouter(route_class=WebRoute, include_in_schema=False)

STATUSES = RUN_STATUSES
Status = Literal["", RunStatus]
KINDS = (("backup", "Backups"), ("restore", "Restores"), ("verify", "Verifications"))
Kind = Literal["", RunKind]
# How often the event stream looks at the run row (the worker writes it at most once a second),
# and how long one stream lives before the browser reconnects (so a server can stop quickly).
POLL_SECONDS = 0.5
STREAM_SECONDS = 30.0
KEEPALIVE_SECONDS = 10.0


@router.get("/backups/logs")
def logs(
    request: Request,
    ctx: CtxDep,
    user: PageUser,
    config: Annotated[str, Query(max_length=64)] = "",
    status: Annotated[Status, Query()] = "",
    kind: Annotated[Kind, Query()] = "",
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Response:
    """Show the runs, newest first, filtered by configuration, status and kind."""
    with ctx.db.session() as session:
        found = run_service.list_runs(
            session,
            config_id=config or None,
            status=status or None,
            kind=kind or None,
            limit=limit,
        )
        runs = run_service.views(session, found)
        configs = sorted(
            ((c.id, c.name) for c in config_service.list_all(session)), key=lambda c: c[1].lower()
        )
    return render(
        request,
        "logs.html",
        user,
        runs=runs,
        configs=configs,
        statuses=STATUSES,
        kinds=KINDS,
        selected={"config": config, "status": status, "kind": kind, "limit": limit},
    )


def _run_page_data(ctx: AppContext, run_id: str) -> dict[str, Any]:
    with ctx.db.session() as session:
        row = run_service.get(session, run_id)
        # What a restore or verification was asked to do (its target, paths, mode): shown
        # while it waits and runs, before its result has the details.
        asked = dict(row.request or {})
        asked["paths"] = [pattern_path(str(p)) for p in asked.get("include") or []]
        view = run_service.view(session, row)
    return {
        "view": view,
        "run": row,
        "asked": asked,
        "progress": progress_view(row.status, view.progress),
    }


@router.get("/backups/logs/{run_id}")
def run_detail(request: Request, ctx: CtxDep, user: PageUser, run_id: str) -> Response:
    """Show one run: its metrics, its error, and its live progress while it runs."""
    return render(request, "run.html", user, **_run_page_data(ctx, run_id))


@router.get("/backups/logs/{run_id}/summary")
def run_summary(request: Request, ctx: CtxDep, user: PageUser, run_id: str) -> Response:
    """Return a run's metrics (a partial, refreshed when the run ends)."""
    data = _run_page_data(ctx, run_id)
    return render(request, "partials/run_summary.html", user, partial=True, **data)


@router.post("/backups/logs/{run_id}/cancel")
def cancel_run(request: Request, ctx: CtxDep, posted: OperatorPost, run_id: str) -> Response:
    """Cancel a queued or running run (a running one stops within seconds)."""
    back = local_path(str(posted.form.get("next") or ""), f"/backups/logs/{run_id}")
    try:
        with ctx.db.session() as session:
            run_service.request_cancel(session, run_id, posted.user.username)
    except ConflictError as exc:
        if request.headers.get("hx-request"):
            return Response(status_code=204)
        return redirect(request, back, exc.message, kind="error")
    if request.headers.get("hx-request"):
        return Response(status_code=204)  # the event stream shows the outcome
    return redirect(request, back, "Cancel requested.")


def run_snapshot(ctx: AppContext, run_id: str) -> dict[str, Any] | None:
    """Given a run id, return what its progress bar shows now (None if the run is gone)."""
    with ctx.db.session() as session:
        try:
            run = run_service.get(session, run_id)
        except NotFoundError:
            return None
        # The last progress stays on the row: at the end the bar shows the final counts (or
        # how far a failed run got) rather than "0 / 0 files".
        status, progress = run.status, run.progress if run.status != "queued" else None
        cancelling = bool(run.cancel_requested) and status == "running"
        error = run.error or ""
    view = progress_view(status, progress)
    done = status in run_service.TERMINAL
    view.update(
        done=done,
        error=error,
        phase="cancelling…" if cancelling else status if done else view["phase"],
    )
    return view


def _event(name: str, data: dict[str, Any]) -> str:
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


async def progress_events(ctx: AppContext, run_id: str) -> AsyncIterator[str]:
    """Yield server-sent events with the run's progress until it ends (or the stream ages)."""
    yield "retry: 2000\n\n"
    started = last_sent = time.monotonic()
    last = ""
    while True:
        snapshot = await run_in_threadpool(run_snapshot, ctx, run_id)
        if snapshot is None:
            yield _event("done", {"status": "gone", "done": True, "error": "run not found"})
            return
        payload = json.dumps(snapshot, sort_keys=True)
        now = time.monotonic()
        if snapshot["done"]:
            yield _event("done", snapshot)
            return
        if payload != last:
            yield _event("progress", snapshot)
            last, last_sent = payload, now
        elif now - last_sent >= KEEPALIVE_SECONDS:
            yield ": keep-alive\n\n"
            last_sent = now
        if now - started >= STREAM_SECONDS:
            return  # the browser reconnects; a closed tab ends the stream at the next send
        await asyncio.sleep(POLL_SECONDS)


@router.get("/backups/logs/{run_id}/events")
async def run_events(request: Request, ctx: CtxDep, user: PageUser, run_id: str) -> Response:
    """Stream a run's progress as server-sent events ("progress", then one "done")."""
    return StreamingResponse(
        progress_events(ctx, run_id),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
