"""Jinja2 templates, their filters, static file URLs and one-shot flash messages."""

from __future__ import annotations

import hashlib
import json
import re
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from backapp import __version__
from backapp.web import formatting
from backapp.web.security import CSRF_FIELD, WebUser, set_cookie

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"
FLASH_COOKIE = "backapp_flash"
_LOCAL_PATH = re.compile(r"^/(?![/\\])[^\x00-\x20\x7f\\]*$")

templates = Jinja2Templates(directory=HERE / "templates")
env = templates.env
env.trim_blocks = True
env.lstrip_blocks = True
env.filters.update(
    bytes=formatting.human_bytes,
    duration=formatting.human_duration,
    number=formatting.number,
    time=formatting.time_tag,
    badge=formatting.status_badge,
    file_mode=formatting.file_mode,
    backup_time=formatting.backup_moment,
)


@cache
def static_url(name: str) -> str:
    """Given a file under static/, return its URL with a content hash (safe to cache long)."""
    digest = hashlib.sha256((STATIC_DIR / name).read_bytes()).hexdigest()[:10]
    return f"/static/{quote(name)}?v={digest}"


env.globals.update(static=static_url, version=__version__, csrf_field=CSRF_FIELD)


def local_path(target: str | None, default: str = "/backups") -> str:
    """Given a 'next' URL from a form or query, return it if it stays on this site."""
    # One leading slash, then no slash, backslash or control character: "//evil.example",
    # "/\\evil.example" and "/\t/evil.example" would all leave the site.
    if target and _LOCAL_PATH.match(target):
        return target
    return default


def render(
    request: Request,
    template: str,
    user: WebUser | None,
    *,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    """Given a template and its context, return the page (with the flash message, once)."""
    flash = _read_flash(request)
    response = templates.TemplateResponse(
        request,
        template,
        {"user": user, "flash": flash, **context},
        status_code=status_code,
    )
    if flash is not None:
        response.delete_cookie(FLASH_COOKIE, path="/")
    return response


def redirect(
    request: Request, url: str, flash: str | None = None, kind: str = "ok"
) -> RedirectResponse:
    """Given a URL, return a 303 redirect to it, carrying a flash message for the next page."""
    response = RedirectResponse(url, status_code=303)
    if flash:
        payload = quote(json.dumps({"kind": kind, "text": flash}))
        set_cookie(response, request, FLASH_COOKIE, payload, max_age=60)
    return response


def _read_flash(request: Request) -> dict[str, str] | None:
    raw = request.cookies.get(FLASH_COOKIE)
    if not raw:
        return None
    try:
        data = json.loads(unquote(raw))
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    return {"kind": str(data.get("kind", "ok")), "text": str(data.get("text", ""))}
