"""Storing and reading the blocks of format 2 (docs/FORMAT.md, "Format 2").

``BlockWriter`` is the write side of one backup run: each block's id is computed
on the caller's thread (HMAC-SHA256 or SHA-256), looked up among the blocks the
config folder already holds (its index, loaded into a ``BlockIndex`` on disk) and,
only when new, compressed and sealed on a thread pool and appended to a pack by one
writer thread, in order. Every INDEX_EVERY packs, and at the end, an index object
lists the packs written, so even an interrupted run leaves its blocks findable.

``BlockFetcher`` is the read side: given the blocks a restore or verify needs, in
the order it needs them, it reads runs of neighbouring blocks of a pack in one
request, opens (decrypts, decompresses, checks) them on a pool, and hands them
back in order, each block or the damage in its place.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import IO

from backapp.engine.compress import BlockPipeline, Codec, codec_named
from backapp.engine.format.blockindex import BlockIndex, index_key, read_index_doc, write_index
from backapp.engine.format.envelope import open_block, seal_block
from backapp.engine.format.keys import FolderKeys
from backapp.engine.format.layout import Repository
from backapp.engine.format.packs import BlockLocation, PackWriter, pack_key
from backapp.engine.streams import prefetch
from backapp.errors import (
    ArchiveError,
    BackappError,
    IntegrityError,
    ObjectNotFoundError,
    StorageError,
)
from backapp.storage import TransferCallback

logger = logging.getLogger(__name__)

INDEX_EVERY = 32  # packs (about 512 MiB) per index object while a run goes on
_BATCH_BYTES = 1024 * 1024  # new blocks are handed to the pool in batches of this much
_BATCH_BLOCKS = 256
_PLACEHOLDER = BlockLocation("0" * 32, 0, 0, 0, "none")  # queued in this run, not packed yet

BlockRef = tuple[str, int]  # (block id, plaintext size)
_Queued = tuple[str, bytes, str, bool]  # id, plaintext, compression, manifest block
_Sealed = tuple[str, bytes, int, str, bool]  # id, stored bytes, size, compression, manifest


@dataclass
class WriteStats:
    """What a run's blocks cost: new blocks stored, blocks found already stored."""

    new_blocks: int = 0
    new_bytes: int = 0  # plaintext bytes of new blocks
    reused_blocks: int = 0
    reused_bytes: int = 0
    resumed_bytes: int = 0  # of those, stored by a run that did not commit (resumed)
    packs: list[str] = field(default_factory=list)
    indexes: list[str] = field(default_factory=list)
    stored_bytes: int = 0  # bytes of packs and index objects written


class BlockWriter:
    """Stores the blocks of one backup run (see the module docstring)."""

    def __init__(
        self,
        repo: Repository,
        codec: Codec,
        *,
        run: str,
        workers: int,
        on_transfer: TransferCallback | None = None,
        interrupt: object = None,
        pack_size: int | None = None,
    ) -> None:
        self.repo = repo
        self.codec = codec
        self.keys = repo.keys
        self.stats = WriteStats()
        self.index = BlockIndex()
        self.index_problems: list[tuple[str, str]] = []
        try:
            self.index_problems = self.index.load(repo.storage, repo.base, self.keys)
        except BaseException:
            self.index.close()
            raise
        for name, problem in self.index_problems:
            logger.warning("%s: index %s cannot be read (%s)", repo.location, name, problem)
        self.run = run  # the backup id of this run
        self._unindexed: dict[str, dict[str, BlockLocation]] = {}
        self._pack_checkpoints: list[str] = []  # one pack each, until merged
        self._in_packs = 0  # blocks the finished packs' tables list
        kwargs = {} if pack_size is None else {"pack_size": pack_size}
        self.packs = PackWriter(
            repo.storage, repo.base, self.keys, self._packed, on_transfer, **kwargs
        )
        # Manifests go into packs of their own: damage to a data pack never takes the list
        # of what is in the backup with it.
        self.meta_packs = PackWriter(
            repo.storage, repo.base, self.keys, self._packed, on_transfer, **kwargs
        )
        self._batch: list[_Queued] = []  # small blocks, handed to the pool together
        self._batch_bytes = 0
        self.pipeline: BlockPipeline[list[_Queued], list[_Sealed]] = BlockPipeline(
            self._seal,
            self._store,
            workers=workers,
            depth=workers,  # blocks of up to 4 MiB: a few in flight bound the memory
            interrupt=interrupt if callable(interrupt) else None,
        )

    def known(self, block_id: str) -> bool:
        """Given a block id, return whether the folder holds it (or this run queued it)."""
        return block_id in self.index

    def put(
        self,
        plain: bytes,
        algorithm: str | None = None,
        *,
        meta: bool = False,
        digest: bytes | None = None,
    ) -> BlockRef:
        """Given a block's plaintext (a compression other than the run's, e.g. "none" for
        what is compressed already; ``meta`` for a manifest's blocks, packed apart from
        data; its SHA-256 ``digest`` if known), store it unless it is stored already;
        return its reference. Re-raise a failure of the pipeline."""
        if digest is None:
            digest = hashlib.sha256(plain).digest()
        block_id = self.keys.block_id_of_digest(digest)
        known = self.index.get(block_id)
        if known is not None:
            self.stats.reused_blocks += 1
            self.stats.reused_bytes += len(plain)
            if known.pack in self.index.resumable_packs:
                self.stats.resumed_bytes += len(plain)
            return block_id, len(plain)
        self.index.add(block_id, _PLACEHOLDER)
        self.stats.new_blocks += 1
        self.stats.new_bytes += len(plain)
        # Headers and small files go to the pool in batches: a thread hand-off per
        # kilobyte-sized block would cost more than compressing it.
        self._batch.append((block_id, plain, algorithm or self.codec.algorithm, meta))
        self._batch_bytes += len(plain)
        if self._batch_bytes >= _BATCH_BYTES or len(self._batch) >= _BATCH_BLOCKS:
            self._submit_batch()
        return block_id, len(plain)

    def _submit_batch(self) -> None:
        if self._batch:
            batch, self._batch, self._batch_bytes = self._batch, [], 0
            self.pipeline.submit(batch)

    def _seal(self, batch: list[_Queued]) -> list[_Sealed]:
        sealed = []
        for block_id, plain, algorithm, meta in batch:
            codec = self.codec if algorithm == self.codec.algorithm else codec_named(algorithm)
            stored = seal_block(self.keys, block_id, codec.compress(plain))
            sealed.append((block_id, stored, len(plain), algorithm, meta))
        return sealed

    def _store(self, batch: list[_Sealed]) -> None:
        # On the pipeline's one sink thread: packs are written in order, by one thread.
        for block_id, stored, size, algorithm, meta in batch:
            packs = self.meta_packs if meta else self.packs
            packs.add(block_id, stored, size, algorithm)

    def _packed(self, name: str, table: dict[str, BlockLocation]) -> None:
        # Each finished pack is listed at once in a checkpoint index of its own: if the run
        # dies, the next one finds its blocks (resume); every INDEX_EVERY packs those
        # become one checkpoint index, and once the run commits, final ones.
        self.stats.packs.append(name)
        self._in_packs += len(table)
        self._unindexed[name] = dict(table)
        self._pack_checkpoints.append(self._index_of({name: table}))
        if len(self._unindexed) >= INDEX_EVERY:
            self._write_index()

    def _index_of(self, packs: dict[str, dict[str, BlockLocation]]) -> str:
        storage, base = self.repo.storage, self.repo.base
        return write_index(storage, base, self.keys, packs, run=self.run, checkpoint=True)

    def _write_index(self) -> None:
        if self._unindexed:
            self.stats.indexes.append(self._index_of(self._unindexed))
            self._unindexed = {}
            for name in self._pack_checkpoints:
                self.repo.storage.delete(index_key(self.repo.base, name))
            self._pack_checkpoints = []

    def committed(self) -> None:
        """After the run's marker landed: its checkpoint indexes, and those of interrupted
        runs it resumed from, become final ones (their blocks are a backup's now, or
        garbage for prune). Failures are logged only: a checkpoint left behind only keeps
        unused blocks for prune's grace period."""
        storage, base = self.repo.storage, self.repo.base
        for name in [*self.index.checkpoints, *self.stats.indexes]:
            try:
                doc = read_index_doc(storage, base, self.keys, name)
                tables: dict[str, dict[str, BlockLocation]] = {}
                for block_id, loc in doc.rows:
                    tables.setdefault(loc.pack, {})[block_id] = loc
                write_index(storage, base, doc.keys, tables, run=self.run)  # the same kind
                storage.delete(index_key(base, name))
            except BackappError as exc:
                logger.warning("index %s of backup %s stays a checkpoint: %s", name, self.run, exc)

    def finish(self) -> WriteStats:
        """Wait for every block to be packed, finish the last pack and write the index.
        Raise StorageError, IntegrityError, ArchiveError."""
        self._submit_batch()
        self.pipeline.close()
        self.packs.flush()
        self.meta_packs.flush()
        if self._in_packs != self.stats.new_blocks:
            raise ArchiveError(
                f"{self._in_packs} of {self.stats.new_blocks} new blocks reached a pack "
                "(data was lost on the way to storage)"
            )
        self._write_index()
        self.stats.stored_bytes = self.packs.stored_bytes + self.meta_packs.stored_bytes
        for name in self.stats.indexes:
            head = self.repo.storage.head(index_key(self.repo.base, name))
            if head is None:
                raise StorageError(f"index {name} is missing from storage right after its upload")
            self.stats.stored_bytes += head.size
        return self.stats

    def check_stored(self) -> None:
        """Check that storage holds every pack this run wrote. Raise StorageError."""
        sizes = {**self.packs.sizes, **self.meta_packs.sizes}
        for name in self.stats.packs:
            key = pack_key(self.repo.base, name)
            head = self.repo.storage.head(key)
            if head is None:
                raise StorageError(f"pack {name} is missing from storage right after its upload")
            if head.size != sizes[name]:
                raise IntegrityError(
                    f"{key} holds {head.size} bytes in storage, but {sizes[name]} were written"
                )

    def abort(self) -> None:
        """Stop: drop what is queued, discard the open pack (never raises)."""
        self.pipeline.abort()
        self.packs.abort()
        self.meta_packs.abort()

    def close(self) -> None:
        """Release the local index."""
        self.index.close()


# -- reading ---------------------------------------------------------------------------

_RUN_MAX = 2 * 1024 * 1024  # one request reads neighbouring blocks up to this much
_GAP = 256 * 1024  # and reads through gaps this small
_CACHE_BYTES = 4 * 1024 * 1024  # recently read blocks kept (files repeat blocks: zeros)


@dataclass(frozen=True)
class Damage:
    """Stands in for a block that could not be read intact."""

    block_id: str
    size: int
    message: str


def load_index(repo: Repository) -> tuple[BlockIndex, list[tuple[str, str]]]:
    """Given a repository, return its blocks' index (on disk) and the index objects that
    cannot be read. Raise StorageError."""
    index = BlockIndex()
    try:
        return index, index.load(repo.storage, repo.base, repo.keys)
    except BaseException:
        index.close()
        raise


class BlockFetcher:
    """Reads blocks of one config folder (see the module docstring)."""

    def __init__(
        self,
        repo: Repository,
        index: BlockIndex,
        keys: FolderKeys,
        workers: int = 2,
        index_problems: list[tuple[str, str]] | None = None,
    ) -> None:
        self.repo = repo
        self.index = index
        self.keys = keys
        self.index_problems = index_problems or []  # named when a block is not found
        self.workers = workers
        self._cache: OrderedDict[str, bytes] = OrderedDict()
        self._cached = 0  # bytes in the cache
        self._lock = threading.Lock()

    def read(self, refs: Iterable[BlockRef]) -> Iterator[tuple[BlockRef, bytes | Damage]]:
        """Given block references in the order they are needed, yield each with its
        plaintext (or its Damage), in that order. Raise StorageError (storage unreachable
        after retries)."""
        with ThreadPoolExecutor(self.workers, thread_name_prefix="backapp-open") as pool:
            # Runs waiting, read or being read: about (depth + workers) x 2 x _RUN_MAX bytes.
            ahead = prefetch(self._runs(refs, pool), depth=self.workers)
            try:
                for future in ahead:
                    yield from future.result()
            finally:
                ahead.close()

    def _runs(
        self, refs: Iterable[BlockRef], pool: ThreadPoolExecutor
    ) -> Iterator[Future[list[tuple[BlockRef, bytes | Damage]]]]:
        """Group the references into runs read with one request each; yield a future per
        run (on the prefetch thread: requests overlap with the caller's writing)."""
        run: list[tuple[BlockRef, BlockLocation | None]] = []
        for ref in refs:
            loc = self.index.get(ref[0])
            if run and not _joins(run, loc):
                yield pool.submit(self._read_run, run)
                run = []
            run.append((ref, loc))
        if run:
            yield pool.submit(self._read_run, run)

    def _read_run(
        self, run: list[tuple[BlockRef, BlockLocation | None]]
    ) -> list[tuple[BlockRef, bytes | Damage]]:
        first = run[0][1]
        if first is None or first.pack == _PLACEHOLDER.pack:
            return [(ref, self._missing(ref)) for ref, _ in run]
        with self._lock:
            cached = self._cache.get(run[0][0][0]) if len(run) == 1 else None
        if cached is not None:
            return [(run[0][0], cached)]
        last = run[-1][1]
        assert last is not None
        start, end = first.offset, last.offset + last.length
        key = pack_key(self.repo.base, first.pack)
        try:
            raw = b"".join(self.repo.storage.get(key, start, end))
        except ObjectNotFoundError:
            return [
                (
                    ref,
                    Damage(ref[0], ref[1], f"pack {first.pack} is missing (block {ref[0][:12]}…)"),
                )
                for ref, _ in run
            ]
        out: list[tuple[BlockRef, bytes | Damage]] = []
        view = memoryview(raw)
        for ref, loc in run:
            assert loc is not None
            piece = bytes(view[loc.offset - start : loc.offset - start + loc.length])
            label = f"block {ref[0][:12]}… in pack {loc.pack}"
            if len(piece) < loc.length:
                out.append((ref, Damage(ref[0], ref[1], f"{label} is cut short (pack truncated)")))
                continue
            try:
                if loc.size != ref[1]:
                    raise ArchiveError(
                        f"{label} holds {loc.size} bytes, the manifest says {ref[1]}"
                    )
                plain = open_block(
                    self.keys,
                    ref[0],
                    piece,
                    codec_named(loc.algorithm),
                    loc.size,
                    label,
                )
            except IntegrityError as exc:
                out.append((ref, Damage(ref[0], ref[1], str(exc))))
                continue
            if len(run) == 1 and ref[0] not in self._cache:
                with self._lock:
                    self._cache[ref[0]] = plain
                    self._cached += len(plain)
                    while self._cached > _CACHE_BYTES:
                        self._cached -= len(self._cache.popitem(last=False)[1])
            out.append((ref, plain))
        return out

    def _missing(self, ref: BlockRef) -> Damage:
        why = "removed, or its index is damaged"
        if self.index_problems:
            name, problem = self.index_problems[0]
            why = f"index {name} cannot be read: {problem}"
        return Damage(ref[0], ref[1], f"block {ref[0][:12]}… is in no pack of this config ({why})")


def _joins(run: list[tuple[BlockRef, BlockLocation | None]], loc: BlockLocation | None) -> bool:
    """Given a run being built and the next block's location, return whether the block is
    read with the same request: same pack, just after (or a small gap), run not too long."""
    prev = run[-1][1]
    if loc is None or prev is None or loc.pack != prev.pack:
        return False
    first = run[0][1]
    assert first is not None
    gap = loc.offset - (prev.offset + prev.length)
    plain = sum(r[0][1] for r in run) + loc.size  # what the run decompresses to
    return (
        0 <= gap <= _GAP
        and loc.offset + loc.length - first.offset <= _RUN_MAX
        and plain <= _RUN_MAX
    )


def spool_blocks(fetcher: BlockFetcher, refs: list[BlockRef], label: str) -> IO[bytes]:
    """Given a fetcher and blocks, return their plaintexts, concatenated, as a local spool
    file. Raise IntegrityError naming the damaged block, StorageError."""
    spool: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=32 * 1024 * 1024)  # noqa: SIM115
    try:
        for _ref, plain in fetcher.read(refs):
            if isinstance(plain, Damage):
                raise IntegrityError(f"{label}: {plain.message}")
            spool.write(plain)
        spool.seek(0)
        return spool
    except BaseException:
        spool.close()
        raise
