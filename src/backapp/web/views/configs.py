"""Configurations: create, edit, view, delete and run now; delete a stored backup, prune."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from backapp.db import Config
from backapp.domain.runs import ACTIVE
from backapp.engine.prune import PruneResult
from backapp.errors import (
    BackappError,
    BackupNotFoundError,
    BackupRequiredError,
    ConfigError,
    ConflictError,
)
from backapp.services import configs as config_service
from backapp.services import destinations, retention
from backapp.services import runs as run_service
from backapp.services.destinations import DestinationCheck
from backapp.services.retention import DeletedBackup
from backapp.web.formatting import human_bytes, progress_view
from backapp.web.forms import (
    ConfigForm,
    errors_by_field,
    field_for,
    label_for,
    replacement_patch,
)
from backapp.web.rendering import local_path, redirect, render
from backapp.web.routing import WebRoute
from backapp.web.security import (
    AdminPage,
    AdminPost,
    CtxDep,
    OperatorPost,
    PageUser,
    Posted,
    WebUser,
)
from backapp.web.views.restores import start_path
from backapp.web.views.tools import check_destination, fire_times, timezone_names

router = APIRouter(route_class=WebRoute, include_in_schema=False)


def _form_page(
    request: Request,
    ctx: CtxDep,
    user: WebUser,
    form: ConfigForm,
    *,
    config: Config | None = None,
    problems: list[tuple[str, str]] | None = None,
    notice: str = "",
    test_result: DestinationCheck | None = None,
    fresh: bool = False,
) -> Response:
    problems = problems or []
    summary = [(field_for(path), label_for(field_for(path)), msg) for path, msg in problems]
    return render(
        request,
        "config_form.html",
        user,
        # A failed submit is answered with the form again: 200, so the page stays a page.
        form=form,
        config=config,
        errors=errors_by_field(problems),
        summary=summary,
        notice=notice,
        test_result=test_result,
        fresh=fresh,
        timezones=timezone_names(),
        encryption_key_set=ctx.settings.backup_encryption_key is not None,
    )


@router.get("/backups/new")
def new_config(request: Request, ctx: CtxDep, user: AdminPage) -> Response:
    """Show an empty configuration form (a local folder under the data directory)."""
    form = ConfigForm(local_path=str((ctx.settings.data_dir / "backups").resolve()))
    return _form_page(request, ctx, user, form, fresh=True)


def _unsaved_action(
    request: Request, ctx: CtxDep, posted: Posted, form: ConfigForm, config: Config | None
) -> Response | None:
    """Given a posted form, handle the buttons that do not save (for browsers without script)."""
    action = str(posted.form.get("action") or "save")
    if form.apply_row_action(action):
        return _form_page(request, ctx, posted.user, form, config=config)
    if action == "test-destination":
        result = check_destination(ctx, form)
        return _form_page(request, ctx, posted.user, form, config=config, test_result=result)
    return None


@router.post("/backups/new")
def create_config(request: Request, ctx: CtxDep, posted: AdminPost) -> Response:
    """Create the configuration, or show the form again with its problems."""
    form = ConfigForm.from_form(posted.form)
    shown = _unsaved_action(request, ctx, posted, form, None)
    if shown is not None:
        return shown
    document, problems = form.without_blank_rows().to_document()
    if not problems:
        try:
            with ctx.db.session() as session:
                config_id = config_service.create(session, document).id
        except ConfigError as exc:
            problems = exc.problems or [("(document)", exc.message)]
    if problems:
        return _form_page(request, ctx, posted.user, form, problems=problems)
    return redirect(request, f"/backups/{config_id}", f"Saved “{document['name']}”.")


@router.get("/backups/{config_id}/edit")
def edit_config(request: Request, ctx: CtxDep, user: AdminPage, config_id: str) -> Response:
    """Show the form of a configuration."""
    with ctx.db.session() as session:
        config = config_service.get(session, config_id)
        form = ConfigForm.from_document(config.document, config.version)
    return _form_page(request, ctx, user, form, config=config)


@router.post("/backups/{config_id}/edit")
def update_config(request: Request, ctx: CtxDep, posted: AdminPost, config_id: str) -> Response:
    """Save the edited configuration, or show the form again as typed."""
    form = ConfigForm.from_form(posted.form)
    with ctx.db.session() as session:
        current = config_service.get(session, config_id)
    shown = _unsaved_action(request, ctx, posted, form, current)
    if shown is not None:
        return shown
    document, problems = form.without_blank_rows().to_document()
    notice = ""
    with ctx.db.session() as session:
        config = config_service.get(session, config_id)
        if not problems:
            expected = int(form.version) if form.version.isdigit() else None
            try:
                # update() validates before it changes anything, so a refusal leaves no trace.
                config_service.update(
                    session,
                    config_id,
                    replacement_patch(config.document, document),
                    expected_version=expected,
                )
            except ConfigError as exc:
                problems = exc.problems or [("(document)", exc.message)]
            except ConflictError:
                notice = (
                    "Someone changed this configuration since you opened it. Your version is "
                    "below, unsaved: save again to replace theirs, or reload to see it."
                )
                form.version = str(config.version)
    if problems or notice:
        return _form_page(
            request, ctx, posted.user, form, config=current, problems=problems, notice=notice
        )
    return redirect(request, f"/backups/{config_id}", f"Saved “{document['name']}”.")


@router.get("/backups/{config_id}")
def config_detail(request: Request, ctx: CtxDep, user: PageUser, config_id: str) -> Response:
    """Show a configuration, its next runs, its run history and (lazily) its stored backups."""
    with ctx.db.session() as session:
        config = config_service.get(session, config_id)
        document = config_service.document_of(config)
        runs = run_service.views(
            session, run_service.list_runs(session, config_id=config_id, limit=20)
        )
    upcoming, _ = fire_times(document.schedule.cron_expression, document.schedule.timezone)
    active = next((v for v in runs if v.run.status in ACTIVE), None)
    # A restore or verification in progress does not stop a backup from being queued.
    backing_up = any(v.run.status in ACTIVE and v.run.kind == "backup" for v in runs)
    return render(
        request,
        "config_detail.html",
        user,
        config=config,
        document=document,
        runs=runs,
        upcoming=upcoming if document.enabled else [],
        active=active,
        backing_up=backing_up,
        active_progress=progress_view(active.run.status, active.progress) if active else None,
    )


@router.get("/backups/{config_id}/stored")
def stored_backups(request: Request, ctx: CtxDep, user: PageUser, config_id: str) -> Response:
    """Return the list of backups in the configuration's storage (a partial; may be slow)."""
    with ctx.db.session() as session:
        config = config_service.get(session, config_id)
        document, slug = config_service.document_of(config), config.slug
    error, backups = "", []
    try:
        # With the retention preview: what the next run's retention would do, and why.
        backups = retention.preview(ctx, document, slug).newest_first()
    except BackappError as exc:
        error = exc.message
    starts = {b.backup_id: start_path(b.info.sources) for b in backups if b.info is not None}
    return render(
        request,
        "partials/stored_backups.html",
        user,
        backups=backups,
        browse_from=starts,
        error=error,
        config_id=config_id,
    )


@router.get("/backups/{config_id}/backups/{backup_id}/delete")
def confirm_delete_backup(
    request: Request, ctx: CtxDep, user: AdminPage, config_id: str, backup_id: str
) -> Response:
    """Ask before deleting one stored backup (or say why it cannot be deleted now)."""
    with ctx.db.session() as session:
        config = config_service.get(session, config_id)
        document, slug = config_service.document_of(config), config.slug
    listed = next(
        (b for b in destinations.stored_backups(ctx, document, slug) if b.backup_id == backup_id),
        None,
    )
    if listed is None:
        raise BackupNotFoundError(f"backup {backup_id} is not in this configuration's storage")
    refused = ""
    try:
        retention.forget_backup(ctx.repository(document, slug), backup_id, dry_run=True)
    except BackupRequiredError as exc:
        refused = exc.message
    return render(
        request,
        "confirm_delete_backup.html",
        user,
        config=config,
        backup=listed,
        sealed=destinations.sealed_backup(listed),
        refused=refused,
    )


@router.post("/backups/{config_id}/backups/{backup_id}/delete")
def delete_stored_backup(
    request: Request, ctx: CtxDep, posted: AdminPost, config_id: str, backup_id: str
) -> Response:
    """Delete one stored backup, prune what no other backup uses, and say what was freed."""
    back = f"/backups/{config_id}"
    with ctx.db.session() as session:
        config = config_service.get(session, config_id)
        document, slug = config_service.document_of(config), config.slug
    try:
        deleted = retention.delete_backup(ctx, ctx.db.session, config_id, document, slug, backup_id)
    except (BackupNotFoundError, ConflictError) as exc:
        return redirect(request, back, f"Backup {backup_id} was not deleted: {exc}", kind="error")
    return redirect(request, back, _deleted_message(deleted))


def _deleted_message(deleted: DeletedBackup) -> str:
    done = f"Deleted backup {deleted.backup_id}."
    if deleted.prune is None:
        return f"{done} Its stored blocks stay until a prune can run ({deleted.prune_skipped})."
    return f"{done} Prune: {_freed(deleted.prune)}."


def _freed(result: PruneResult) -> str:
    return (
        f"{human_bytes(result.bytes_freed)} freed, {result.blocks_removed:,} unused block(s) "
        f"removed ({result.packs_removed} pack(s) deleted, {result.packs_repacked} repacked)"
    )


@router.post("/backups/{config_id}/prune")
def prune_now(request: Request, ctx: CtxDep, posted: AdminPost, config_id: str) -> Response:
    """Delete the stored blocks no backup of the configuration references; show what went."""
    with ctx.db.session() as session:
        config = config_service.get(session, config_id)
        document, slug = config_service.document_of(config), config.slug
    result, refused = None, ""
    try:
        result = retention.prune(
            ctx.repository(document, slug), lock_wait=retention.REQUEST_LOCK_WAIT
        )
    except ConflictError as exc:  # a backup cannot be read, or a run holds the lock
        refused = exc.message
    return render(
        request,
        "prune_result.html",
        posted.user,
        config=config,
        result=result,
        freed=_freed(result) if result is not None else "",
        refused=refused,
    )


@router.get("/backups/{config_id}/delete")
def confirm_delete(request: Request, ctx: CtxDep, user: AdminPage, config_id: str) -> Response:
    """Ask before deleting a configuration."""
    with ctx.db.session() as session:
        config = config_service.get(session, config_id)
    return render(request, "confirm_delete.html", user, config=config)


@router.post("/backups/{config_id}/delete")
def delete_config(request: Request, ctx: CtxDep, posted: AdminPost, config_id: str) -> Response:
    """Delete the configuration (its run history and stored backups stay)."""
    with ctx.db.session() as session:
        name = config_service.get(session, config_id).name
        config_service.delete(session, config_id)
    return redirect(request, "/backups", f"Deleted “{name}”. Its stored backups were kept.")


@router.post("/backups/{config_id}/run")
def run_now(request: Request, ctx: CtxDep, posted: OperatorPost, config_id: str) -> Response:
    """Queue a backup of the configuration now, and go back where the button was."""
    back = local_path(str(posted.form.get("next") or ""), f"/backups/{config_id}")
    try:
        with ctx.db.session() as session:
            config = config_service.get(session, config_id)
            run_service.enqueue(
                session, config, trigger="manual", requested_by=posted.user.username
            )
            name = config.name
    except ConflictError as exc:
        return redirect(request, back, exc.message, kind="error")
    return redirect(request, back, f"Backup of “{name}” queued.")
