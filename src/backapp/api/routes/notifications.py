"""Notification targets: /api/notifications/targets (global ones are edited here, a
config's in its ``options.notify``; BACKAPP_NOTIFY_URLS is read-only)."""

from __future__ import annotations

from fastapi import APIRouter, Response

from backapp.api.deps import AdminDep, CtxDep, UserDep
from backapp.api.schemas import (
    ERROR_RESPONSES,
    NotificationTargetIn,
    NotificationTargetOut,
    NotificationTargetPatch,
    TestMessageOut,
)
from backapp.services import notify_targets

router = APIRouter(
    prefix="/api/notifications/targets", tags=["notifications"], responses=ERROR_RESPONSES
)


@router.get("")
def list_targets(ctx: CtxDep, user: UserDep) -> list[NotificationTargetOut]:
    """Every target (the environment's, the global ones, the configs'), URLs masked; any
    user reads them, as they read configs."""
    with ctx.db.session() as session:
        targets = notify_targets.list_targets(session, ctx.settings)
    return [NotificationTargetOut.of(t) for t in targets]


@router.post("", status_code=201)
def add_target(ctx: CtxDep, user: AdminDep, body: NotificationTargetIn) -> NotificationTargetOut:
    """Add a global target: told of every config's events from now on."""
    with ctx.db.session() as session:
        target = notify_targets.add_target(session, body.url, body.events, body.label)
    return NotificationTargetOut.of(target)


@router.patch("/{target_id}")
def update_target(
    ctx: CtxDep, user: AdminDep, target_id: str, body: NotificationTargetPatch
) -> NotificationTargetOut:
    """Change a global target's URL (a new URL is told only of what happens next), events
    or label."""
    with ctx.db.session() as session:
        target = notify_targets.update_target(
            session, target_id, url=body.url, events=body.events, label=body.label
        )
    return NotificationTargetOut.of(target)


@router.delete("/{target_id}", status_code=204)
def delete_target(ctx: CtxDep, user: AdminDep, target_id: str) -> Response:
    """Remove a global target."""
    with ctx.db.session() as session:
        notify_targets.delete_target(session, target_id)
    return Response(status_code=204)


@router.post("/{target_id}/test")
def test_target(ctx: CtxDep, user: AdminDep, target_id: str) -> TestMessageOut:
    """Send a test message to a target now; an error (502) says why it was not delivered."""
    with ctx.db.session() as session:
        target = notify_targets.get_target(session, ctx.settings, target_id)
    notify_targets.send_test(target, user.username, ctx.settings.base_url)
    return TestMessageOut(delivered=True, target=target.masked)
