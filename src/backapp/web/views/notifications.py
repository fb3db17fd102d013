"""Notification targets, /settings/notifications (admins): add, edit, remove, test."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from backapp.domain.config import NOTIFY_EVENTS
from backapp.errors import ConfigError, NotFoundError, TransportError
from backapp.services import configs as config_service
from backapp.services import notify_targets
from backapp.web.rendering import redirect, render
from backapp.web.routing import WebRoute
from backapp.web.security import AdminPage, AdminPost, CtxDep, Posted

router = APIRouter(route_class=WebRoute, include_in_schema=False)

PAGE = "/settings/notifications"
EVENT_LABELS = {
    "failure": "a run fails",
    "recovered": "it works again",
    "missed": "a backup is missed or overdue",
    "success": "every backup completes",
}


def _events(posted: Posted) -> list[str]:
    return [e for e in NOTIFY_EVENTS if posted.form.get(f"event-{e}") is not None]


def _text(posted: Posted, name: str) -> str:
    value = posted.form.get(name, "")
    return value if isinstance(value, str) else ""


@router.get(PAGE)
def page(request: Request, ctx: CtxDep, user: AdminPage) -> Response:
    """List every target (URLs masked), with forms to add, edit, remove and test them."""
    with ctx.db.session() as session:
        targets = notify_targets.list_targets(session, ctx.settings)
        names = {c.id: c.name for c in config_service.list_all(session)}
    return render(
        request,
        "notifications.html",
        user,
        targets=targets,
        config_names=names,
        events=EVENT_LABELS,
        base_url=ctx.settings.base_url,
    )


@router.post(PAGE)
def add(request: Request, ctx: CtxDep, posted: AdminPost) -> Response:
    """Add a global target."""
    try:
        with ctx.db.session() as session:
            target = notify_targets.add_target(
                session, _text(posted, "url"), _events(posted), _text(posted, "label")
            )
    except ConfigError as exc:
        return redirect(request, PAGE, exc.message, kind="error")
    return redirect(request, PAGE, f"Added {target.masked}.")


@router.post(PAGE + "/{target_id}")
def edit(request: Request, ctx: CtxDep, posted: AdminPost, target_id: str) -> Response:
    """Change a global target (a blank URL keeps it)."""
    try:
        with ctx.db.session() as session:
            target = notify_targets.update_target(
                session,
                target_id,
                url=_text(posted, "url"),
                events=_events(posted),
                label=_text(posted, "label"),
            )
    except (ConfigError, NotFoundError) as exc:
        return redirect(request, PAGE, exc.message, kind="error")
    return redirect(request, PAGE, f"Saved {target.masked}.")


@router.post(PAGE + "/{target_id}/delete")
def remove(request: Request, ctx: CtxDep, posted: AdminPost, target_id: str) -> Response:
    """Remove a global target."""
    try:
        with ctx.db.session() as session:
            notify_targets.delete_target(session, target_id)
    except (ConfigError, NotFoundError) as exc:
        return redirect(request, PAGE, exc.message, kind="error")
    return redirect(request, PAGE, "Target removed.")


@router.post(PAGE + "/{target_id}/test")
def test(request: Request, ctx: CtxDep, posted: AdminPost, target_id: str) -> Response:
    """Send a test message to a target now and say whether it was delivered."""
    try:
        with ctx.db.session() as session:
            target = notify_targets.get_target(session, ctx.settings, target_id)
        notify_targets.send_test(target, posted.user.username, ctx.settings.base_url)
    except (NotFoundError, TransportError) as exc:
        return redirect(request, PAGE, f"Test message not delivered: {exc}", kind="error")
    return redirect(request, PAGE, f"Test message delivered to {target.masked}.")
