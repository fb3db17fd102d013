"""Prune: delete the blocks that no kept backup references (mark and sweep).

Under the config's lock (it waits for a running backup to finish; backups refuse to
start while it holds the lock), so nothing writes while it decides:

1. **Mark**: read every committed format-2 backup's manifest and note every block it
   names (manifest blocks, tar headers, file data, the end). If any backup cannot be
   read — damaged, or encrypted and no key — nothing is deleted: what it references is
   not known (``PruneRefusedError``).
2. **Sweep**: a pack none of whose blocks is marked is deleted; a pack with unmarked
   blocks worth at least REPACK_UNUSED of it has its marked blocks copied, as stored
   (sealed blocks need no decryption to move), into new packs, and is deleted. Packs no
   index lists (left by runs that died before writing their index) are deleted once
   older than the grace period. Packs only checkpoint indexes list (stored by a run that
   did not commit) are kept while younger than the grace period, unused or not: the
   next backup of the config resumes from them.
3. The order keeps every step safe to interrupt: new packs, then one new index listing
   every pack that stays, then the old index objects go, then the old packs. An
   interruption leaves blocks listed twice or packs unlisted — never a block lost.

Format-1 backups keep their own objects in their folders: prune leaves them alone.
"""

from __future__ import annotations

import logging
import sqlite3
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from backapp.engine.blockstore import BlockFetcher, spool_blocks
from backapp.engine.format.blockindex import (
    BlockIndex,
    index_key,
    index_names,
    read_index_doc,
    write_index,
)
from backapp.engine.format.crypto import MasterKey
from backapp.engine.format.envelope import ENCRYPTED
from backapp.engine.format.keys import FolderKeys
from backapp.engine.format.layout import Repository
from backapp.engine.format.manifest import ManifestReader
from backapp.engine.format.packs import PACKS, BlockLocation, PackWriter, is_pack_name, pack_key
from backapp.engine.lock import RepoLock
from backapp.engine.progress import CancelToken
from backapp.errors import EncryptionKeyError, IntegrityError, PruneRefusedError
from backapp.storage import join_key

logger = logging.getLogger(__name__)

REPACK_UNUSED = 0.2  # repack a pack once this much of it holds unreferenced blocks
GRACE = timedelta(hours=1)  # unlisted packs younger than this are left alone
LOCK_WAIT = 600.0  # seconds prune waits for a running backup


@dataclass
class PruneResult:
    """What prune found and did (or, with ``dry_run``, would do)."""

    dry_run: bool
    backups: int = 0  # format-2 backups whose blocks were kept
    blocks_kept: int = 0
    blocks_removed: int = 0
    blocks_unused_left: int = 0  # in packs mostly in use (repacked once more is unused)
    packs_resumable_kept: int = 0  # an interrupted run's, younger than the grace period
    packs_removed: int = 0
    packs_repacked: int = 0
    packs_unlisted_removed: int = 0
    bytes_freed: int = 0
    bytes_repacked: int = 0
    indexes_replaced: int = 0
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        """Return the result as camelCase JSON."""
        return {
            "dryRun": self.dry_run,
            "backups": self.backups,
            "blocksKept": self.blocks_kept,
            "blocksRemoved": self.blocks_removed,
            "blocksUnusedLeft": self.blocks_unused_left,
            "resumablePacksKept": self.packs_resumable_kept,
            "packsRemoved": self.packs_removed,
            "packsRepacked": self.packs_repacked,
            "unlistedPacksRemoved": self.packs_unlisted_removed,
            "bytesFreed": self.bytes_freed,
            "bytesRepacked": self.bytes_repacked,
            "notes": self.notes,
        }


class _Marks:
    """The set of referenced block ids, on disk (a repository may hold millions)."""

    def __init__(self) -> None:
        self._file = tempfile.NamedTemporaryFile(prefix="backapp-marks-", suffix=".db")  # noqa: SIM115
        self._db = sqlite3.connect(self._file.name, isolation_level=None)
        self._db.executescript(
            "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; PRAGMA cache_size=-16384;"
            "CREATE TABLE marks (id BLOB PRIMARY KEY) WITHOUT ROWID;"
        )
        self._pending: list[tuple[bytes]] = []

    def add(self, block_id: str) -> None:
        self._pending.append((bytes.fromhex(block_id),))
        if len(self._pending) >= 10_000:
            self.flush()

    def flush(self) -> None:
        if self._pending:
            self._db.execute("BEGIN")
            self._db.executemany("INSERT OR IGNORE INTO marks VALUES (?)", self._pending)
            self._db.execute("COMMIT")
            self._pending.clear()

    def __contains__(self, block_id: object) -> bool:
        assert isinstance(block_id, str)
        return (
            self._db.execute(
                "SELECT 1 FROM marks WHERE id = ?", (bytes.fromhex(block_id),)
            ).fetchone()
            is not None
        )

    def __len__(self) -> int:
        self.flush()
        return int(self._db.execute("SELECT count(*) FROM marks").fetchone()[0])

    def close(self) -> None:
        self._db.close()
        self._file.close()


def run_prune(
    repo: Repository,
    *,
    master: MasterKey | None = None,
    dry_run: bool = False,
    grace: timedelta = GRACE,
    lock_wait: float = LOCK_WAIT,
    cancel: CancelToken | None = None,
    now: datetime | None = None,
) -> PruneResult:
    """Given a config's repository (and its key), delete the blocks no backup references;
    return what was done. Raise PruneRefusedError (a backup cannot be read: nothing is
    deleted), RepositoryLockedError (a run held the lock for ``lock_wait`` seconds),
    StorageError."""
    repo = repo.with_key(master)
    cancel = cancel or CancelToken()
    result = PruneResult(dry_run)
    with RepoLock(repo, "prune", wait=lock_wait):
        index = BlockIndex()
        marks = _Marks()
        try:
            _mark(repo, index, marks, result, cancel)
            _sweep(repo, index, marks, result, grace, now or datetime.now(UTC), cancel)
        finally:
            marks.close()
            index.close()
    logger.info(
        "prune of %s%s: %d blocks removed, %d packs removed, %d repacked, %d bytes freed",
        repo.location,
        " (dry run)" if dry_run else "",
        result.blocks_removed,
        result.packs_removed,
        result.packs_repacked,
        result.bytes_freed,
    )
    return result


def _mark(
    repo: Repository, index: BlockIndex, marks: _Marks, result: PruneResult, cancel: CancelToken
) -> None:
    problems = index.load(repo.storage, repo.base, repo.keys)
    if problems:
        name, problem = problems[0]
        raise PruneRefusedError(
            f"prune deletes nothing: index {name} cannot be read ({problem}); the blocks it "
            "lists may be in use"
        )
    for listed in repo.scan():
        cancel.raise_if_cancelled()
        info = listed.info
        if info is None:
            needs_key = listed.public is not None
            raise PruneRefusedError(
                f"prune deletes nothing: backup {listed.backup_id} cannot be read "
                f"({listed.problem}); "
                + (
                    "set BACKUP_ENCRYPTION_KEY"
                    if needs_key
                    else "forget it or repair it first, so what it references is known"
                )
            )
        if info.format_version < 2:
            continue
        assert info.manifest_blocks is not None
        for block_id, _ in info.manifest_blocks:
            marks.add(block_id)
        label = f"manifest of backup {info.backup_id}"
        fetcher = BlockFetcher(repo, index, repo.keys_for(info))
        try:
            with spool_blocks(fetcher, info.manifest_blocks, label) as spool:
                reader = ManifestReader(spool, label)
                for entry in reader:
                    if entry.header is not None:
                        marks.add(entry.header[0])
                    for block_id, _ in entry.blocks or ():
                        marks.add(block_id)
                tail = reader.read_trailer().extra.get("tail")
                if isinstance(tail, list) and tail:
                    marks.add(str(tail[0]))
        except (IntegrityError, EncryptionKeyError) as exc:
            raise PruneRefusedError(
                f"prune deletes nothing: the {label} cannot be read ({exc})"
            ) from None
        result.backups += 1
    marks.flush()
    result.blocks_kept = len(marks)


def _sweep(
    repo: Repository,
    index: BlockIndex,
    marks: _Marks,
    result: PruneResult,
    grace: timedelta,
    now: datetime,
    cancel: CancelToken,
) -> None:
    storage = repo.storage
    stored = {}
    prefix = join_key(repo.base, PACKS) + "/"
    for obj in storage.list(prefix):
        name = obj.key.rsplit("/", 1)[-1]
        if is_pack_name(name):
            stored[name] = obj
    # Every pack's listed blocks: the union of the index objects. A folder whose config
    # changed its encryption holds plain and encrypted packs: each stays listed in an index
    # of its own kind (a plain backup stays readable without the key).
    tables: dict[str, dict[str, BlockLocation]] = {}
    sealed: dict[str, bool] = {}  # pack -> listed by an encrypted index
    final: set[str] = set()  # packs a final (not a checkpoint) index lists
    old_indexes = index_names(storage, repo.base)
    for name in old_indexes:
        encrypted = b"".join(storage.get(index_key(repo.base, name), 0, 1)) == bytes([ENCRYPTED])
        doc = read_index_doc(storage, repo.base, repo.keys, name)
        for block_id, loc in doc.rows:
            tables.setdefault(loc.pack, {})[block_id] = loc
            sealed[loc.pack] = sealed.get(loc.pack, False) or encrypted
            if not doc.checkpoint:
                final.add(loc.pack)
    keep: dict[str, dict[str, BlockLocation]] = {}
    resumable: set[str] = set()  # packs of interrupted runs, kept for the next run
    drop: list[str] = []
    repack: list[str] = []
    for pack, table in tables.items():
        if pack not in stored:
            result.notes.append(f"pack {pack} is listed in the index but missing from storage")
            continue
        modified = stored[pack].modified
        if pack not in final and (modified is None or now - modified <= grace):
            keep[pack] = table  # a recent checkpoint's: the next backup resumes from it
            resumable.add(pack)
            result.packs_resumable_kept += 1
            continue
        used = {b: loc for b, loc in table.items() if b in marks}
        unused_bytes = sum(loc.length for b, loc in table.items() if b not in used)
        if not used:
            drop.append(pack)
            result.packs_removed += 1
            result.blocks_removed += len(table)
            result.bytes_freed += stored[pack].size
        elif unused_bytes >= REPACK_UNUSED * stored[pack].size:
            repack.append(pack)
            result.packs_repacked += 1
            result.blocks_removed += len(table) - len(used)
            result.bytes_freed += unused_bytes
            keep[pack] = used  # copied below into new packs
        else:
            keep[pack] = table  # its few unused blocks stay until more of it is unused
            result.blocks_unused_left += len(table) - len(used)
    unlisted = [
        name
        for name, obj in stored.items()
        if name not in tables and (obj.modified is None or now - obj.modified > grace)
    ]
    for name in unlisted:
        result.packs_unlisted_removed += 1
        result.bytes_freed += stored[name].size
    if result.dry_run:
        return
    repo.abort_unfinished()  # half-written packs of runs that died (nobody writes now)
    changed = bool(drop or repack)
    # One index per kind: encrypted or not, and a checkpoint for resumable packs.
    groups: dict[tuple[bool, bool], dict[str, dict[str, BlockLocation]]] = {}
    for pack, table in keep.items():
        groups.setdefault((sealed.get(pack, False), pack in resumable), {})[pack] = table
    for (encrypted, _), group in groups.items():
        keys = repo.keys if encrypted else FolderKeys(repo.slug)
        moving = [p for p in repack if p in group]
        if moving:
            cancel.raise_if_cancelled()
            new_tables = _repack(repo, keys, group, moving, result)
            for pack in moving:
                del group[pack]
            group.update(new_tables)
    if changed or len(old_indexes) > len(groups):
        # One index for everything that stays (one per kind), then the old ones go.
        for (encrypted, checkpoint), group in groups.items():
            keys = repo.keys if encrypted else FolderKeys(repo.slug)
            write_index(storage, repo.base, keys, group, checkpoint=checkpoint)
        for name in old_indexes:
            storage.delete(index_key(repo.base, name))
        result.indexes_replaced = len(old_indexes)
    for pack in [*drop, *repack, *unlisted]:
        cancel.raise_if_cancelled()
        storage.delete(pack_key(repo.base, pack))


def _repack(
    repo: Repository,
    keys: FolderKeys,
    keep: dict[str, dict[str, BlockLocation]],
    packs: list[str],
    result: PruneResult,
) -> dict[str, dict[str, BlockLocation]]:
    """Copy the referenced blocks of ``packs`` into new packs (their tables sealed with
    ``keys``); return the new tables."""
    written: dict[str, dict[str, BlockLocation]] = {}
    writer = PackWriter(
        repo.storage, repo.base, keys, lambda name, table: written.__setitem__(name, table)
    )
    try:
        for pack in packs:
            key = pack_key(repo.base, pack)
            for block_id, loc in sorted(keep[pack].items(), key=lambda item: item[1].offset):
                stored = b"".join(repo.storage.get(key, loc.offset, loc.offset + loc.length))
                if len(stored) != loc.length:
                    raise IntegrityError(f"pack {pack} is truncated (block {block_id[:12]}…)")
                writer.add(block_id, stored, loc.size, loc.algorithm)
                result.bytes_repacked += loc.length
        writer.flush()
    except BaseException:
        writer.abort()
        for name in written:
            repo.storage.delete(pack_key(repo.base, name))
        raise
    return {name: dict(table) for name, table in written.items()}
