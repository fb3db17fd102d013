"""One place that maps BackApp's errors to HTTP responses."""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from backapp.api import deps
from backapp.api.schemas import ErrorOut
from backapp.domain.config import error_path
from backapp.errors import (
    AuthenticationError,
    BackappError,
    ConfigError,
    PermissionDeniedError,
    TooManyAttemptsError,
    http_status,
)

logger = logging.getLogger(__name__)


def status_for(exc: BackappError) -> int:
    """Given a BackappError, return its HTTP status (the table in errors.py, shared with
    the pages)."""
    return http_status(exc)


def error_body(message: str, problems: list[tuple[str, str]] | None = None) -> dict[str, Any]:
    """Given a message and field problems, return the JSON error document (ErrorOut)."""
    body: dict[str, Any] = ErrorOut.of(message, problems).model_dump(mode="json")
    return body


# The tags of the Destination union: pydantic puts them in error locations, but they are
# not fields (error_path drops them under "destination"; a bare destination body starts with one).
_DESTINATION_TAGS = ("s3", "local")


def _problems_from_request(exc: RequestValidationError) -> list[tuple[str, str]]:
    problems = []
    for err in exc.errors():
        loc = tuple(err.get("loc", ()))
        where = loc[0] if loc else "body"
        rest = loc[1:] if where in ("body", "query", "path", "header") else loc
        if where == "body" and rest and rest[0] in _DESTINATION_TAGS:
            rest = rest[1:]
        path = error_path(rest) if rest else str(where)
        if where in ("query", "path", "header"):
            path = f"{where}.{path}"
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        if err.get("type") == "union_tag_invalid":
            ctx = err.get("ctx", {})
            msg = f"unknown type {ctx.get('tag')!r}: use one of {ctx.get('expected_tags')}"
        if err.get("type") == "json_invalid":
            path, msg = "(document)", "invalid JSON: " + str(err.get("ctx", {}).get("error", msg))
        problems.append((path, msg))
    return problems


def _dependency_calls(request: Request) -> set[Any]:
    dependant = getattr(request.scope.get("route"), "dependant", None)
    stack, calls = [dependant] if dependant is not None else [], set()
    while stack:
        current = stack.pop()
        calls.add(current.call)
        stack.extend(current.dependencies)
    return calls


def check_caller(request: Request) -> None:
    """Given a request whose body did not parse, run its route's authentication anyway.

    FastAPI parses the body before it solves dependencies, so without this an anonymous
    caller sending broken JSON would get a 422 instead of the 401 every route promises.
    Raise AuthenticationError, PermissionDeniedError.
    """
    calls = _dependency_calls(request)
    if deps.current_identity in calls:
        identity = deps.current_identity(request, deps.get_ctx(request))
        for check in (deps.operator_identity, deps.admin_identity):
            if check in calls:
                check(identity)


def _response(exc: BackappError) -> JSONResponse:
    status = status_for(exc)
    problems = exc.problems if isinstance(exc, ConfigError) else None
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    if isinstance(exc, TooManyAttemptsError):
        headers = {"Retry-After": str(max(1, math.ceil(exc.retry_after)))}
    return JSONResponse(error_body(exc.message, problems), status, headers=headers)


def install(app: FastAPI) -> None:
    """Given the app, register the error handlers."""

    @app.exception_handler(BackappError)
    async def _backapp(request: Request, exc: BackappError) -> JSONResponse:
        return _response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        try:
            await run_in_threadpool(check_caller, request)
        except (AuthenticationError, PermissionDeniedError) as denied:
            return _response(denied)
        problems = _problems_from_request(exc)
        summary = "; ".join(f"{p}: {m}" for p, m in problems)
        return JSONResponse(error_body(f"invalid request: {summary}", problems), 422)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> Response:
        # FastAPI's own refusals inside an operation (a body that cannot be parsed) get the
        # API's error body too; a URL that is no operation keeps FastAPI's answer.
        if request.scope.get("route") is None or exc.status_code < 400:
            return await http_exception_handler(request, exc)
        try:
            await run_in_threadpool(check_caller, request)
        except (AuthenticationError, PermissionDeniedError) as denied:
            return _response(denied)
        return JSONResponse(error_body(str(exc.detail)), exc.status_code, headers=exc.headers)
