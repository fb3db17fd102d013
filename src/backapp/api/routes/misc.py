"""Statistics, alerts, destination checks, health and login."""

from __future__ import annotations

import logging
from typing import Annotated, Literal

from fastapi import APIRouter, Body, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from backapp.api.deps import SESSION_COOKIE, AdminDep, CtxDep, OperatorDep, UserDep
from backapp.api.schemas import (
    ERROR_RESPONSES,
    AcknowledgedOut,
    AlertOut,
    DestinationCheckOut,
    HealthOut,
    IdentityOut,
    LoginOut,
    SessionUserOut,
    StatsOut,
)
from backapp.domain.config import Destination
from backapp.errors import AuthenticationError, DatabaseError
from backapp.services import alerts as alert_service
from backapp.services import destinations, stats, users

logger = logging.getLogger(__name__)
router = APIRouter(tags=["service"], responses=ERROR_RESPONSES)


@router.get("/api/backups/stats")
def get_stats(ctx: CtxDep, user: UserDep) -> StatsOut:
    """Totals, active configs, success rate, bytes stored and transferred, last runs."""
    with ctx.db.session() as session:
        return StatsOut.of(stats.compute(session))


@router.post("/api/backups/destinations/test")
def test_destination(
    ctx: CtxDep, user: AdminDep, destination: Annotated[Destination, Body()]
) -> DestinationCheckOut:
    """Check a destination is reachable and writable, with a readable message."""
    return DestinationCheckOut.of(destinations.test_destination(ctx, destination))


@router.get("/api/alerts")
def list_alerts(
    ctx: CtxDep,
    user: UserDep,
    status: Annotated[Literal["open", "all"], Query()] = "open",
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[AlertOut]:
    """Alerts, newest first: open ones by default, `status=all` for every one."""
    with ctx.db.session() as session:
        found = alert_service.list_alerts(session, open_only=status == "open", limit=limit)
        return [AlertOut.of(a) for a in found]


@router.post("/api/alerts/{alert_id}/acknowledge")
def acknowledge_alert(ctx: CtxDep, user: OperatorDep, alert_id: str) -> AlertOut:
    """Mark an alert as acknowledged (by the caller, now)."""
    with ctx.db.session() as session:
        return AlertOut.of(alert_service.acknowledge(session, alert_id, user.username))


@router.post("/api/alerts/acknowledge-all")
def acknowledge_all_alerts(ctx: CtxDep, user: OperatorDep) -> AcknowledgedOut:
    """Mark every open alert as acknowledged (by the caller, now)."""
    with ctx.db.session() as session:
        return AcknowledgedOut(acknowledged=alert_service.acknowledge_all(session, user.username))


class LoginRequest(BaseModel):
    """Credentials for a browser session."""

    model_config = ConfigDict(extra="forbid")
    username: str = Field(min_length=1, max_length=150)
    password: str = Field(min_length=1, max_length=1000)


@router.post("/api/auth/login")
def login(ctx: CtxDep, request: Request, response: Response, body: LoginRequest) -> LoginOut:
    """Start a session: sets an HttpOnly cookie and returns the CSRF token to send back."""
    with ctx.db.session() as session:
        address = request.client.host if request.client else ""
        user = users.log_in(session, ctx.logins, body.username, body.password, address)
        if user is None:
            raise AuthenticationError("wrong username or password")
        cookie, csrf = users.open_session(session, user)
        who = SessionUserOut(username=user.username, role=user.role)
    response.set_cookie(
        SESSION_COOKIE,
        cookie,
        max_age=int(users.SESSION_LIFETIME.total_seconds()),
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
        path="/",
    )
    return LoginOut(user=who, csrf_token=csrf)


@router.post("/api/auth/logout", status_code=204)
def logout(ctx: CtxDep, request: Request, user: UserDep) -> Response:
    """End the session of this cookie."""
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        with ctx.db.session() as session:
            users.close_session(session, cookie)
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/api/auth/me")
def me(user: UserDep) -> IdentityOut:
    """Who is logged in."""
    return IdentityOut.of(user)


@router.get(
    "/healthz",
    tags=["health"],
    response_model=HealthOut,
    responses={503: {"model": HealthOut, "description": "The database does not answer"}},
)
def healthz(ctx: CtxDep) -> HealthOut | JSONResponse:
    """Liveness and database reachability (no authentication: says nothing more)."""
    try:
        ctx.db.ping()
    except DatabaseError:
        logger.warning("health check: the database does not answer", exc_info=True)
        degraded = HealthOut(status="degraded", database="unavailable")
        return JSONResponse(degraded.model_dump(mode="json"), 503)
    return HealthOut(status="ok", database="ok")
