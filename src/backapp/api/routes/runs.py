"""Running backups and their log: /api/backups/execute and /api/backups/logs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from backapp.api.deps import CtxDep, OperatorDep, UserDep
from backapp.api.schemas import ERROR_RESPONSES, RunOut
from backapp.domain.runs import RunKind, RunStatus
from backapp.services import configs as config_service
from backapp.services import runs as run_service

router = APIRouter(prefix="/api/backups", tags=["runs"], responses=ERROR_RESPONSES)


class ExecuteRequest(BaseModel):
    """Which configuration to back up now."""

    model_config = ConfigDict(extra="forbid")
    config_id: str = Field(alias="configId", min_length=1, max_length=64)


@router.post("/execute", status_code=202)
def execute(ctx: CtxDep, user: OperatorDep, body: ExecuteRequest) -> RunOut:
    """Queue a backup of a configuration now; it runs asynchronously. Returns the run."""
    with ctx.db.session() as session:
        config = config_service.get(session, body.config_id)
        run = run_service.enqueue(session, config, trigger="manual", requested_by=user.username)
        return RunOut.of(run_service.view(session, run))


@router.get("/logs")
def list_logs(
    ctx: CtxDep,
    user: UserDep,
    config_id: Annotated[str | None, Query(alias="configId", max_length=64)] = None,
    status: Annotated[RunStatus | None, Query()] = None,
    kind: Annotated[RunKind | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> list[RunOut]:
    """Backup logs (runs), newest first."""
    with ctx.db.session() as session:
        runs = run_service.list_runs(
            session, config_id=config_id, status=status, kind=kind, limit=limit
        )
        return [RunOut.of(v) for v in run_service.views(session, runs)]


@router.get("/logs/{run_id}")
def get_log(ctx: CtxDep, user: UserDep, run_id: str) -> RunOut:
    """One run, with its metrics, error and (while running) progress."""
    with ctx.db.session() as session:
        return RunOut.of(run_service.view(session, run_service.get(session, run_id)))


@router.post("/logs/{run_id}/cancel", status_code=202)
def cancel(ctx: CtxDep, user: OperatorDep, run_id: str) -> RunOut:
    """Cancel a queued or running run (a running backup stops within seconds)."""
    with ctx.db.session() as session:
        run = run_service.request_cancel(session, run_id, user.username)
        return RunOut.of(run_service.view(session, run))
