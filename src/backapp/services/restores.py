"""Restores and verifications as runs, and reading a backup without restoring it:
browsing its file tree from the manifest and downloading single files.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from backapp.db import Config, Run, Session, utcnow
from backapp.domain.config import BackupConfig
from backapp.domain.restore import ExistingPolicy, RestoreRequest, VerifyRequest
from backapp.engine.format.manifest import Entry
from backapp.engine.restore.blockreader import BlockArchiveReader
from backapp.engine.restore.reader import ArchiveReader
from backapp.engine.restore.snapshot import Snapshot
from backapp.errors import IntegrityError, NotFoundError
from backapp.services import runs as run_service
from backapp.services.context import AppContext


def plan_restore(
    ctx: AppContext,
    config: BackupConfig,
    slug: str,
    *,
    backup_id: str = "latest",
    target: str | None = None,
    in_place: bool = False,
    include: list[str] | None = None,
    existing: ExistingPolicy | None = None,
) -> RestoreRequest:
    """Given a restore request, check it and resolve 'latest'. Raise ConfigError, NotFoundError.

    By default a restore goes to a new folder, chosen by the worker that writes it;
    restoring to the original location needs ``in_place`` and an explicit ``existing``.
    """
    checked = RestoreRequest.checked(
        backup_id=backup_id,
        target=target,
        in_place=in_place,
        include=include or [],
        existing=existing,
    )
    resolved = ctx.repository(config, slug).resolve(backup_id)
    return replace(checked, backup_id=resolved)


def new_restore_folder(data_dir: Path, slug: str, backup_id: str) -> Path:
    """Given the worker's data directory, a config's folder and a backup id, return the new
    folder a restore without a target goes to: ``{data}/restores/{slug}/{id}-{time}``."""
    stamp = utcnow().strftime("%Y%m%dT%H%M%SZ")
    return (data_dir / "restores" / slug / f"{backup_id}-{stamp}").absolute()


def enqueue_restore(
    session: Session, config: Config, request: RestoreRequest, requested_by: str | None
) -> Run:
    """Given a checked restore request, queue it as a restore run."""
    return run_service.enqueue(
        session, config, kind="restore", requested_by=requested_by, request=request.to_json()
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
        request=VerifyRequest(backup_id, full).to_json(),
    )


def _entries(
    ctx: AppContext, config: BackupConfig, slug: str, backup_id: str
) -> tuple[str, list[Entry]]:
    repo = ctx.repository(config, slug)
    resolved = repo.resolve(backup_id)
    with Snapshot(repo, resolved, ctx.master_key(required=False)) as snap:
        return resolved, list(snap.entries())


@dataclass(frozen=True)
class TreeEntry:
    """One entry of a folder of a backup. A folder known only from the paths below it
    (one above the sources, e.g. ``home`` for ``/home/me``) has no mode or mtime."""

    name: str
    path: str
    type: str  # "file" | "dir" | "symlink" | "hardlink"
    mode: int | None = None  # permission bits
    mtime: datetime | None = None
    size: int | None = None  # files only
    target: str | None = None  # what a symlink or hard link points to

    @classmethod
    def of(cls, entry: Entry, name: str) -> TreeEntry:
        """Given a manifest entry and its name in its folder, return its tree entry."""
        return cls(
            name=name,
            path=entry.path,
            type=entry.type,
            mode=entry.mode,
            mtime=datetime.fromtimestamp(entry.mtime_ns / 1e9, tz=UTC),
            size=entry.size if entry.type == "file" else None,
            target=entry.target,
        )


@dataclass(frozen=True)
class Folder:
    """A folder of a backup: its path (no leading '/') and its entries, folders first."""

    backup_id: str
    path: str
    entries: list[TreeEntry]


def browse(
    ctx: AppContext, config: BackupConfig, slug: str, backup_id: str, path: str = ""
) -> Folder:
    """Given a backup and a folder path in it, return that folder's entries (from the manifest).

    Folders above the sources (e.g. ``home`` for ``/home/me``) are listed too.
    Raise NotFoundError, BackupNotFoundError.
    """
    resolved, entries = _entries(ctx, config, slug, backup_id)
    prefix = path.strip("/")
    depth = len(prefix.split("/")) if prefix else 0
    children: dict[str, TreeEntry] = {}
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
        if len(parts) == depth + 1:
            children[name] = TreeEntry.of(entry, name)
        else:
            children.setdefault(name, TreeEntry(name, "/".join(parts[: depth + 1]), "dir"))
    if not found:
        raise NotFoundError(f"{path!r} is not in backup {resolved}")
    listing = sorted(children.values(), key=lambda e: (e.type != "dir", e.name))
    return Folder(resolved, prefix, listing)


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
    snap = Snapshot(repo, resolved, ctx.master_key(required=False))  # read locally
    try:
        entry = next((e for e in snap.entries() if e.path == wanted), None)
        if entry is not None and entry.type == "hardlink":
            target = entry.target  # a hard link: the data is its first path's
            entry = next((e for e in snap.entries() if e.path == target), None)
        if entry is None or entry.type != "file":
            raise NotFoundError(f"no file {path!r} in backup {resolved}")
        reader = snap.archive(entry.backup)
    except BaseException:
        snap.close()
        raise
    return entry, _closing(snap, _checked(reader, entry))


def _closing(snap: Snapshot, chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Yield the chunks, then release the snapshot (its block index lives until the
    stream ends: format 2 reads blocks through it)."""
    try:
        yield from chunks
    finally:
        snap.close()


def _checked(reader: ArchiveReader | BlockArchiveReader, entry: Entry) -> Iterator[bytes]:
    digest = hashlib.sha256()
    for piece in reader.pieces([entry]):
        if piece.error is not None:
            raise IntegrityError(f"{entry.path}: {piece.error}")
        digest.update(piece.data)
        if piece.data:
            yield bytes(piece.data)
    if digest.hexdigest() != entry.sha256:
        raise IntegrityError(f"{entry.path}: content does not match its SHA-256")
