"""Restores and verifications as runs, and reading a backup without restoring it:
browsing its file tree from the manifest and downloading single files.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from backapp.db import Config, Run, Session, utcnow
from backapp.domain.config import BackupConfig
from backapp.engine.manifest import Entry
from backapp.engine.reader import ArchiveReader
from backapp.engine.snapshot import Snapshot
from backapp.errors import ConfigError, IntegrityError, NotFoundError
from backapp.services import runs as run_service
from backapp.services.context import AppContext

EXISTING = ("refuse", "overwrite", "skip", "keep-both")


@dataclass(frozen=True)
class RestorePlan:
    """A validated restore request."""

    backup_id: str
    target: str
    include: list[str]
    existing: str
    in_place: bool


def plan_restore(
    ctx: AppContext,
    config: BackupConfig,
    slug: str,
    *,
    backup_id: str = "latest",
    target: str | None = None,
    in_place: bool = False,
    include: list[str] | None = None,
    existing: str | None = None,
) -> RestorePlan:
    """Given a restore request, check it and resolve 'latest'. Raise ConfigError, NotFoundError.

    By default a restore goes to a new folder under the data directory; restoring to the
    original location needs ``in_place`` and an explicit ``existing`` policy.
    """
    problems = []
    if in_place and target:
        problems.append(("target", "give a target folder or inPlace, not both"))
    if in_place and existing not in ("overwrite", "skip", "keep-both"):
        problems.append(
            ("existing", "restoring to the original location needs overwrite, skip or keep-both")
        )
    if target is not None and not target.startswith("/"):
        problems.append(("target", "must be an absolute path"))
    if existing is not None and existing not in EXISTING:
        problems.append(("existing", f"must be one of {', '.join(EXISTING)}"))
    if problems:
        raise ConfigError(
            "invalid restore: " + "; ".join(f"{f}: {m}" for f, m in problems), problems
        )
    resolved = ctx.repository(config, slug).resolve(backup_id)
    if in_place:
        where = "/"
    elif target:
        where = target
    else:
        stamp = utcnow().strftime("%Y%m%dT%H%M%SZ")
        where = str((ctx.settings.data_dir / "restores" / slug / f"{resolved}-{stamp}").absolute())
    return RestorePlan(resolved, where, list(include or []), existing or "refuse", in_place)


def enqueue_restore(
    session: Session, config: Config, plan: RestorePlan, requested_by: str | None
) -> Run:
    """Given a checked restore plan, queue it as a restore run."""
    request = {
        "backupId": plan.backup_id,
        "target": plan.target,
        "include": plan.include,
        "existing": plan.existing,
        "inPlace": plan.in_place,
    }
    return run_service.enqueue(
        session, config, kind="restore", requested_by=requested_by, request=request
    )


def enqueue_verify(
    session: Session,
    config: Config,
    *,
    backup_id: str = "latest",
    full: bool = False,
    trigger: str = "manual",
    scheduled_for: datetime | None = None,
    requested_by: str | None = None,
) -> Run:
    """Given a config, queue a verification of one of its backups."""
    return run_service.enqueue(
        session,
        config,
        kind="verify",
        trigger=trigger,
        scheduled_for=scheduled_for,
        requested_by=requested_by,
        request={"backupId": backup_id, "full": full},
    )


def _entries(
    ctx: AppContext, config: BackupConfig, slug: str, backup_id: str
) -> tuple[str, list[Entry]]:
    repo = ctx.repository(config, slug)
    resolved = repo.resolve(backup_id)
    with Snapshot(repo, resolved, ctx.master_key(required=False)) as snap:
        return resolved, list(snap.entries())


def browse(
    ctx: AppContext, config: BackupConfig, slug: str, backup_id: str, path: str = ""
) -> dict[str, Any]:
    """Given a backup and a folder path in it, return that folder's entries (from the manifest).

    Folders above the sources (e.g. ``home`` for ``/home/me``) are listed too.
    """
    resolved, entries = _entries(ctx, config, slug, backup_id)
    prefix = path.strip("/")
    depth = len(prefix.split("/")) if prefix else 0
    children: dict[str, dict[str, Any]] = {}
    found = not prefix
    for entry in entries:
        if entry.path == prefix:
            found = True
            continue
        if prefix and not entry.path.startswith(prefix + "/"):
            continue
        found = True
        parts = entry.path.split("/")
        name = parts[depth]
        child_path = "/".join(parts[: depth + 1])
        if len(parts) == depth + 1:
            children[name] = _entry_json(entry, name)
        else:
            children.setdefault(name, {"name": name, "path": child_path, "type": "dir"})
    if not found:
        raise NotFoundError(f"{path!r} is not in backup {resolved}")
    listing = sorted(children.values(), key=lambda e: (e["type"] != "dir", e["name"]))
    return {"backupId": resolved, "path": prefix, "entries": listing}


def _entry_json(entry: Entry, name: str) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "name": name,
        "path": entry.path,
        "type": entry.type,
        "mode": f"{entry.mode:04o}",
        "mtime": datetime.fromtimestamp(entry.mtime_ns / 1e9, tz=UTC).isoformat(),
    }
    if entry.type == "file":
        doc["size"] = entry.size
    if entry.target is not None:
        doc["target"] = entry.target
    return doc


def open_file(
    ctx: AppContext, config: BackupConfig, slug: str, backup_id: str, path: str
) -> tuple[Entry, Iterator[bytes]]:
    """Given a backup and a file path in it, return the entry and a stream of its bytes.

    Only the blocks holding that file are downloaded. The stream raises IntegrityError if
    the data is damaged or does not match its SHA-256.
    """
    repo = ctx.repository(config, slug)
    resolved = repo.resolve(backup_id)
    wanted = path.strip("/")
    with Snapshot(repo, resolved, ctx.master_key(required=False)) as snap:  # read locally
        entry = next((e for e in snap.entries() if e.path == wanted), None)
        if entry is not None and entry.type == "hardlink":
            target = entry.target  # a hard link: the data is its first path's
            entry = next((e for e in snap.entries() if e.path == target), None)
        if entry is None or entry.type != "file":
            raise NotFoundError(f"no file {path!r} in backup {resolved}")
        reader = snap.archive(entry.backup)
    return entry, _checked(reader, entry)


def _checked(reader: ArchiveReader, entry: Entry) -> Iterator[bytes]:
    digest = hashlib.sha256()
    for piece in reader.pieces([entry]):
        if piece.error is not None:
            raise IntegrityError(f"{entry.path}: {piece.error}")
        digest.update(piece.data)
        if piece.data:
            yield bytes(piece.data)
    if digest.hexdigest() != entry.sha256:
        raise IntegrityError(f"{entry.path}: content does not match its SHA-256")
