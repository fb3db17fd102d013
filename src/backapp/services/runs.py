"""Runs: the queue of backups (and restores, verifications), their lifecycle and their log."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from backapp.db import Config, Run, Session, utcnow
from backapp.db.repositories import runs as repo
from backapp.domain import runs as run_states
from backapp.errors import ConflictError, DuplicateRunError, NotFoundError
from backapp.services import configs as config_service

TERMINAL = run_states.TERMINAL


@dataclass(frozen=True)
class RunView:
    """A run as the API and the pages show it: its row, and whether its config still exists."""

    run: Run
    config_exists: bool

    @property
    def progress(self) -> dict[str, Any] | None:
        """The run's progress document while it runs (None before and after)."""
        return self.run.progress if self.run.status == "running" else None

    @property
    def details(self) -> dict[str, Any]:
        """What the run's result recorded (empty until it has one)."""
        return self.run.details or {}


def views(session: Session, runs: list[Run]) -> list[RunView]:
    """Given runs, return their views (marking those whose config was deleted)."""
    alive = config_service.existing_ids(session, {r.config_id for r in runs})
    return [RunView(r, r.config_id in alive) for r in runs]


def view(session: Session, run: Run) -> RunView:
    """Given a run, return its view."""
    return views(session, [run])[0]


def get(session: Session, run_id: str) -> Run:
    """Given an id, return the run. Raise NotFoundError."""
    run = repo.get(session, run_id)
    if run is None:
        raise NotFoundError(f"run {run_id} not found")
    return run


def list_runs(
    session: Session,
    *,
    config_id: str | None = None,
    status: str | None = None,
    kind: str | None = None,
    limit: int = 50,
) -> list[Run]:
    """Return runs, newest first."""
    return repo.list_runs(session, config_id=config_id, status=status, kind=kind, limit=limit)


def enqueue(
    session: Session,
    config: Config,
    *,
    trigger: str = "manual",
    kind: str = "backup",
    scheduled_for: datetime | None = None,
    requested_by: str | None = None,
    request: dict[str, Any] | None = None,
) -> Run:
    """Given a config, queue a run of it and return the run.

    Raise ConflictError if the config already has a queued or running run of that kind.
    """
    document = config_service.document_of(config)
    run = Run(
        config_id=config.id,
        config_name=config.name,
        kind=kind,
        trigger=trigger,
        type=document.options.type,
        status="queued",
        scheduled_for=scheduled_for,
        queued_at=utcnow(),
        requested_by=requested_by,
        request=request,
    )
    try:
        repo.add(session, run)
    except DuplicateRunError as exc:
        active = repo.active_for(session, config.id, kind)
        if active is not None:
            raise ConflictError(
                f"'{config.name}' already has a {kind} run {active.status} ({active.id})"
            ) from exc
        raise ConflictError(f"a run for this fire time already exists ({exc})") from exc
    return run


def record_skipped(
    session: Session, config: Config, scheduled_for: datetime, reason: str, kind: str = "backup"
) -> Run | None:
    """Given a scheduled fire that cannot run, record it as a skipped run (once per fire)."""
    document = config_service.document_of(config)
    now = utcnow()
    run = Run(
        config_id=config.id,
        config_name=config.name,
        kind=kind,
        trigger="scheduled",
        type=document.options.type,
        status="skipped",
        scheduled_for=scheduled_for,
        queued_at=now,
        completed_at=now,
        error=reason,
    )
    try:
        repo.add(session, run)
    except DuplicateRunError:
        return None  # another scheduler recorded this fire already
    return run


def request_cancel(session: Session, run_id: str, username: str | None = None) -> Run:
    """Given a run, cancel it: at once if queued, within seconds if running.

    Raise NotFoundError, ConflictError (already finished).
    """
    run = get(session, run_id)
    if run.status == "queued":
        now = utcnow()
        run.status = "cancelled"
        run.completed_at = now
        run.error = f"cancelled before it started{f' by {username}' if username else ''}"
    elif run.status == "running":
        run.cancel_requested = True
        run.details = {**(run.details or {}), "cancelledBy": username}
    else:
        raise ConflictError(f"run {run_id} already finished ({run.status})")
    session.flush()
    return run
