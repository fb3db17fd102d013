"""A stored backup: browse its files, download one, restore it (or picked paths), verify it."""

from __future__ import annotations

import logging
import posixpath
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse

from backapp.db import Config
from backapp.domain.config import BackupConfig
from backapp.errors import ConfigError, ConflictError, IntegrityError
from backapp.services import configs as config_service
from backapp.services import restores
from backapp.services.context import AppContext
from backapp.web.rendering import redirect, render
from backapp.web.restore_form import LABELS, RestoreForm, errors_by_field
from backapp.web.routing import WebRoute
from backapp.web.security import CtxDep, OperatorPage, OperatorPost, WebUser

logger = logging.getLogger(__name__)

router = APIRouter(route_class=WebRoute, include_in_schema=False)

BASE = "/backups/{config_id}/backups/{backup_id}"
# A folder with more entries than this shows the first ones and says how many are left out.
MAX_ENTRIES = 2000
PathQuery = Annotated[str, Query(max_length=4096)]


@dataclass(frozen=True)
class Stored:
    """A configuration and one of its stored backups, as the pages need them."""

    config: Config
    document: BackupConfig
    slug: str
    backup_id: str

    @property
    def url(self) -> str:
        """Return the URL these pages share for the backup."""
        return BASE.format(config_id=self.config.id, backup_id=quote(self.backup_id, safe=""))


def load_stored(ctx: AppContext, config_id: str, backup_id: str) -> Stored:
    """Given ids, return the config and the backup's full id. Raise (Backup)NotFoundError."""
    with ctx.db.session() as session:
        config = config_service.get(session, config_id)
        document, slug = config_service.document_of(config), config.slug
    resolved = ctx.repository(document, slug).resolve(backup_id)
    return Stored(config, document, slug, resolved)


def start_path(sources: list[str]) -> str:
    """Given a backup's source folders, return where browsing it starts (their common folder)."""
    parts = [s.strip("/") for s in sources]
    if not parts:
        return ""
    return posixpath.commonpath(["/" + p for p in parts]).strip("/")


def _crumbs(path: str) -> list[tuple[str, str]]:
    parts = path.split("/") if path else []
    return [(name, "/".join(parts[: i + 1])) for i, name in enumerate(parts)]


@router.get("/backups/{config_id}/backups/{backup_id}/browse")
def browse(
    request: Request,
    ctx: CtxDep,
    user: OperatorPage,
    config_id: str,
    backup_id: str,
    path: PathQuery = "",
) -> Response:
    """Show one folder of a backup, read from its manifest (no archive is downloaded)."""
    stored = load_stored(ctx, config_id, backup_id)
    folder = restores.browse(ctx, stored.document, stored.slug, stored.backup_id, path)
    entries = folder.entries
    return render(
        request,
        "browse.html",
        user,
        config=stored.config,
        backup_id=stored.backup_id,
        base=stored.url,
        path=folder.path,
        crumbs=_crumbs(folder.path),
        parent=folder.path.rpartition("/")[0],
        entries=entries[:MAX_ENTRIES],
        hidden=max(0, len(entries) - MAX_ENTRIES),
    )


@router.get("/backups/{config_id}/backups/{backup_id}/download")
def download(
    ctx: CtxDep,
    user: OperatorPage,
    config_id: str,
    backup_id: str,
    path: Annotated[str, Query(min_length=1, max_length=4096)],
) -> Response:
    """Send one file of a backup as a download (only the blocks holding it are read)."""
    stored = load_stored(ctx, config_id, backup_id)
    entry, stream = restores.open_file(ctx, stored.document, stored.slug, stored.backup_id, path)
    # Damage at the start still gets an error page; later, the status line has been sent and
    # the download breaks off short of its Content-Length, which browsers report as failed.
    first = next(stream, b"")
    name = path.strip("/").rsplit("/", 1)[-1]  # a hard link's entry is its target's: use ours
    return StreamingResponse(
        _chained(first, stream, entry.path),
        media_type="application/octet-stream",
        headers={
            "Content-Disposition": _attachment(name),
            "Content-Length": str(entry.size),
            "Cache-Control": "no-store",
        },
    )


def _chained(first: bytes, rest: Iterator[bytes], path: str) -> Iterator[bytes]:
    if first:
        yield first
    try:
        yield from rest
    except IntegrityError as exc:
        # Ending short of the Content-Length makes the browser report a failed download.
        logger.warning("download of %s stopped, the backup is damaged: %s", path, exc.message)


def _attachment(name: str) -> str:
    # Old clients read the ASCII filename; others the exact UTF-8 one (RFC 6266).
    fallback = "".join(c if " " <= c <= "~" and c not in '"\\' else "_" for c in name)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


def _form_page(
    request: Request,
    ctx: AppContext,
    user: WebUser,
    stored: Stored,
    form: RestoreForm,
    problems: list[tuple[str, str]] | None = None,
    notice: str = "",
) -> Response:
    problems = problems or []
    new_folder = (ctx.settings.data_dir / "restores" / stored.slug).absolute()
    return render(
        request,
        "restore_form.html",
        user,
        config=stored.config,
        backup_id=stored.backup_id,
        base=stored.url,
        browse_from=start_path([s.path for s in stored.document.sources]),
        form=form,
        errors=errors_by_field(problems),
        summary=[(n if n in LABELS else "", LABELS.get(n, ""), m) for n, m in problems],
        notice=notice,
        new_folder=f"{new_folder}/{stored.backup_id}-…",
    )


@router.get("/backups/{config_id}/backups/{backup_id}/restore")
def restore_form(
    request: Request,
    ctx: CtxDep,
    user: OperatorPage,
    config_id: str,
    backup_id: str,
    path: Annotated[list[str] | None, Query()] = None,
) -> Response:
    """Show the restore form: everything, or the paths given; a new folder by default."""
    stored = load_stored(ctx, config_id, backup_id)
    return _form_page(request, ctx, user, stored, RestoreForm.for_paths(path or []))


@router.post("/backups/{config_id}/backups/{backup_id}/restore")
def restore(
    request: Request, ctx: CtxDep, posted: OperatorPost, config_id: str, backup_id: str
) -> Response:
    """Queue the restore and go to its run's page; or show the form again, as typed."""
    stored = load_stored(ctx, config_id, backup_id)
    form = RestoreForm.from_form(posted.form)
    if posted.form.get("action") == "pick":
        # "Restore selected" on the browse page: the form, filled in, nothing queued yet.
        return _form_page(request, ctx, posted.user, stored, RestoreForm.for_paths(form.paths))
    arguments, problems = form.plan_arguments()
    if problems:
        return _form_page(request, ctx, posted.user, stored, form, problems)
    try:
        plan = restores.plan_restore(
            ctx, stored.document, stored.slug, backup_id=stored.backup_id, **arguments
        )
    except ConfigError as exc:
        return _form_page(
            request, ctx, posted.user, stored, form, exc.problems or [("", exc.message)]
        )
    try:
        with ctx.db.session() as session:
            config = config_service.get(session, config_id)
            run_id = restores.enqueue_restore(session, config, plan, posted.user.username).id
    except ConflictError as exc:
        notice = f"{exc.message}. Wait for it to finish (or cancel it), then restore again."
        return _form_page(request, ctx, posted.user, stored, form, notice=notice)
    where = plan.target or ("the original locations" if plan.in_place else "a new folder")
    return redirect(request, f"/backups/logs/{run_id}", f"Restore into {where} queued.")


@router.post("/backups/{config_id}/backups/{backup_id}/verify")
def verify(
    request: Request, ctx: CtxDep, posted: OperatorPost, config_id: str, backup_id: str
) -> Response:
    """Queue a quick or full verification of the backup and go to its run's page."""
    mode = posted.form.get("mode")
    if mode not in ("quick", "full"):
        raise ConfigError("choose a quick or a full verification")
    stored = load_stored(ctx, config_id, backup_id)
    try:
        with ctx.db.session() as session:
            config = config_service.get(session, config_id)
            run_id = restores.enqueue_verify(
                session,
                config,
                backup_id=stored.backup_id,
                full=mode == "full",
                requested_by=posted.user.username,
            ).id
    except ConflictError as exc:
        return redirect(request, f"/backups/{config_id}", exc.message, kind="error")
    what = "Full" if mode == "full" else "Quick"
    return redirect(
        request, f"/backups/logs/{run_id}", f"{what} verification of {stored.backup_id} queued."
    )
