"""Verify a backup: quick (every entry checked as restore checks it, every object there at
the size its manifest expects) or full (every block downloaded, every segment
authenticated, every file's SHA-256 recomputed).

Verify reads a backup exactly as restore does (the same Snapshot, the same plan),
so a backup passes verification only if a restore of it would succeed, and every
entry restore would refuse is reported. The result names exactly what is damaged:
the objects, and the files whose bytes are lost or wrong.
"""

from __future__ import annotations

import hashlib
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from backapp.engine.blockstore import load_index
from backapp.engine.format.blockindex import index_key
from backapp.engine.format.crypto import MasterKey
from backapp.engine.format.layout import Repository
from backapp.engine.format.manifest import Entry
from backapp.engine.format.packs import PACKS, BlockLocation, pack_key, read_table
from backapp.engine.progress import CancelToken, Progress, ProgressCallback, Throttle
from backapp.engine.restore.blockreader import BlockArchiveReader
from backapp.engine.restore.plan import RestorePlan
from backapp.engine.restore.reader import ArchiveReader
from backapp.engine.restore.snapshot import Snapshot
from backapp.errors import (
    BackappError,
    EncryptionKeyError,
    IntegrityError,
    ObjectNotFoundError,
    StorageError,
    WrongKeyError,
)
from backapp.storage import join_key


@dataclass
class VerifyResult:
    """What a verification checked, what it found damaged, and what it noticed."""

    backup_id: str
    full: bool
    objects: int = 0
    files: int = 0
    bytes: int = 0
    problems: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[tuple[str, str]] = field(default_factory=list)
    duration_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """Return whether nothing is damaged."""
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        """Return the result as a camelCase JSON object."""
        return {
            "backupId": self.backup_id,
            "mode": "full" if self.full else "quick",
            "status": "passed" if self.ok else "failed",
            "objectsChecked": self.objects,
            "filesChecked": self.files,
            "bytesChecked": self.bytes,
            "problems": [{"where": w, "message": m} for w, m in self.problems],
            "warnings": [{"where": w, "message": m} for w, m in self.warnings],
            "durationSeconds": round(self.duration_seconds, 3),
        }

    def summary(self) -> str:
        """Return a one-line account of the damage."""
        shown = "; ".join(f"{w}: {m}" for w, m in self.problems[:5])
        more = f" (and {len(self.problems) - 5} more)" if len(self.problems) > 5 else ""
        return f"{len(self.problems)} problem(s): {shown}{more}"


def run_verify(
    repo: Repository,
    backup: str,
    *,
    master: MasterKey | None = None,
    full: bool = False,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> VerifyResult:
    """Given a repository and a backup ('latest' or an id), verify it and return the result.

    Raise BackupNotFoundError (no such backup), EncryptionKeyError (encrypted, no key),
    WrongKeyError (a key that opens none of its objects), StorageError (the store is
    unreachable); damage of any kind is reported in the result.
    """
    started = time.monotonic()
    cancel = cancel or CancelToken()
    repo = repo.with_key(master)
    backup_id = repo.resolve(backup)
    result = VerifyResult(backup_id, full)
    try:
        _verify(repo, backup_id, master, result, Throttle(progress), cancel)
    finally:
        result.duration_seconds = time.monotonic() - started
    return result


def _verify(
    repo: Repository,
    backup_id: str,
    master: MasterKey | None,
    result: VerifyResult,
    report: Throttle,
    cancel: CancelToken,
) -> None:
    state = Progress(phase="verifying", counting=False)
    try:
        info = repo.load(backup_id)
    except WrongKeyError:
        raise  # nothing is known about the backup with this key: not damage
    except IntegrityError as exc:
        result.problems.append((repo.key(backup_id, "backup.json"), str(exc)))
        return
    try:
        snap = Snapshot(repo, backup_id, master, info)
    except (EncryptionKeyError, WrongKeyError):
        raise
    except (IntegrityError, ObjectNotFoundError) as exc:
        message = "object is missing" if isinstance(exc, ObjectNotFoundError) else str(exc)
        manifest = info.manifest.name if info.manifest is not None else "backup.json"
        result.problems.append((repo.key(backup_id, manifest), message))
        if info.format_version >= 2:
            _index_problems(repo, result)
        return
    with snap:
        plan = RestorePlan(None)  # the plan of a whole restore
        try:
            for entry in snap.entries():
                plan.add(entry)
            targets = snap.link_targets(plan.known_entries(snap.link_target_paths))
        except IntegrityError as exc:
            result.problems.append((snap.manifest_key, str(exc)))
            return
        plan.settle_links(targets, snap.bad_links(targets))
        result.objects += 1
        result.problems.extend(snap.problems)
        result.warnings.extend(snap.warnings)
        state.files_total = plan.file_count
        state.bytes_total = plan.byte_count
        if snap.version >= 2:
            _verify_blocks(snap, plan, result, state, report, cancel)
            state.phase = "completed"
            report(state, force=True)
            return
        _check_marker_sizes(repo, snap, result)
        # The backup's own data object is checked even when no file's data is in it.
        for source in sorted(plan.sources | {None}, key=lambda s: s or ""):
            cancel.raise_if_cancelled()
            files = list(plan.files_from(snap.entries() if plan.kept is None else (), source))
            _verify_source(snap, source, files, result, state, report, cancel)
    state.phase = "completed"
    report(state, force=True)


def _verify_blocks(
    snap: Snapshot,
    plan: RestorePlan,
    result: VerifyResult,
    state: Progress,
    report: Throttle,
    cancel: CancelToken,
) -> None:
    """Format 2. Quick: every block the backup names is listed in the folder's index, in a
    pack storage holds. Full: every block read, opened and checked, every file's SHA-256."""
    index = snap.index
    assert index is not None
    for name, problem in snap.index_problems:
        result.warnings.append((index_key(snap.repo.base, name), problem))
    files = list(plan.files_from(snap.entries() if plan.kept is None else (), None))
    extra: list[tuple[str, int]] = []
    for entry in snap.entries():
        if entry.header is not None:
            extra.append(entry.header)
    tail = snap.trailer.extra.get("tail")
    if isinstance(tail, list) and len(tail) == 2:
        extra.append((str(tail[0]), int(tail[1])))
    archive = snap.archive(None)
    assert isinstance(archive, BlockArchiveReader)
    if not result.full:
        prefix = join_key(snap.repo.base, PACKS) + "/"
        stored = {obj.key.rsplit("/", 1)[-1] for obj in snap.repo.storage.list(prefix)}
        packs: set[str] = set()
        for entry in files:
            result.files += 1
            cancel.raise_if_cancelled()
            for block_id, _ in entry.blocks or []:
                loc = index.get(block_id)
                if loc is None or loc.pack not in stored:
                    result.problems.append((entry.path, _lost(block_id, loc)))
                    break
                packs.add(loc.pack)
        for block_id, _ in extra:
            loc = index.get(block_id)
            if loc is None or loc.pack not in stored:
                result.problems.append((archive.key, f"tar header {_lost(block_id, loc)}"))
        result.objects += len(packs)
        return
    _verify_data(archive, files, result, state, report, cancel)
    for block_id, message in archive.check(extra):
        result.problems.append((archive.key, f"tar header block {block_id[:12]}…: {message}"))
    _verify_pack_tables(snap, files, extra, result)


def _verify_pack_tables(
    snap: Snapshot, files: list[Entry], extra: list[tuple[str, int]], result: VerifyResult
) -> None:
    """Full: every pack holding a block of the backup has a table that opens and lists the
    block where the index says it lies (a table is what a rebuilt index would be read
    from)."""
    index = snap.index
    assert index is not None
    wanted: dict[str, set[str]] = {}
    refs = [*(b for e in files for b in e.blocks or ()), *extra, *(snap.info.manifest_blocks or ())]
    for block_id, _ in refs:
        loc = index.get(block_id)
        if loc is not None:
            wanted.setdefault(loc.pack, set()).add(block_id)
    keys = snap.repo.keys_for(snap.info)
    for pack, blocks in sorted(wanted.items()):
        key = pack_key(snap.repo.base, pack)
        head = snap.repo.storage.head(key)
        if head is None:
            continue  # named already, by the blocks that could not be read
        result.objects += 1
        try:
            table = read_table(snap.repo.storage, snap.repo.base, keys, pack, head.size)
        except IntegrityError as exc:
            result.problems.append((key, str(exc)))
            continue
        for block_id in sorted(blocks):
            if table.get(block_id) != index.get(block_id):
                result.problems.append(
                    (key, f"its table does not list block {block_id[:12]}… where the index does")
                )
                break


def _index_problems(repo: Repository, result: VerifyResult) -> None:
    """Name the index objects that cannot be read (the manifest's blocks were not found)."""
    index, problems = load_index(repo)
    index.close()
    for name, problem in problems:
        result.problems.append((index_key(repo.base, name), problem))


def _lost(block_id: str, loc: BlockLocation | None) -> str:
    if loc is None:
        return f"block {block_id[:12]}… is in no pack of this config"
    return f"block {block_id[:12]}… is in pack {loc.pack}, which is missing"


def _check_marker_sizes(repo: Repository, snap: Snapshot, result: VerifyResult) -> None:
    """backup.json's sizes are not what restore goes by (the manifest and storage are):
    a difference is noted, not counted as damage."""
    assert snap.info.manifest is not None
    head = repo.storage.head(snap.manifest_key)
    if head is not None and head.size != snap.info.manifest.size:
        result.warnings.append(
            (
                repo.key(snap.backup_id, "backup.json"),
                f"records {snap.info.manifest.size} bytes for the manifest, which has {head.size}",
            )
        )


def _verify_source(
    snap: Snapshot,
    source: str | None,
    files: list[Entry],
    result: VerifyResult,
    state: Progress,
    report: Throttle,
    cancel: CancelToken,
) -> None:
    where = source or snap.backup_id
    archive: ArchiveReader | None = None
    key = snap.repo.key(where, "backup.json")
    try:
        data = snap.source(source).data
        assert data is not None
        key = snap.repo.key(where, data.name)
        opened = snap.archive(source)
        assert isinstance(opened, ArchiveReader)
        archive = opened
    except (StorageError, EncryptionKeyError) as exc:
        if not isinstance(exc, ObjectNotFoundError):
            raise  # the store is unreachable, or no key: nothing is known about the backup
        problem = "object is missing"
    except BackappError as exc:
        problem = str(exc)
    result.objects += 1
    if archive is None:
        result.problems.append((key, problem))
        for entry in files:
            result.problems.append((entry.path, f"its data in backup {where} cannot be read"))
        return
    key = archive.key
    assert archive.info.data is not None
    if archive.info.data.size != archive.object_size:
        result.warnings.append(
            (
                snap.repo.key(where, "backup.json"),
                f"records {archive.info.data.size} bytes for {archive.info.data.name}, "
                f"which has {archive.object_size}",
            )
        )
    for note in archive.notes:
        result.problems.append((key, note))
    if not result.full:
        _check_bounds(archive, files, result)
        return
    _verify_data(archive, files, result, state, report, cancel)


def _check_bounds(archive: ArchiveReader, files: list[Entry], result: VerifyResult) -> None:
    """Quick: every file's data lies within the archive (its bytes are not read)."""
    for entry in files:
        result.files += 1
        if (entry.offset or 0) + entry.size > archive.tar_size:
            result.problems.append((entry.path, f"its data lies beyond the end of {archive.name}"))


def _verify_data(
    archive: ArchiveReader | BlockArchiveReader,
    files: list[Entry],
    result: VerifyResult,
    state: Progress,
    report: Throttle,
    cancel: CancelToken,
) -> None:
    """Read a backup's whole archive, authenticating it and checking each file's hash."""
    digests: dict[int, Any] = {}
    damaged: dict[int, str] = {}
    seen: dict[int, int] = defaultdict(int)
    by_id = {id(e): e for e in files}
    files.sort(key=lambda e: e.offset or 0)  # one sequential pass over the archive
    for piece in archive.pieces(files, whole=True):
        ident = id(piece.entry)
        if piece.error is not None:
            damaged.setdefault(ident, piece.error)
            seen[ident] += piece.lost
        else:
            digests.setdefault(ident, hashlib.sha256()).update(piece.data)
            seen[ident] += len(piece.data)
            state.bytes_done += len(piece.data)
        if seen[ident] >= piece.entry.size:
            _settle(
                piece.entry, digests.pop(ident, hashlib.sha256()), damaged.pop(ident, None), result
            )
            state.files_done += 1
            cancel.raise_if_cancelled()
            report(state)
    for ident in set(digests) | set(damaged):
        entry = by_id[ident]
        _settle(entry, digests.get(ident, hashlib.sha256()), damaged.get(ident), result)
    for index, message in archive.damaged_blocks:
        if isinstance(archive, BlockArchiveReader):
            continue  # format 2: the message names the block and its pack already
        result.problems.append((archive.key, f"block {index}: {message}"))


def _settle(entry: Entry, digest: Any, damage: str | None, result: VerifyResult) -> None:
    result.files += 1
    result.bytes += entry.size
    if damage is not None:
        result.problems.append((entry.path, f"data is damaged: {damage}"))
    elif digest.hexdigest() != entry.sha256:
        result.problems.append((entry.path, "content does not match its SHA-256"))
