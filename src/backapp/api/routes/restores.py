"""Restore, verify, browse and download: /api/backups/restore, /verify, and a backup's files."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator

from backapp.api.deps import CtxDep, OperatorDep
from backapp.api.schemas import ERROR_RESPONSES, FolderOut, RunOut
from backapp.domain.config import MAX_PATTERNS, check_text
from backapp.domain.patterns import exact_path_pattern
from backapp.domain.restore import ExistingPolicy
from backapp.services import configs as config_service
from backapp.services import restores
from backapp.services import runs as run_service
from backapp.services.context import AppContext

router = APIRouter(prefix="/api/backups", tags=["restore"], responses=ERROR_RESPONSES)


class RestoreRequest(BaseModel):
    """What to restore, and where."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    config_id: str = Field(alias="configId", min_length=1, max_length=64)
    backup_id: str = Field("latest", alias="backupId", min_length=1, max_length=64)
    target: str | None = Field(
        None, max_length=4096, description="Absolute folder; default: a new folder"
    )
    in_place: bool = Field(
        False, alias="inPlace", description="Restore to the original location (needs `existing`)"
    )
    include: list[Annotated[str, Field(max_length=4096)]] = Field(
        default_factory=list, description="gitignore-style patterns of the paths to restore"
    )
    paths: list[Annotated[str, Field(min_length=1, max_length=4096)]] = Field(
        default_factory=list,
        description="exact paths to restore (files, or folders with what is below them)",
    )
    existing: ExistingPolicy | None = Field(None, description="What to do with files already there")

    @field_validator("target", "include", "paths")
    @classmethod
    def _storable(cls, value: Any) -> Any:
        for text in value if isinstance(value, list) else [value]:
            if isinstance(text, str):
                check_text(text)
        if isinstance(value, list) and len(value) > MAX_PATTERNS:
            raise ValueError(f"must have at most {MAX_PATTERNS} items")
        return value


class VerifyRequest(BaseModel):
    """Which backup to verify, and how deeply."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    config_id: str = Field(alias="configId", min_length=1, max_length=64)
    backup_id: str = Field("latest", alias="backupId", min_length=1, max_length=64)
    full: bool = Field(False, description="Download everything and check every file's SHA-256")


def _config(ctx: AppContext, config_id: str) -> tuple[Any, str]:
    with ctx.db.session() as session:
        config = config_service.get(session, config_id)
        return config_service.document_of(config), config.slug


@router.post("/restore", status_code=202)
def restore(ctx: CtxDep, user: OperatorDep, body: RestoreRequest) -> RunOut:
    """Queue a restore of a backup (all of it, or `include`d paths); returns the restore run."""
    document, slug = _config(ctx, body.config_id)
    plan = restores.plan_restore(
        ctx,
        document,
        slug,
        backup_id=body.backup_id,
        target=body.target,
        in_place=body.in_place,
        include=[*body.include, *(exact_path_pattern(p) for p in body.paths)],
        existing=body.existing,
    )
    with ctx.db.session() as session:
        config = config_service.get(session, body.config_id)
        run = restores.enqueue_restore(session, config, plan, user.username)
        return RunOut.of(run_service.view(session, run))


@router.post("/verify", status_code=202)
def verify(ctx: CtxDep, user: OperatorDep, body: VerifyRequest) -> RunOut:
    """Queue a verification of a backup (quick, or `full`); returns the verify run."""
    document, slug = _config(ctx, body.config_id)
    backup_id = ctx.repository(document, slug).resolve(body.backup_id)
    with ctx.db.session() as session:
        config = config_service.get(session, body.config_id)
        run = restores.enqueue_verify(
            session, config, backup_id=backup_id, full=body.full, requested_by=user.username
        )
        return RunOut.of(run_service.view(session, run))


@router.get("/configs/{config_id}/backups/{backup_id}/tree")
def browse(
    ctx: CtxDep,
    user: OperatorDep,
    config_id: str,
    backup_id: str,
    path: Annotated[str, Query(max_length=4096)] = "",
) -> FolderOut:
    """The entries of one folder of a backup, read from its manifest (no archive download)."""
    document, slug = _config(ctx, config_id)
    return FolderOut.of(restores.browse(ctx, document, slug, backup_id, path))


@router.get(
    "/configs/{config_id}/backups/{backup_id}/file",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "The file's bytes, as an attachment",
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            },
        }
    },
)
def download(
    ctx: CtxDep,
    user: OperatorDep,
    config_id: str,
    backup_id: str,
    path: Annotated[str, Query(min_length=1, max_length=4096)],
) -> StreamingResponse:
    """Download one file of a backup (only the blocks holding it are read)."""
    document, slug = _config(ctx, config_id)
    entry, stream = restores.open_file(ctx, document, slug, backup_id, path)
    # The requested name, even when it is a hard link to a file stored under another.
    name = path.strip("/").rsplit("/", 1)[-1] or entry.path.rsplit("/", 1)[-1]
    return StreamingResponse(
        stream,
        media_type="application/octet-stream",
        headers={
            "Content-Disposition": f"attachment; filename*=UTF-8''{_quote(name)}",
            "Content-Length": str(entry.size),
        },
    )


def _quote(name: str) -> str:
    return quote(name, safe="")
