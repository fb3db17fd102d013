"""Alerts, /alerts: what needs a human, and acknowledging it."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response

from backapp.errors import ConflictError
from backapp.services import alerts as alert_service
from backapp.services import configs as config_service
from backapp.web.rendering import redirect, render
from backapp.web.routing import WebRoute
from backapp.web.security import CtxDep, OperatorPost, PageUser

router = APIRouter(route_class=WebRoute, include_in_schema=False)


@router.get("/alerts")
def alerts(
    request: Request,
    ctx: CtxDep,
    user: PageUser,
    show: Annotated[Literal["open", "all"], Query()] = "open",
) -> Response:
    """Show open alerts (or all of them, acknowledged and resolved too), newest first."""
    with ctx.db.session() as session:
        found = alert_service.list_alerts(session, open_only=show == "open", limit=200)
        alive = config_service.existing_ids(session, {a.config_id for a in found if a.config_id})
    return render(request, "alerts.html", user, alerts=found, show=show, alive=alive)


@router.post("/alerts/{alert_id}/acknowledge")
def acknowledge(request: Request, ctx: CtxDep, posted: OperatorPost, alert_id: str) -> Response:
    """Mark an alert acknowledged by the current user."""
    try:
        with ctx.db.session() as session:
            alert_service.acknowledge(session, alert_id, posted.user.username)
    except ConflictError as exc:
        return redirect(request, "/alerts", exc.message, kind="error")
    return redirect(request, "/alerts", "Alert acknowledged.")


@router.post("/alerts/acknowledge-all")
def acknowledge_all(request: Request, ctx: CtxDep, posted: OperatorPost) -> Response:
    """Mark every open alert acknowledged by the current user."""
    with ctx.db.session() as session:
        count = alert_service.acknowledge_all(session, posted.user.username)
    return redirect(request, "/alerts", f"{count} alert(s) acknowledged.")
