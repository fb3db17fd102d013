"""Random access to a backup's archive through its block table.

The manifest's trailer lists the compressed size of every tar block, so any
byte range of the tar stream maps to a range of compressed blocks (and, when
encrypted, of AES-GCM segments). Restore, single-file download and full
verification read only the blocks they need, decompressing on a thread pool.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from backapp.engine.compress import Codec
from backapp.engine.crypto import HEADER_SIZE, TAG_SIZE, MasterKey, SegmentReader
from backapp.engine.layout import BackupInfo, Repository
from backapp.engine.manifest import Entry, Trailer
from backapp.engine.streams import prefetch
from backapp.errors import EncryptionKeyError, IntegrityError, ObjectNotFoundError

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
        self.repo = repo
        self.info = info
        self.key = repo.key(info.backup_id, info.data.name)
        self.name = f"{info.data.name} of backup {info.backup_id}"
        self.codec = Codec(info.compression.algorithm, info.compression.level)
        self.block_size = info.compression.block_size
        self.tar_size = trailer.tar_size
        self.sizes = trailer.blocks
        self.offsets = [0, *itertools.accumulate(self.sizes)]
        self.workers = workers
        self.damaged_blocks: list[tuple[int, str]] = []
        self._segments: SegmentReader | None = None
        if info.encrypted:
            if master is None:
                raise EncryptionKeyError(
                    f"backup {info.backup_id} is encrypted: set BACKUP_ENCRYPTION_KEY "
                    "to the key it was made with"
                )
            head = repo.storage.head(self.key)
            if head is None:
                raise ObjectNotFoundError(f"{self.name} is missing")
            header = b"".join(repo.storage.get(self.key, 0, HEADER_SIZE))
            self._segments = SegmentReader(master, header, head.size, self.name)
            compressed = self._segments.plain_size
        else:
            head = repo.storage.head(self.key)
            if head is None:
                raise ObjectNotFoundError(f"{self.name} is missing")
            compressed = head.size
        self.object_size = head.size
        if compressed != self.offsets[-1]:
            raise IntegrityError(
                f"{self.name} has {compressed} bytes of archive data but its manifest "
                f"expects {self.offsets[-1]}: the object is truncated or damaged"
            )

    def pieces(self, entries: list[Entry], *, whole: bool = False) -> Iterator[Piece]:
        """Given file entries stored in this backup, yield their data in offset order.

        Every entry yields at least one piece (an empty file yields ``b""`` once). With
        ``whole``, every block of the archive is read (and damaged blocks that hold no
        file data are listed in ``damaged_blocks``). Raise IntegrityError, StorageError.
        """
        wanted = sorted(entries, key=lambda e: e.offset or 0)
        for entry in wanted:
            if entry.size == 0:
                yield Piece(entry, b"")
        with_data = [e for e in wanted if e.size > 0]
        runs = list(self._runs(with_data))
        if whole and self.sizes:
            runs = [((0, len(self.sizes) - 1), with_data)]
        for run, members in runs:
            yield from self._read_run(run, members)

    def _runs(self, entries: list[Entry]) -> Iterator[tuple[tuple[int, int], list[Entry]]]:
        run: tuple[int, int] | None = None
        members: list[Entry] = []
        bs = self.block_size
        for entry in entries:
            assert entry.offset is not None
            first = entry.offset // bs
            last = (entry.offset + entry.size - 1) // bs
            if last >= len(self.sizes) or entry.offset + entry.size > self.tar_size:
                raise IntegrityError(f"{entry.path}: its data lies beyond the end of {self.name}")
            if run is not None and first <= run[1] + _GAP_BLOCKS:
                run = (run[0], max(run[1], last))
                members.append(entry)
                continue
            if run is not None:
                yield run, members
            run, members = (first, last), [entry]
        if run is not None:
            yield run, members

    def _read_run(self, run: tuple[int, int], members: list[Entry]) -> Iterator[Piece]:
        first, last = run
        bs = self.block_size
        # Members are sorted by offset: each block only looks at the few files it touches.
        waiting = deque(members)
        active: list[Entry] = []
        with ThreadPoolExecutor(self.workers, thread_name_prefix="backapp-inflate") as pool:

            def submitted() -> Iterator[Future[tuple[int, bytes | Damage]]]:
                # Runs on its own thread: fetching, decrypting and cutting blocks overlap
                # with the caller writing files.
                blocks = self._compressed_blocks(first, last)
                for index, compressed in enumerate(blocks, start=first):
                    yield pool.submit(self._decompress, (index, compressed))

            for future in prefetch(submitted(), depth=self.workers * 2):
                index, plain = future.result()
                if isinstance(plain, Damage):
                    self.damaged_blocks.append((index, plain.message))
                start = index * bs
                end = start + (len(plain) if isinstance(plain, bytes) else self._block_len(index))
                while waiting and (waiting[0].offset or 0) < end:
                    active.append(waiting.popleft())
                view = memoryview(plain) if isinstance(plain, bytes) else None
                still: list[Entry] = []
                for entry in active:
                    assert entry.offset is not None
                    lo = max(entry.offset, start)
                    hi = min(entry.offset + entry.size, end)
                    if lo < hi:
                        if view is not None:
                            yield Piece(entry, view[lo - start : hi - start])
                        else:
                            assert isinstance(plain, Damage)
                            yield Piece(entry, b"", plain.message, hi - lo)
                    if entry.offset + entry.size > end:
                        still.append(entry)
                active = still

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
        """Yield bytes [start, end) of the data object; near its ends, ask for the whole
        object instead of a range (S3-compatible stores serve plain GETs faster)."""
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
        if index <= last:
            raise IntegrityError(f"{self.name} ended early (segment {index} is missing)")
