"""Running backups and their log: /api/backups/execute and /api/backups/logs."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from backapp.api.deps import CtxDep, OperatorDep, UserDep
from backapp.services import configs as config_service
from backapp.services import runs as run_service

router = APIRouter(prefix="/api/backups", tags=["runs"])

Status = Literal["queued", "running", "completed", "failed", "cancelled", "skipped"]


class ExecuteRequest(BaseModel):
    """Which configuration to back up now."""

    model_config = ConfigDict(extra="forbid")
    config_id: str = Field(alias="configId", min_length=1, max_length=64)


@router.post("/execute", status_code=202)
def execute(ctx: CtxDep, user: OperatorDep, body: ExecuteRequest) -> dict[str, Any]:
    """Queue a backup of a configuration now; it runs asynchronously. Returns the run."""
    with ctx.db.session() as session:
        config = config_service.get(session, body.config_id)
        run = run_service.enqueue(session, config, trigger="manual", requested_by=user.username)
        return run_service.one_to_json(session, run)


@router.get("/logs")
def list_logs(
    ctx: CtxDep,
    user: UserDep,
    config_id: Annotated[str | None, Query(alias="configId", max_length=64)] = None,
    status: Annotated[Status | None, Query()] = None,
    kind: Annotated[Literal["backup", "restore", "verify"] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> list[dict[str, Any]]:
    """Backup logs (runs), newest first."""
    with ctx.db.session() as session:
        runs = run_service.list_runs(
            session, config_id=config_id, status=status, kind=kind, limit=limit
        )
        return run_service.many_to_json(session, runs)


@router.get("/logs/{run_id}")
def get_log(ctx: CtxDep, user: UserDep, run_id: str) -> dict[str, Any]:
    """One run, with its metrics, error and (while running) progress."""
    with ctx.db.session() as session:
        return run_service.one_to_json(session, run_service.get(session, run_id))


@router.post("/logs/{run_id}/cancel", status_code=202)
def cancel(ctx: CtxDep, user: OperatorDep, run_id: str) -> dict[str, Any]:
    """Cancel a queued or running run (a running backup stops within seconds)."""
    with ctx.db.session() as session:
        run = run_service.request_cancel(session, run_id, user.username)
        return run_service.one_to_json(session, run)
