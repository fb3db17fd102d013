"""Composition root of the web process: build the FastAPI app from settings."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.responses import HTMLResponse

from backapp import __version__, web
from backapp.api import errors
from backapp.api.deps import UserDep
from backapp.api.limits import BodyLimit
from backapp.api.routes import configs, metrics, misc, notifications, restores, runs
from backapp.api.transactions import RequestTransactions
from backapp.db import Database
from backapp.services.context import AppContext
from backapp.settings import Settings

_DOCS_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>BackApp API</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">
<link rel="stylesheet" href="/static/vendor/swagger-ui/swagger-ui.css">
</head><body><div id="swagger-ui" data-openapi-url="/api/openapi.json"></div>
<script src="/static/vendor/swagger-ui/swagger-ui-bundle.js"></script>
<script src="/static/api-docs.js"></script>
</body></html>
"""


def build_context(settings: Settings | None = None) -> AppContext:
    """Given settings (default: from the environment), return the wired AppContext."""
    settings = settings or Settings()
    return AppContext(settings=settings, db=Database(settings.database_url))


def create_app(ctx: AppContext) -> FastAPI:
    """Given the app context, return the ASGI application (API + web UI)."""
    app = FastAPI(
        title="BackApp",
        version=__version__,
        description="Backups of directories to S3, S3-compatible stores or a local folder.",
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    app.state.ctx = ctx
    app.add_middleware(BodyLimit)
    app.add_middleware(RequestTransactions, ctx=ctx)
    errors.install(app)
    app.include_router(configs.router)
    app.include_router(runs.router)
    app.include_router(misc.router)
    app.include_router(restores.router)
    app.include_router(metrics.router)
    app.include_router(notifications.router)
    web.install(app)

    @app.get("/api/openapi.json", include_in_schema=False)
    def openapi(user: UserDep) -> dict[str, Any]:
        return app.openapi()

    @app.get("/api/docs", include_in_schema=False)
    def docs(user: UserDep) -> HTMLResponse:
        # Swagger UI is vendored under /static (no CDN: works offline, fits the CSP).
        return HTMLResponse(_DOCS_PAGE)

    return app
