"""The web UI: server-rendered pages over the same services as the API (htmx for live parts).

``install(app)`` adds the pages, the static files and the security headers to the app.
"""

from __future__ import annotations

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

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> Response:
        # Unknown URLs answer with a page; the API keeps FastAPI's JSON.
        if request.url.path.startswith(("/api/", "/static/")) or exc.status_code < 400:
            return await http_exception_handler(request, exc)
        return http_error_page(request, exc)


__all__ = ["install"]
