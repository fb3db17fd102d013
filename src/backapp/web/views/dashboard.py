"""The dashboard, /backups: statistics and every configuration with its last and next run."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from backapp.db import Session
from backapp.domain.runs import ACTIVE
from backapp.services import configs as config_service
from backapp.services import stats as stats_service
from backapp.services.runs import RunView
from backapp.web.formatting import progress_view
from backapp.web.rendering import render
from backapp.web.routing import WebRoute
from backapp.web.security import CtxDep, PageUser

router = APIRouter(route_class=WebRoute, include_in_schema=False)


def config_rows(session: Session, last_runs: dict[str, RunView]) -> list[dict[str, Any]]:
    """Given the last run of each config, return the dashboard's rows, by name."""
    rows = []
    for config in config_service.list_all(session):
        document = config_service.document_of(config)
        last = last_runs.get(config.id)
        active = last if last and last.run.status in ACTIVE else None
        rows.append(
            {
                "config": config,
                "document": document,
                "last": last,
                "active": active,
                "progress": progress_view(active.run.status, active.progress) if active else None,
            }
        )
    return sorted(rows, key=lambda r: r["document"].name.lower())


def _dashboard(ctx: CtxDep) -> dict[str, Any]:
    with ctx.db.session() as session:
        stats = stats_service.compute(session)
        rows = config_rows(session, stats.last_run_per_config)
    return {"stats": stats, "rows": rows}


@router.get("/backups")
def dashboard(request: Request, ctx: CtxDep, user: PageUser) -> Response:
    """Show the statistics and the list of configurations."""
    return render(request, "dashboard.html", user, **_dashboard(ctx))


@router.get("/backups/partials/dashboard")
def dashboard_partial(request: Request, ctx: CtxDep, user: PageUser) -> Response:
    """Return the dashboard's live part (statistics and list), for htmx to refresh."""
    return render(request, "partials/dashboard_body.html", user, partial=True, **_dashboard(ctx))
