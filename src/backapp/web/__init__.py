"""The web UI: server-rendered pages over the same services as the API (htmx for live parts).

``install(app)`` adds the pages, the static files and the security headers to the app.
"""

from __future__ import annotations

import inspect

from fastapi import FastAPI, Request, Response
from fastapi.exception_handlers import http_exception_handler
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from backapp.web.headers import SecurityHeaders
from backapp.web.rendering import STATIC_DIR
from backapp.web.routing import http_error_page
from backapp.web.views import ROUTERS


def install(app: FastAPI) -> None:
    """Given the app, mount the pages, /static and the headers every page carries."""
    for router in ROUTERS:
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.add_middleware(SecurityHeaders)
    api_handler = app.exception_handlers.get(HTTPException, http_exception_handler)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> Response:
        # Unknown URLs answer with a page; the API answers with its own handler's JSON.
        if request.url.path.startswith("/api/"):
            answer = api_handler(request, exc)
            return await answer if inspect.isawaitable(answer) else answer
        if request.url.path.startswith("/static/") or exc.status_code < 400:
            return await http_exception_handler(request, exc)
        return http_error_page(request, exc)


__all__ = ["install"]
