"""One place that maps BackApp's errors to HTTP responses."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from backapp.domain.config import error_path
from backapp.errors import (
    AuthenticationError,
    BackappError,
    BackupNotFoundError,
    ConfigError,
    ConflictError,
    EncryptionKeyError,
    IntegrityError,
    NotFoundError,
    PermissionDeniedError,
    StorageError,
)

logger = logging.getLogger(__name__)

_STATUS: list[tuple[type[BackappError], int]] = [
    (ConfigError, 422),
    (EncryptionKeyError, 422),
    (NotFoundError, 404),
    (BackupNotFoundError, 404),
    (ConflictError, 409),
    (AuthenticationError, 401),
    (PermissionDeniedError, 403),
    (StorageError, 502),
    (IntegrityError, 502),
]


def status_for(exc: BackappError) -> int:
    """Given a BackappError, return its HTTP status."""
    for cls, status in _STATUS:
        if isinstance(exc, cls):
            return status
    return 400


def error_body(message: str, problems: list[tuple[str, str]] | None = None) -> dict[str, Any]:
    """Given a message and field problems, return the JSON error document."""
    body: dict[str, Any] = {"error": message}
    if problems:
        body["problems"] = [{"field": f, "message": m} for f, m in problems]
    return body


def _problems_from_request(exc: RequestValidationError) -> list[tuple[str, str]]:
    problems = []
    for err in exc.errors():
        loc = tuple(err.get("loc", ()))
        where = loc[0] if loc else "body"
        rest = loc[1:] if where in ("body", "query", "path", "header") else loc
        path = error_path(rest) if rest else str(where)
        if where in ("query", "path", "header"):
            path = f"{where}.{path}"
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        if err.get("type") == "json_invalid":
            path, msg = "(document)", "invalid JSON: " + str(err.get("ctx", {}).get("error", msg))
        problems.append((path, msg))
    return problems


def install(app: FastAPI) -> None:
    """Given the app, register the error handlers."""

    @app.exception_handler(BackappError)
    async def _backapp(request: Request, exc: BackappError) -> JSONResponse:
        status = status_for(exc)
        problems = exc.problems if isinstance(exc, ConfigError) else None
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        return JSONResponse(error_body(exc.message, problems), status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = _problems_from_request(exc)
        summary = "; ".join(f"{p}: {m}" for p, m in problems)
        return JSONResponse(error_body(f"invalid request: {summary}", problems), 422)
