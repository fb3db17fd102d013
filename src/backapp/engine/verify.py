"""Verify a backup: quick (every object there, right size, manifest readable) or full
(every block downloaded, every segment authenticated, every file's SHA-256 recomputed).

The result names exactly what is damaged: the objects, and the files whose
bytes are lost or wrong.
"""

from __future__ import annotations

import hashlib
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from backapp.engine.crypto import MasterKey
from backapp.engine.layout import BackupInfo, Repository
from backapp.engine.manifest import Entry, Trailer
from backapp.engine.parent import open_manifest
from backapp.engine.progress import CancelToken, Progress, ProgressCallback, Throttle
from backapp.engine.reader import ArchiveReader
from backapp.errors import (
    BackappError,
    BackupNotFoundError,
    EncryptionKeyError,
    IntegrityError,
    ObjectNotFoundError,
)


@dataclass
class VerifyResult:
    """What a verification checked and what it found damaged."""

    backup_id: str
    full: bool
    objects: int = 0
    files: int = 0
    bytes: int = 0
    problems: list[tuple[str, str]] = field(default_factory=list)
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
    StorageError (the store is unreachable); damage is reported in the result.
    """
    started = time.monotonic()
    cancel = cancel or CancelToken()
    backup_id = repo.resolve(backup)
    result = VerifyResult(backup_id, full)
    report = Throttle(progress)
    state = Progress(phase="verifying", counting=False)
    try:
        info = repo.load(backup_id)
    except IntegrityError as exc:
        result.problems.append((repo.key(backup_id, "backup.json"), str(exc)))
        return result
    if info.encrypted and master is None:
        raise EncryptionKeyError(
            f"backup {backup_id} is encrypted: set BACKUP_ENCRYPTION_KEY to verify it"
        )
    chain = _load_chain(repo, info, result)
    intact = {b.backup_id: _check_objects(repo, b, result) for b in chain.values()}
    trailers = {
        b.backup_id: _read_trailer(repo, b, master, result)
        for b in chain.values()
        if intact[b.backup_id] and b.backup_id != backup_id
    }
    read = _read_entries(repo, info, master, result)  # its own manifest: read once
    if read is None:
        result.duration_seconds = time.monotonic() - started
        return result
    entries, own_trailer = read
    if intact[backup_id]:
        trailers[backup_id] = own_trailer
    by_source: dict[str, list[Entry]] = defaultdict(list)
    for entry in entries:
        if entry.type != "file":
            continue
        source = entry.backup or backup_id
        if source not in chain:
            result.problems.append(
                (entry.path, f"its data is in backup {source}, which is missing")
            )
            continue
        by_source[source].append(entry)
        state.files_total += 1
        state.bytes_total += entry.size
    if full:
        for source, files in by_source.items():
            trailer = trailers.get(source)
            if trailer is None:
                for entry in files:
                    result.problems.append(
                        (entry.path, f"its data in backup {source} is unreadable")
                    )
                continue
            cancel.raise_if_cancelled()
            _verify_data(repo, chain[source], trailer, files, master, result, state, report, cancel)
    else:
        result.files = sum(len(f) for f in by_source.values())
    result.duration_seconds = time.monotonic() - started
    state.phase = "completed"
    report(state, force=True)
    return result


def _load_chain(repo: Repository, info: BackupInfo, result: VerifyResult) -> dict[str, BackupInfo]:
    chain = {info.backup_id: info}
    for required in info.requires:
        try:
            chain[required] = repo.load(required)
        except (BackupNotFoundError, IntegrityError) as exc:
            result.problems.append((repo.key(required, "backup.json"), str(exc)))
    return chain


def _check_objects(repo: Repository, info: BackupInfo, result: VerifyResult) -> bool:
    """Check a backup's objects exist with their recorded sizes; return whether they do."""
    intact = True
    for obj in (info.data, info.manifest):
        key = repo.key(info.backup_id, obj.name)
        head = repo.storage.head(key)
        result.objects += 1
        if head is None:
            result.problems.append((key, "object is missing"))
            intact = False
        elif head.size != obj.size:
            result.problems.append(
                (key, f"object has {head.size} bytes, backup.json records {obj.size} (truncated?)")
            )
            intact = False
    return intact


def _read_trailer(
    repo: Repository, info: BackupInfo, master: MasterKey | None, result: VerifyResult
) -> Trailer | None:
    """Return a backup's block table from its manifest (None, with the problem, if unreadable)."""
    try:
        return open_manifest(repo, info, master).read_trailer()
    except (IntegrityError, ObjectNotFoundError) as exc:
        result.problems.append((repo.key(info.backup_id, info.manifest.name), str(exc)))
        return None


def _read_entries(
    repo: Repository, info: BackupInfo, master: MasterKey | None, result: VerifyResult
) -> tuple[list[Entry], Trailer | None] | None:
    try:
        reader = open_manifest(repo, info, master)
        entries = list(reader)
    except (IntegrityError, ObjectNotFoundError) as exc:
        key = repo.key(info.backup_id, info.manifest.name)
        if not any(w == key for w, _ in result.problems):
            result.problems.append((key, str(exc)))
        return None
    trailer = reader.trailer
    if trailer is not None and trailer.entries != len(entries):
        result.problems.append(
            (
                repo.key(info.backup_id, info.manifest.name),
                f"manifest lists {len(entries)} entries, its end record says {trailer.entries}",
            )
        )
    return entries, trailer


def _verify_data(
    repo: Repository,
    info: BackupInfo,
    trailer: Trailer,
    files: list[Entry],
    master: MasterKey | None,
    result: VerifyResult,
    state: Progress,
    report: Throttle,
    cancel: CancelToken,
) -> None:
    """Read a backup's whole archive, authenticating it and checking each file's hash."""
    key = repo.key(info.backup_id, info.data.name)
    try:
        archive = ArchiveReader(repo, info, trailer, master)
    except BackappError as exc:
        result.problems.append((key, str(exc)))
        for entry in files:
            result.problems.append((entry.path, "its data cannot be read (see the archive)"))
        return
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
        result.problems.append((key, f"block {index}: {message}"))


def _settle(entry: Entry, digest: Any, damage: str | None, result: VerifyResult) -> None:
    result.files += 1
    result.bytes += entry.size
    if damage is not None:
        result.problems.append((entry.path, f"data is damaged: {damage}"))
    elif digest.hexdigest() != entry.sha256:
        result.problems.append((entry.path, "content does not match its SHA-256"))
