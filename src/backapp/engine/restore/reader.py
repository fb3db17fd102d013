"""Random access to a backup's archive through its block table.

The manifest's trailer lists the compressed size of every tar block, so any
byte range of the tar stream maps to a range of compressed blocks (and, when
encrypted, of AES-GCM segments). Restore, single-file download and full
verification read only the blocks they need, decompressing on a thread pool.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from backapp.engine.compress import Codec
from backapp.engine.format.crypto import HEADER_SIZE, TAG_SIZE, MasterKey, SegmentReader
from backapp.engine.format.layout import BackupInfo, Repository
from backapp.engine.format.manifest import Entry, Trailer
from backapp.engine.streams import prefetch
from backapp.errors import EncryptionKeyError, IntegrityError, ObjectNotFoundError, WrongKeyError

logger = logging.getLogger(__name__)

_GAP_BLOCKS = 8  # read through gaps this small rather than start a new request
_WIDEN = 1024 * 1024  # read from the object's start rather than skip this little


@dataclass(frozen=True)
class Piece:
    """A piece of a file's data: the entry and the next chunk of its bytes.

    ``error`` is set (and ``data`` empty) when the stored bytes of this piece are
    damaged: they failed authentication or decompression; ``lost`` says how many of
    the file's bytes that piece stood for.
    """

    entry: Entry
    data: bytes | memoryview
    error: str | None = None
    lost: int = 0


@dataclass(frozen=True)
class Damage:
    """Stands in for ``length`` bytes that could not be read intact."""

    length: int
    message: str


class ArchiveReader:
    """Reads file data out of one backup's data object."""

    def __init__(
        self,
        repo: Repository,
        info: BackupInfo,
        trailer: Trailer,
        master: MasterKey | None,
        workers: int = 2,
    ) -> None:
        """Given a backup, its manifest's block table and the key, open its data object.

        The block table (from the manifest, authenticated when encrypted) is the authority
        on the object's size: a shorter object is read up to where it ends (``notes`` says
        so, the blocks beyond are damage). Raise ObjectNotFoundError, IntegrityError (its
        encryption header is unusable), EncryptionKeyError, StorageError.
        """
        self.repo = repo
        self.info = info
        assert info.data is not None
        self.key = repo.key(info.backup_id, info.data.name)
        self.name = f"{info.data.name} of backup {info.backup_id}"
        self.codec = Codec(info.compression.algorithm, info.compression.level)
        self.block_size = trailer.block_size or info.compression.block_size
        self.tar_size = trailer.tar_size
        self.sizes = trailer.blocks
        self.offsets = [0, *itertools.accumulate(self.sizes)]
        self.workers = workers
        self.damaged_blocks: list[tuple[int, str]] = []
        self.notes: list[str] = []  # damage of the object as a whole
        self._segments: SegmentReader | None = None
        head = repo.storage.head(self.key)
        if head is None:
            raise ObjectNotFoundError(f"{self.name} is missing")
        self.object_size = head.size
        expected = self.offsets[-1]
        if info.encrypted:
            if master is None:
                raise EncryptionKeyError(
                    f"backup {info.backup_id} is encrypted: set BACKUP_ENCRYPTION_KEY "
                    "to the key it was made with"
                )
            header = b"".join(repo.storage.get(self.key, 0, HEADER_SIZE))
            try:
                self._segments = SegmentReader(master, header, expected, self.name)
            except WrongKeyError:
                # The same key opened this backup's manifest: the header is what is wrong.
                raise IntegrityError(
                    f"{self.name}: its encryption header is damaged (the key opens the "
                    "manifest but not this object)"
                ) from None
            expected = self._segments.object_size
        if head.size < expected:
            self.notes.append(
                f"{self.name} is truncated: it has {head.size} bytes, its manifest expects "
                f"{expected}"
            )
        elif head.size > expected:
            self.notes.append(
                f"{self.name} has {head.size - expected} unexpected bytes after its end"
            )

    def pieces(self, entries: Iterable[Entry], *, whole: bool = False) -> Iterator[Piece]:
        """Given file entries stored in this backup, yield their data, streaming.

        Entries should come in offset order (a manifest's order, give or take renamed
        files): they are consumed as the archive is read, so any number of them takes
        no memory. Every entry yields at least one piece (an empty file ``b""`` once);
        pieces of one file come in order. Reading stops where no entry needs the next
        blocks and resumes (a new request) where the next entry starts, going back if
        an entry lies behind. With ``whole`` every block is read (and damaged blocks
        holding no file data are listed in ``damaged_blocks``); entries out of order are
        then read again afterwards. Raise IntegrityError, StorageError.
        """
        queue = _Lookahead(iter(entries))
        if whole and self.sizes:
            yield from self._read_from(0, queue, whole=True)
        while True:
            entry = queue.peek()
            if entry is None:
                return
            if entry.size == 0:
                queue.take()
                yield Piece(entry, b"")
                continue
            if not self._in_bounds(entry):
                yield self._beyond(queue.take())
                continue
            assert entry.offset is not None
            yield from self._read_from(entry.offset // self.block_size, queue, whole=False)

    def _in_bounds(self, entry: Entry) -> bool:
        assert entry.offset is not None
        return entry.offset + entry.size <= self.tar_size

    def _beyond(self, entry: Entry) -> Piece:
        message = f"its data lies beyond the end of {self.name}"
        return Piece(entry, b"", message, entry.size)

    def _read_from(self, first: int, queue: _Lookahead, whole: bool) -> Iterator[Piece]:
        """Read blocks from ``first`` on, handing out the queue's entries as their blocks
        arrive, until no entry needs the next blocks (to the end, with ``whole``)."""
        bs = self.block_size
        active: list[Entry] = []
        with ThreadPoolExecutor(self.workers, thread_name_prefix="backapp-inflate") as pool:

            def submitted() -> Iterator[Future[tuple[int, bytes | Damage]]]:
                # Runs on its own thread: fetching, decrypting and cutting blocks overlap
                # with the caller writing files.
                blocks = self._compressed_blocks(first, len(self.sizes) - 1)
                for index, compressed in enumerate(blocks, start=first):
                    yield pool.submit(self._decompress, (index, compressed))

            ahead = prefetch(submitted(), depth=self.workers * 2)
            try:
                for future in ahead:
                    index, plain = future.result()
                    if isinstance(plain, Damage):
                        self.damaged_blocks.append((index, plain.message))
                    start = index * bs
                    end = start + (
                        len(plain) if isinstance(plain, bytes) else self._block_len(index)
                    )
                    # Take the entries that start in this block (never one lying behind).
                    while (nxt := queue.peek()) is not None:
                        if nxt.size == 0:
                            queue.take()
                            yield Piece(nxt, b"")
                            continue
                        offset = nxt.offset or 0
                        if offset >= end or offset < start:
                            break
                        if not self._in_bounds(nxt):
                            yield self._beyond(queue.take())
                            continue
                        active.append(queue.take())
                    yield from _cut(plain, start, end, active)
                    active = [e for e in active if (e.offset or 0) + e.size > end]
                    if active or whole:
                        continue
                    nxt = queue.peek()
                    if nxt is None:
                        return
                    ahead_to = (nxt.offset or 0) // bs
                    if not index < ahead_to <= index + _GAP_BLOCKS and nxt.size:
                        return  # far ahead, or behind: a new request from its block
            finally:
                ahead.close()

    def _block_len(self, index: int) -> int:
        return min(self.block_size, self.tar_size - index * self.block_size)

    def _decompress(self, item: tuple[int, bytes | Damage]) -> tuple[int, bytes | Damage]:
        index, data = item
        if isinstance(data, Damage):
            return index, data
        try:
            return index, self.codec.decompress(data, self._block_len(index))
        except IntegrityError as exc:
            return index, Damage(len(data), f"{self.name}: block {index} is damaged ({exc})")

    def _compressed_blocks(self, first: int, last: int) -> Iterator[bytes | Damage]:
        """Yield the compressed blocks first..last, each whole, or a Damage in its place."""
        lo, hi = self.offsets[first], self.offsets[last + 1]
        buf = bytearray()
        bad: list[tuple[int, int, str]] = []  # damaged spans, as offsets into buf
        index = first
        for chunk in self._compressed_range(lo, hi):
            if isinstance(chunk, Damage):
                bad.append((len(buf), len(buf) + chunk.length, chunk.message))
                buf += bytes(chunk.length)
            else:
                buf += chunk
            while index <= last and len(buf) >= self.sizes[index]:
                size = self.sizes[index]
                hit = next((m for a, b, m in bad if a < size and b > 0), None)
                yield Damage(size, hit) if hit else bytes(buf[:size])
                del buf[:size]
                bad = [(a - size, b - size, m) for a, b, m in bad if b - size > 0]
                index += 1
        if index <= last:
            raise IntegrityError(f"{self.name} ended early (block {index} is missing)")

    def _fetch(self, start: int, end: int) -> Iterator[bytes]:
        """Yield bytes [start, end) of the data object (fewer if it is shorter); near its
        ends, ask for the whole object instead of a range (S3-compatible stores serve plain
        GETs faster)."""
        end = min(end, self.object_size)
        for attempt in range(3):
            if start >= end:
                return
            for chunk in self._fetch_once(start, end):
                start += len(chunk)
                yield chunk
            # A reply that came short without an error (its length said so: only what we
            # know of the object tells) is read on from where it stopped.
            if start < end and attempt < 2:
                logger.info("%s: a read came short at byte %d; reading on", self.name, start)

    def _fetch_once(self, start: int, end: int) -> Iterator[bytes]:
        skip = start if start <= _WIDEN else 0
        first = 0 if skip else start
        last = None if end >= self.object_size else end
        for chunk in self.repo.storage.get(self.key, first, last):
            if skip:
                if len(chunk) <= skip:
                    skip -= len(chunk)
                    continue
                chunk = chunk[skip:]
                skip = 0
            yield chunk

    def _compressed_range(self, lo: int, hi: int) -> Iterator[bytes | Damage]:
        """Yield bytes [lo, hi) of the compressed archive, with Damage standing in for what
        fails authentication or lies past the end of a truncated object."""
        delivered = 0
        for chunk in self._plain_range(lo, hi):
            delivered += chunk.length if isinstance(chunk, Damage) else len(chunk)
            yield chunk
        if delivered < hi - lo:
            yield Damage(hi - lo - delivered, f"{self.name} is truncated (ends early)")

    def _plain_range(self, lo: int, hi: int) -> Iterator[bytes | Damage]:
        if self._segments is None:
            yield from self._fetch(lo, hi)
            return
        seg = self._segments
        size = seg.segment_size
        first, last = lo // size, (hi - 1) // size
        start, end = seg.cipher_range(first, last)
        buf = bytearray()
        index = first
        for chunk in self._fetch(start, end):
            buf += chunk
            while index <= last and len(buf) >= seg.sealed_length(index):
                n = seg.sealed_length(index)
                base = index * size
                want = (max(lo, base), min(hi, base + n - TAG_SIZE))
                try:
                    plain = seg.open(index, bytes(buf[:n]))
                except IntegrityError as exc:
                    # Keep going: only the blocks within this segment are lost.
                    yield Damage(want[1] - want[0], str(exc))
                else:
                    yield plain[want[0] - base : want[1] - base]
                del buf[:n]
                index += 1


class _Lookahead:
    """An iterator with a one-entry look-ahead."""

    def __init__(self, items: Iterator[Entry]) -> None:
        self._items = items
        self._next: Entry | None = None

    def peek(self) -> Entry | None:
        if self._next is None:
            self._next = next(self._items, None)
        return self._next

    def take(self) -> Entry:
        entry = self.peek()
        assert entry is not None
        self._next = None
        return entry


def _cut(plain: bytes | Damage, start: int, end: int, active: list[Entry]) -> Iterator[Piece]:
    """Given a block's content (or its damage) and the files it touches, yield their pieces."""
    view = memoryview(plain) if isinstance(plain, bytes) else None
    for entry in active:
        assert entry.offset is not None
        lo = max(entry.offset, start)
        hi = min(entry.offset + entry.size, end)
        if lo >= hi:
            continue
        if view is not None:
            yield Piece(entry, view[lo - start : hi - start])
        else:
            assert isinstance(plain, Damage)
            yield Piece(entry, b"", plain.message, hi - lo)
