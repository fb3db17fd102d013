"""The parent of an incremental backup, read alongside the new scan.

Manifests list entries in archive order, and a scan yields them in the same
order, so looking a path up in the parent is a merge: the parent's manifest is
read once, front to back, never held in memory.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

from backapp.engine.blockstore import BlockFetcher, load_index, spool_blocks
from backapp.engine.format.blockindex import BlockIndex
from backapp.engine.format.crypto import MasterKey
from backapp.engine.format.layout import BackupInfo, Repository
from backapp.engine.format.manifest import Entry, ManifestReader, order_key
from backapp.engine.objects import read_object
from backapp.engine.streams import as_file
from backapp.errors import ArchiveError, BackupNotFoundError, IntegrityError, ObjectNotFoundError

logger = logging.getLogger(__name__)


def open_manifest(
    repo: Repository, info: BackupInfo, master: MasterKey | None, index: BlockIndex | None = None
) -> ManifestReader:
    """Given a backup, return a reader over its manifest, spooled locally first.

    Spooling keeps a slow consumer from holding a storage connection open. Raise
    StorageError, EncryptionKeyError, IntegrityError.
    """
    spool = spool_manifest(repo, info, master, index)
    return ManifestReader(spool, f"manifest of backup {info.backup_id}")


def spool_manifest(
    repo: Repository, info: BackupInfo, master: MasterKey | None, index: BlockIndex | None = None
) -> IO[bytes]:
    """Given a backup (and, for format 2, the folder's block index if loaded already),
    download its manifest (decrypted, still gzip'd) to a local spool file."""
    if info.format_version >= 2:
        assert info.manifest_blocks is not None
        repo = repo.with_key(master)
        label = f"manifest of backup {info.backup_id}"
        if index is not None:
            return spool_blocks(
                BlockFetcher(repo, index, repo.keys_for(info)), info.manifest_blocks, label
            )
        loaded, problems = load_index(repo)
        with loaded:
            fetcher = BlockFetcher(repo, loaded, repo.keys_for(info), index_problems=problems)
            return spool_blocks(fetcher, info.manifest_blocks, label)
    assert info.manifest is not None
    spool: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=32 * 1024 * 1024)  # noqa: SIM115
    try:
        source = as_file(
            read_object(
                repo.storage,
                repo.key(info.backup_id, info.manifest.name),
                master,
                encrypted=info.encrypted,
                name=f"manifest of backup {info.backup_id}",
            )
        )
        shutil.copyfileobj(source, spool, 1024 * 1024)
        spool.seek(0)
        return spool
    except BaseException:
        spool.close()
        raise


# Renamed or copied files are recognised by content only from this size up: hashing a new
# file before deciding costs a second read, worth it only where re-uploading costs more.
RENAME_MIN_SIZE = 64 * 1024


@dataclass(frozen=True, slots=True)
class KnownData:
    """Where a file content known by its SHA-256 is stored."""

    backup: str
    offset: int
    sparse: bool = False


class ParentCursor:
    """Walks a parent manifest in step with a scan, and knows its large files by content."""

    def __init__(self, info: BackupInfo, spool: IO[bytes]) -> None:
        self.info = info
        self._name = f"manifest of backup {info.backup_id}"
        self._index: dict[tuple[int, str], KnownData] | None = None
        self._sizes: set[int] | None = None
        self._spool = spool
        reader = ManifestReader(spool, self._name)
        self._reader = reader
        self._entries: Iterator[Entry] = iter(reader)
        self.problem: str | None = None  # set if the manifest turned out damaged mid-way
        self._last: str | None = None  # the order key of the last entry read
        # Unchanged files may point at the data of these backups only (checked to exist).
        self.data_backups = frozenset([info.backup_id, *info.requires])
        self._current: Entry | None = self._next()
        self._passed_files = 0

    def _next(self) -> Entry | None:
        try:
            entry = next(self._entries, None)
            if entry is not None:
                key = order_key(entry.path)
                if self._last is not None and key <= self._last:
                    raise ArchiveError(f"{self._name}: {entry.path!r} is out of archive order")
                self._last = key
            return entry
        except IntegrityError as exc:
            # From here on nothing is known of the parent: files are read and stored anew.
            logger.warning("parent %s: %s; the rest is stored in full", self.info.backup_id, exc)
            self.problem = str(exc)
            self._entries = iter(())
            return None

    def lookup(self, path: str) -> Entry | None:
        """Given the next scanned path, return the parent's entry for it, if any."""
        key = order_key(path)
        while self._current is not None and order_key(self._current.path) < key:
            if self._current.type != "dir":
                self._passed_files += 1  # in the parent, not in this scan: deleted
            self._current = self._next()
        if self._current is not None and self._current.path == path:
            found = self._current
            self._current = self._next()
            return found
        return None

    def remaining_files(self) -> int:
        """Return how many parent files the scan never reached (deleted since)."""
        while self._current is not None:
            if self._current.type != "dir":
                self._passed_files += 1
            self._current = self._next()
        return self._passed_files

    def may_know(self, size: int) -> bool:
        """Given the size of a new file, return whether the parent has content that size."""
        if size < RENAME_MIN_SIZE:
            return False
        if self._sizes is None:
            self._load_index()
        assert self._sizes is not None
        return size in self._sizes

    def known(self, size: int, sha256: str) -> KnownData | None:
        """Given a file's size and hash, return where the parent chain stores that content."""
        if self._index is None:
            self._load_index()
        assert self._index is not None
        return self._index.get((size, sha256))

    def _load_index(self) -> None:
        """Read the parent's large files by content, in a second pass over its manifest.

        Done only once a new large file shows up, so runs without one (the nightly
        nothing-changed run) read the parent manifest once.
        """
        index: dict[tuple[int, str], KnownData] = {}
        with tempfile.SpooledTemporaryFile(max_size=32 * 1024 * 1024) as copy:
            position = self._spool.tell()
            self._spool.seek(0)
            shutil.copyfileobj(self._spool, copy, 1024 * 1024)
            self._spool.seek(position)
            copy.seek(0)
            try:
                for entry in ManifestReader(copy, self._name):
                    if entry.type != "file" or entry.size < RENAME_MIN_SIZE or entry.partial:
                        continue
                    assert entry.sha256 is not None and entry.offset is not None
                    index[(entry.size, entry.sha256)] = KnownData(
                        entry.backup or self.info.backup_id, entry.offset, entry.sparse
                    )
            except IntegrityError as exc:
                logger.warning("parent %s: %s; renamed files are stored anew", self._name, exc)
        self._index = index
        self._sizes = {size for size, _ in index}

    def close(self) -> None:
        """Release the spooled manifest."""
        self._current = None
        self._spool.close()


def choose_parent(
    repo: Repository,
    kind: str,
    full_every: int,
    master: MasterKey | None,
    index: BlockIndex | None = None,
) -> tuple[ParentCursor | None, str]:
    """Given a config's backup type, return the parent to build on (or None) and why.

    The first backup, every ``full_every``-th one, any backup whose encryption setting
    differs from its would-be parent, and any backup after one that is damaged (its
    ``backup.json``, its manifest, or an object it or the backups it requires consist of is
    unreadable, missing or of the wrong size) are full: an incremental never builds on data
    that cannot be restored. Raise StorageError (the store is unreachable).
    """
    if kind != "incremental":
        return None, ""
    listed = repo.scan()
    if not listed:
        return None, "first backup of this config: full"
    newest = listed[-1]
    if newest.info is None:
        return _damaged(newest.backup_id, newest.problem or "unreadable")
    info = newest.info
    if info.chain + 1 >= full_every:
        return None, f"every {full_every}th backup is full"
    if info.encrypted != (master is not None):
        return None, "encryption setting changed since the last backup: full"
    if index is not None and info.format_version < 2:
        return None, "the last backup is in storage format 1: the first format-2 backup is full"
    if index is None and info.format_version >= 2:
        return None, "the last backup is in storage format 2: a format-1 backup is full"
    problem = _chain_problem(repo, info) if info.format_version < 2 else None
    if problem is not None:
        return _damaged(info.backup_id, problem)
    try:
        cursor = ParentCursor(info, spool_manifest(repo, info, master, index))
    except (IntegrityError, ObjectNotFoundError) as exc:
        return _damaged(info.backup_id, f"its manifest is unreadable ({exc})")
    return cursor, f"incremental on {info.backup_id}"


def _damaged(backup_id: str, problem: str) -> tuple[None, str]:
    logger.warning("last backup %s is damaged, making a full backup: %s", backup_id, problem)
    return None, f"last backup {backup_id} is damaged ({problem}): full"


def _chain_problem(repo: Repository, info: BackupInfo) -> str | None:
    """Given the would-be parent, return what is wrong with its objects or with those of
    the backups it requires (None: all there, at their recorded sizes)."""
    chain = [info]
    for required in info.requires:
        try:
            chain.append(repo.load(required))
        except (BackupNotFoundError, IntegrityError) as exc:
            return f"it requires backup {required}: {exc}"
    for member in chain:
        for obj in (member.data, member.manifest):
            if obj is None:
                return f"backup {member.backup_id} names no archive or manifest"
            key = repo.key(member.backup_id, obj.name)
            head = repo.storage.head(key)
            if head is None:
                return f"{key} is missing"
            if head.size != obj.size:
                return f"{key} has {head.size} bytes, {obj.size} were stored"
    return None
