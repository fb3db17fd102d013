"""Logging in and out of the browser pages."""

from __future__ import annotations

import math
import secrets
from typing import Annotated

from fastapi import APIRouter, Form, Query, Request, Response

from backapp.errors import TooManyAttemptsError
from backapp.services import users
from backapp.web.rendering import local_path, redirect, render
from backapp.web.routing import WebRoute
from backapp.web.security import (
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    CtxDep,
    UserPost,
    set_cookie,
    tokens_match,
)

router = APIRouter(route_class=WebRoute, include_in_schema=False)


@router.get("/")
def home(request: Request) -> Response:
    """Send the browser to the dashboard."""
    return redirect(request, "/backups")


def _login_page(
    request: Request, next_url: str, *, username: str = "", error: str = "", status: int = 200
) -> Response:
    # Before a session exists, a double-submit token (cookie + hidden field) guards the form.
    token = request.cookies.get(LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(32)
    response = render(
        request,
        "login.html",
        None,
        status_code=status,
        login_csrf=token,
        next_url=local_path(next_url),
        username=username,
        error=error,
    )
    set_cookie(response, request, LOGIN_CSRF_COOKIE, token, max_age=3600)
    return response


@router.get("/login")
def login_form(
    request: Request, next_url: Annotated[str, Query(alias="next")] = "/backups"
) -> Response:
    """Show the login form."""
    return _login_page(request, next_url)


@router.post("/login")
def login(
    request: Request,
    ctx: CtxDep,
    username: Annotated[str, Form(max_length=150)] = "",
    password: Annotated[str, Form(max_length=1000)] = "",
    csrf_token: Annotated[str, Form()] = "",
    next_url: Annotated[str, Form(alias="next")] = "/backups",
) -> Response:
    """Check the credentials; start a session and go on, or show the form again."""
    if not tokens_match(csrf_token, request.cookies.get(LOGIN_CSRF_COOKIE)):
        return _login_page(
            request,
            next_url,
            username=username,
            status=403,
            error="The login form expired. Please try again.",
        )
    address = request.client.host if request.client else ""
    with ctx.db.session() as session:
        try:
            user = users.log_in(session, ctx.logins, username.strip(), password, address)
        except TooManyAttemptsError as exc:
            page = _login_page(
                request, next_url, username=username, status=429, error=f"{exc.message}."
            )
            page.headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
            return page
        if user is None:
            # 200, as for every form shown again with its errors (Django does the same).
            return _login_page(
                request, next_url, username=username, error="Wrong username or password."
            )
        cookie, _ = users.open_session(session, user)
    response = redirect(request, local_path(next_url))
    max_age = int(users.SESSION_LIFETIME.total_seconds())
    set_cookie(response, request, SESSION_COOKIE, cookie, max_age=max_age)
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/")
    return response


@router.post("/logout")
def logout(request: Request, ctx: CtxDep, posted: UserPost) -> Response:
    """End this browser's session."""
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        with ctx.db.session() as session:
            users.close_session(session, cookie)
    response = redirect(request, "/login", "You are logged out.")
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response
