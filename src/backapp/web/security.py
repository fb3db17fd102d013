"""Who is browsing: the session cookie, CSRF checks and the role rules of the pages."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request, Response
from starlette.datastructures import FormData

from backapp.errors import LoginRequiredError, PermissionDeniedError
from backapp.services import alerts as alert_service
from backapp.services import users
from backapp.services.context import AppContext
from backapp.services.users import Identity

# The same cookie as the API's (api/deps.py): one login serves pages and API calls alike.
SESSION_COOKIE = users.SESSION_COOKIE
LOGIN_CSRF_COOKIE = "backapp_login_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
# Starlette stops at 1000 fields; a folder's page lets an admin tick up to 2000 paths.
MAX_FORM_FIELDS = 2500


def get_ctx(request: Request) -> AppContext:
    """Return the process's AppContext."""
    ctx: AppContext = request.app.state.ctx
    return ctx


async def _ctx(request: Request) -> AppContext:
    # async: reading an attribute needs no trip to a worker thread, as a def dependency takes
    return get_ctx(request)


CtxDep = Annotated[AppContext, Depends(_ctx)]


@dataclass(frozen=True)
class WebUser:
    """A logged-in browser user, and the open-alert count their navigation bar shows."""

    identity: Identity
    open_alerts: int

    @property
    def is_admin(self) -> bool:
        """Return whether this user may manage configs, destinations and users."""
        return self.identity.is_admin

    @property
    def can_operate(self) -> bool:
        """Return whether this user may run, restore and read backed-up content."""
        return self.identity.can_operate

    @property
    def username(self) -> str:
        """Return the user's name."""
        return self.identity.username

    @property
    def csrf_token(self) -> str:
        """Return the session's CSRF token, for the hidden field of every form."""
        return self.identity.csrf_token or ""


def page_user(request: Request, ctx: CtxDep) -> WebUser:
    """Return the logged-in user of this browser. Raise LoginRequiredError."""
    cookie = request.cookies.get(SESSION_COOKIE)
    identity = None
    # Only reads: on a page (GET) its transaction is handed over to the view's, one for both.
    with ctx.db.session(read_only=True, hand_over=True) as session:
        if cookie:
            identity = users.identity_for_session(session, cookie)
        if identity is None:
            raise LoginRequiredError("log in to see this page")
        user = WebUser(identity, alert_service.count_open(session))
    request.state.web_user = user
    return user


PageUser = Annotated[WebUser, Depends(page_user)]


def admin_page(user: PageUser) -> WebUser:
    """Return the user if they may edit. Raise PermissionDeniedError (403)."""
    if not user.is_admin:
        raise PermissionDeniedError(
            f"this needs the admin role (this account: {user.identity.role})"
        )
    return user


def operator_page(user: PageUser) -> WebUser:
    """Return the user if they may operate (run, restore, read backed-up files). Raise
    PermissionDeniedError (403)."""
    if not user.can_operate:
        raise PermissionDeniedError(
            f"this needs the operator or admin role (this account: {user.identity.role}): "
            "a viewer sees runs, alerts and statistics, not the content of backups"
        )
    return user


AdminPage = Annotated[WebUser, Depends(admin_page)]
OperatorPage = Annotated[WebUser, Depends(operator_page)]


@dataclass(frozen=True)
class Posted:
    """A form posted by an admin whose CSRF token matched."""

    user: WebUser
    form: FormData


def tokens_match(sent: str | None, expected: str | None) -> bool:
    """Given the token a request carries and the expected one, return whether they match."""
    return bool(sent and expected) and secrets.compare_digest(str(sent), str(expected))


async def _checked_form(request: Request, user: WebUser) -> FormData:
    """Given a posted page request, return its form if it carries the user's CSRF token (a
    form field, or the header htmx sends). Raise PermissionDeniedError."""
    form = await request.form(max_fields=MAX_FORM_FIELDS)
    sent = form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER)
    if not tokens_match(sent if isinstance(sent, str) else None, user.csrf_token):
        raise PermissionDeniedError(
            "the form's security token is missing or out of date: reload the page and try again"
        )
    return form


async def admin_post(request: Request, user: PageUser) -> Posted:
    """Return the posted form of an admin. Raise PermissionDeniedError (wrong CSRF, viewer)."""
    form = await _checked_form(request, user)
    admin_page(user)
    return Posted(user, form)


AdminPost = Annotated[Posted, Depends(admin_post)]


async def operator_post(request: Request, user: PageUser) -> Posted:
    """Return the posted form of an operator or admin. Raise PermissionDeniedError."""
    form = await _checked_form(request, user)
    operator_page(user)
    return Posted(user, form)


OperatorPost = Annotated[Posted, Depends(operator_post)]


async def user_post(request: Request, user: PageUser) -> Posted:
    """Return the posted form of any logged-in user (e.g. logout). Raise PermissionDeniedError."""
    form = await request.form()
    sent = form.get(CSRF_FIELD)
    if not tokens_match(sent if isinstance(sent, str) else None, user.csrf_token):
        raise PermissionDeniedError("the form's security token is missing or out of date")
    return Posted(user, form)


UserPost = Annotated[Posted, Depends(user_post)]


def set_cookie(
    response: Response, request: Request, name: str, value: str, max_age: int | None
) -> None:
    """Given a response, set one of our cookies: HttpOnly, SameSite=Lax, Secure over HTTPS."""
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
        path="/",
    )
