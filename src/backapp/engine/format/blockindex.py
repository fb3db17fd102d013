"""Which blocks a config folder holds, and where: index objects in storage, and a local
lookup on disk so that a repository of millions of blocks needs little memory.

    {prefix}/{config-slug}/index/{index-name}

An index object is sealed (role ``index``, bound to its name) gzip'd JSON:
``{"packs": {pack-name: [[id, offset, length, size, compression], …]}}``, one per
backup run (written as its packs are finished, before its commit marker) and one per
prune (which replaces those it covers). Readers take the union; a block listed twice
is read from either place.

``BlockIndex`` keeps the union in a SQLite file (a B-tree on disk with a 4 MiB page
cache): about 120 bytes per block on disk and bounded memory whatever the size —
1 TB in 1 MiB blocks is a ~120 MB file, not 1 GB of Python objects.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import secrets
import sqlite3
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from backapp.engine.format.envelope import ENCRYPTED, open_sealed, seal
from backapp.engine.format.keys import FolderKeys
from backapp.engine.format.packs import ALGORITHMS, BlockLocation, is_pack_name
from backapp.errors import ArchiveError, EncryptionKeyError, IntegrityError
from backapp.storage import Storage, join_key

INDEX = "index"
MAX_INDEX = 512 * 1024 * 1024


def index_key(base: str, name: str) -> str:
    """Given a config folder's key and an index name, return the index object's key."""
    return join_key(base, INDEX, name)


def write_index(
    storage: Storage,
    base: str,
    keys: FolderKeys,
    packs: dict[str, dict[str, BlockLocation]],
    name: str | None = None,
    *,
    run: str | None = None,
    checkpoint: bool = False,
) -> str:
    """Given packs and their tables (and the backup run that wrote them; ``checkpoint``
    while that run has not committed), store an index object listing them; return its
    name. Raise StorageError."""
    name = name or secrets.token_hex(16)
    doc: dict[str, object] = {
        "packs": {
            pack: [[i, loc.offset, loc.length, loc.size, loc.algorithm] for i, loc in table.items()]
            for pack, table in packs.items()
        }
    }
    if run is not None:
        doc["run"] = run
    if checkpoint:
        doc["checkpoint"] = True
    payload = gzip.compress(json.dumps(doc, separators=(",", ":")).encode(), 6, mtime=0)
    storage.put_bytes(index_key(base, name), seal(keys, "index", name, payload))
    return name


def index_names(storage: Storage, base: str) -> list[str]:
    """Given a config folder, return the names of its index objects. Raise StorageError."""
    prefix = join_key(base, INDEX) + "/"
    names = []
    for obj in storage.list(prefix):
        name = obj.key[len(prefix) :]
        if is_pack_name(name):
            names.append(name)
    return sorted(names)


@dataclass(frozen=True)
class IndexDoc:
    """One index object: the blocks it lists, the run that wrote it, and whether that run
    had not committed when it was written (a checkpoint: its blocks may be resumed)."""

    rows: list[tuple[str, BlockLocation]]
    run: str | None
    checkpoint: bool
    keys: FolderKeys  # what it is sealed with (plain keys for a plain index)


def read_index(
    storage: Storage, base: str, keys: FolderKeys, name: str
) -> Iterator[tuple[str, BlockLocation]]:
    """Given an index object's name, yield (block id, location) for every block it lists.
    Raise IntegrityError (damaged, moved, or another config's), StorageError."""
    yield from read_index_doc(storage, base, keys, name).rows


def read_index_doc(storage: Storage, base: str, keys: FolderKeys, name: str) -> IndexDoc:
    """Given an index object's name, return it, checked. Raise IntegrityError (damaged,
    moved, or another config's), EncryptionKeyError, StorageError."""
    label = f"index {name}"
    sealed = b"".join(storage.get(index_key(base, name), 0, MAX_INDEX))
    if sealed[:1] != bytes([ENCRYPTED]):
        keys = FolderKeys(keys.slug)  # a plain index (of unencrypted backups) in any folder
    elif not keys.encrypted:
        raise EncryptionKeyError(f"{label} is encrypted: reading it needs BACKUP_ENCRYPTION_KEY")
    payload = open_sealed(keys, "index", name, sealed, label)
    found: list[tuple[str, BlockLocation]] = []
    try:
        doc = json.loads(gzip.decompress(payload))
        run, checkpoint = doc.get("run"), doc.get("checkpoint", False) is True
        if run is not None and not isinstance(run, str):
            raise ValueError("bad run")
        for pack, rows in doc["packs"].items():
            if not is_pack_name(pack):
                raise ValueError(f"bad pack name {pack[:40]!r}")
            for block_id, offset, length, size, algorithm in rows:
                if (
                    not isinstance(block_id, str)
                    or len(block_id) != 64
                    or algorithm not in ALGORITHMS
                    or not (offset >= 0 and length >= 0 and size >= 0)
                ):
                    raise ValueError(f"bad row for block {str(block_id)[:16]}")
                found.append((block_id, BlockLocation(pack, offset, length, size, algorithm)))
    except (ValueError, KeyError, TypeError, OSError, EOFError, AttributeError) as exc:
        raise ArchiveError(f"{label} is damaged ({exc})") from None
    return IndexDoc(found, run, checkpoint, keys)


class BlockIndex:
    """Block id -> location, in a SQLite file of its own (deleted on close)."""

    def __init__(self, directory: str | None = None) -> None:
        fd, self.path = tempfile.mkstemp(prefix="backapp-blocks-", suffix=".db", dir=directory)
        os.close(fd)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.executescript(
            "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; PRAGMA cache_size=-4096;"
            "CREATE TABLE blocks (id BLOB PRIMARY KEY, pack BLOB, offset INTEGER,"
            " length INTEGER, size INTEGER, algorithm TEXT) WITHOUT ROWID;"
        )
        # Added but not yet written: looked up here first, written in batches.
        self._pending: dict[str, BlockLocation] = {}
        # Packs only checkpoints list: stored by runs that did not commit (resumable).
        self.resumable_packs: set[str] = set()
        self.checkpoints: list[str] = []  # the checkpoint index objects loaded

    def __enter__(self) -> BlockIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close and delete the file."""
        self._db.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    def add(self, block_id: str, loc: BlockLocation) -> None:
        """Given a block and where it lies, record it (the first place recorded is kept)."""
        self._pending.setdefault(block_id, loc)
        if len(self._pending) >= 10_000:
            self._write()

    def add_all(self, rows: Iterable[tuple[str, BlockLocation]]) -> None:
        """Given (block id, location) pairs, record them all."""
        for block_id, loc in rows:
            self.add(block_id, loc)
        self._write()

    def _write(self) -> None:
        if self._pending:
            rows = [
                (
                    bytes.fromhex(i),
                    bytes.fromhex(loc.pack),
                    loc.offset,
                    loc.length,
                    loc.size,
                    loc.algorithm,
                )
                for i, loc in self._pending.items()
            ]
            self._db.execute("BEGIN")
            self._db.executemany("INSERT OR IGNORE INTO blocks VALUES (?,?,?,?,?,?)", rows)
            self._db.execute("COMMIT")
            self._pending.clear()

    def get(self, block_id: str) -> BlockLocation | None:
        """Given a block id, return where it lies (None: not known)."""
        pending = self._pending.get(block_id)
        if pending is not None:
            return pending
        row = self._db.execute(
            "SELECT pack, offset, length, size, algorithm FROM blocks WHERE id = ?",
            (bytes.fromhex(block_id),),
        ).fetchone()
        if row is None:
            return None
        return BlockLocation(row[0].hex(), row[1], row[2], row[3], row[4])

    def __contains__(self, block_id: object) -> bool:
        return isinstance(block_id, str) and self.get(block_id) is not None

    def __len__(self) -> int:
        self._write()
        return int(self._db.execute("SELECT count(*) FROM blocks").fetchone()[0])

    def packs(self) -> Iterator[tuple[str, int]]:
        """Yield (pack name, blocks listed in it)."""
        self._write()
        for pack, count in self._db.execute("SELECT pack, count(*) FROM blocks GROUP BY pack"):
            yield pack.hex(), count

    def load(self, storage: Storage, base: str, keys: FolderKeys) -> list[tuple[str, str]]:
        """Given a config folder, record every block its index objects list; return the
        (index name, problem) of those that cannot be read (their blocks are then unknown:
        stored again if needed, never trusted). Raise StorageError."""
        problems = []
        final: set[str] = set()
        for name in index_names(storage, base):
            try:
                doc = read_index_doc(storage, base, keys, name)  # all or nothing
            except (IntegrityError, EncryptionKeyError) as exc:
                problems.append((name, str(exc)))
                continue
            self.add_all(doc.rows)
            packs = {loc.pack for _, loc in doc.rows}
            if doc.checkpoint:
                self.resumable_packs |= packs
                self.checkpoints.append(name)
            else:
                final |= packs
        self.resumable_packs -= final
        return problems
