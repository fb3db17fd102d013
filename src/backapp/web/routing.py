"""Pages answer errors with pages: a login redirect, or an HTML error with the right status.

The API maps BackApp's errors to JSON in one handler (api/errors.py); the pages'
routers use ``WebRoute``, which turns the same errors into HTML before they
reach it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import quote

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException

from backapp.errors import BackappError, IntegrityError, LoginRequiredError, http_status
from backapp.web.rendering import redirect, render

logger = logging.getLogger(__name__)

# The pages answer the status the errors table gives (errors.http_status), with a title.
_TITLES = {
    401: "Log in",
    403: "Not allowed",
    404: "Not found",
    409: "Conflict",
    422: "Cannot do that",
    429: "Too many attempts",
    502: "Storage problem",
    503: "Database unavailable",
}


def login_redirect(request: Request) -> Response:
    """Given a request that needs a login, send the browser to the login page (and back)."""
    if request.headers.get("accept") == "text/event-stream":
        return Response(status_code=204)  # tells an EventSource to stop reconnecting
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    url = f"/login?next={quote(target)}" if request.method == "GET" else "/login"
    if request.headers.get("hx-request"):
        return Response(status_code=200, headers={"HX-Redirect": url})
    return redirect(request, url)


def error_page(request: Request, status: int, title: str, message: str) -> Response:
    """Given a status and a message, return the HTML error page."""
    user = getattr(request.state, "web_user", None)
    return render(request, "error.html", user, status_code=status, title=title, message=message)


def page_for_error(request: Request, exc: Exception) -> Response:
    """Given an error raised by a page, return the page that explains it. Re-raise others."""
    if isinstance(exc, LoginRequiredError):
        return login_redirect(request)
    if isinstance(exc, BackappError):
        status = http_status(exc)
        title = "Damaged backup" if isinstance(exc, IntegrityError) else _TITLES.get(status)
        return error_page(request, status, title or "Cannot do that", exc.message)
    if isinstance(exc, RequestValidationError):
        fields = ", ".join(str(e.get("loc", ["?"])[-1]) for e in exc.errors())
        return error_page(request, 400, "Bad request", f"missing or invalid: {fields}")
    raise exc


class WebRoute(APIRoute):
    """A page route: errors from its dependencies and handler become HTML responses."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except (BackappError, RequestValidationError) as exc:
                return page_for_error(request, exc)

        return handle


def http_error_page(request: Request, exc: HTTPException) -> Response:
    """Given Starlette's HTTP error outside any page route (unknown URL, …), return a page."""
    titles = {404: "Not found", 405: "Method not allowed"}
    message = "There is no page at this address." if exc.status_code == 404 else str(exc.detail)
    return error_page(request, exc.status_code, titles.get(exc.status_code, "Error"), message)
