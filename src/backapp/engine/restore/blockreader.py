"""Reading the files of a format-2 backup: each file's blocks, fetched in the order the
caller needs them (restore, verify, single-file download)."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from backapp.engine.blockstore import BlockFetcher, BlockRef, Damage
from backapp.engine.format.layout import BackupInfo
from backapp.engine.format.manifest import Entry
from backapp.engine.restore.reader import Piece


class BlockArchiveReader:
    """Reads file data of one format-2 backup through its config folder's blocks."""

    def __init__(self, info: BackupInfo, fetcher: BlockFetcher) -> None:
        self.info = info
        self.fetcher = fetcher
        self.name = f"the blocks of backup {info.backup_id}"
        self.key = fetcher.repo.key(info.backup_id, "backup.json")
        self.tar_size = info.tar_size
        self.damaged_blocks: list[tuple[str, str]] = []  # (block id, message)
        self.notes: list[str] = []

    def pieces(self, entries: Iterable[Entry], *, whole: bool = False) -> Iterator[Piece]:
        """Given file entries of this backup, yield their data, streaming, in the order
        given: every entry yields at least one piece (an empty file ``b""`` once), a
        damaged or missing block a piece with ``error`` standing for its bytes. (``whole``
        is for format 1, whose archives hold data no file names; blocks hold none.) Raise
        StorageError."""
        del whole
        pending: deque[_Slot] = deque()

        def refs() -> Iterator[BlockRef]:
            # On the fetcher's thread: an entry is queued before its blocks are asked for.
            for entry in entries:
                blocks = entry.blocks or []
                pending.append(_Slot(entry, len(blocks)))
                yield from blocks

        for ref, plain in self.fetcher.read(refs()):
            while pending[0].left == 0:
                yield Piece(pending.popleft().entry, b"")
            slot = pending[0]
            if isinstance(plain, Damage):
                self.damaged_blocks.append((ref[0], plain.message))
                yield Piece(slot.entry, b"", plain.message, ref[1])
            else:
                yield Piece(slot.entry, plain)
            slot.left -= 1
            if slot.left == 0:
                pending.popleft()
        while pending:
            yield Piece(pending.popleft().entry, b"")

    def check(self, refs: Iterable[BlockRef]) -> list[tuple[str, str]]:
        """Given blocks no file owns (tar headers, the end), read each; return the (block
        id, message) of those that are damaged or missing. Raise StorageError."""
        return [
            (ref[0], plain.message)
            for ref, plain in self.fetcher.read(refs)
            if isinstance(plain, Damage)
        ]


@dataclass
class _Slot:
    """An entry whose blocks are on their way, and how many are still to come."""

    entry: Entry
    left: int
