"""Dependencies of the API routes: the app context and who is calling."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from backapp.errors import AuthenticationError, PermissionDeniedError
from backapp.services import users
from backapp.services.context import AppContext
from backapp.services.users import Identity

SESSION_COOKIE = users.SESSION_COOKIE
CSRF_HEADER = "x-csrf-token"
_SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


def get_ctx(request: Request) -> AppContext:
    """Return the process's AppContext."""
    ctx: AppContext = request.app.state.ctx
    return ctx


async def _ctx(request: Request) -> AppContext:
    # async: reading an attribute needs no trip to a worker thread, as a def dependency takes
    return get_ctx(request)


CtxDep = Annotated[AppContext, Depends(_ctx)]


def identify(request: Request, ctx: AppContext) -> Identity | None:
    """Given a request, return who made it (bearer token or session cookie), or None.

    The checks only read, and hand their transaction over to the route: a read-only
    request is one transaction without SQLite's write lock. A token's last use is
    recorded in a short write of its own, once per token every few minutes.
    """
    header = request.headers.get("authorization", "")
    token = header[7:].strip() if header.lower().startswith("bearer ") else None
    cookie = request.cookies.get(SESSION_COOKIE)
    identity = None
    with ctx.db.session(read_only=True, hand_over=True) as session:
        if token is not None:
            identity = users.identity_for_token(session, token, record_use=False)
        elif cookie:
            identity = users.identity_for_session(session, cookie)
    if token is not None and identity is not None and users.claim_token_use(token):
        with ctx.db.session(read_only=False, separate=True) as session:
            users.record_token_use(session, token)
    return identity


def current_identity(request: Request, ctx: CtxDep) -> Identity:
    """Return the caller's identity. Raise AuthenticationError (401).

    Requests authenticated by the session cookie must also carry the session's CSRF
    token (header X-CSRF-Token) on anything but GET/HEAD/OPTIONS.
    """
    identity = identify(request, ctx)
    if identity is None:
        raise AuthenticationError("authentication required: log in or send a bearer token")
    if (
        identity.via == "session"
        and request.method not in _SAFE_METHODS
        and request.headers.get(CSRF_HEADER) != identity.csrf_token
    ):
        raise PermissionDeniedError("missing or wrong CSRF token (header X-CSRF-Token)")
    return identity


def admin_identity(identity: Annotated[Identity, Depends(current_identity)]) -> Identity:
    """Return the caller's identity if it is an admin. Raise PermissionDeniedError (403)."""
    if not identity.is_admin:
        raise PermissionDeniedError(f"this needs the admin role (this account: {identity.role})")
    return identity


def operator_identity(identity: Annotated[Identity, Depends(current_identity)]) -> Identity:
    """Return the caller's identity if it may operate (run, restore, read backed-up files).
    Raise PermissionDeniedError (403)."""
    if not identity.can_operate:
        raise PermissionDeniedError(
            f"this needs the operator or admin role (this account: {identity.role})"
        )
    return identity


UserDep = Annotated[Identity, Depends(current_identity)]
OperatorDep = Annotated[Identity, Depends(operator_identity)]
AdminDep = Annotated[Identity, Depends(admin_identity)]
