"""Packs: blocks stored together in objects of about PACK_SIZE bytes.

    {prefix}/{config-slug}/packs/{nn}/{pack-name}

A pack is its stored blocks one after the other, then its table, sealed (role
``pack-table``, bound to the pack's name), then the table's length (u32 big-endian):

    block 0 | block 1 | … | sealed table | len(sealed table)

The table (JSON) lists every block: ``[id, offset, length, size, compression]``
(where its stored bytes lie in the pack, its plaintext size, and "gzip" | "zstd" |
"none"). Packing keeps the store at far fewer objects than one per MiB (S3 requests
cost money and listing time) while blocks stay small enough to deduplicate well.
A pack is named by 32 random hex digits; its first two name its folder.
"""

from __future__ import annotations

import json
import secrets
import struct
from collections.abc import Callable
from dataclasses import dataclass

from backapp.engine.format.envelope import ENCRYPTED, open_sealed, seal
from backapp.engine.format.keys import FolderKeys
from backapp.errors import ArchiveError, IntegrityError
from backapp.storage import ObjectWriter, Storage, TransferCallback, join_key

PACKS = "packs"
PACK_SIZE = 16 * 1024 * 1024
WRITE_SIZE = 1024 * 1024
MAX_TABLE = 64 * 1024 * 1024
ALGORITHMS = ("gzip", "zstd", "none")


@dataclass(frozen=True, slots=True)
class BlockLocation:
    """Where a block lies: its pack, offset and stored length there, its plaintext size
    and compression."""

    pack: str
    offset: int
    length: int
    size: int
    algorithm: str


def new_pack_name() -> str:
    """Return a fresh pack name."""
    return secrets.token_hex(16)


def is_pack_name(name: str) -> bool:
    """Given a string, return whether it has the shape of a pack name."""
    return len(name) == 32 and all(c in "0123456789abcdef" for c in name)


def pack_key(base: str, name: str) -> str:
    """Given a config folder's key and a pack name, return the pack's key."""
    return join_key(base, PACKS, name[:2], name)


class PackWriter:
    """Writes blocks into packs, opening a new pack when one reaches PACK_SIZE. Each
    finished pack is reported to ``on_pack`` with its table (name -> location)."""

    def __init__(
        self,
        storage: Storage,
        base: str,
        keys: FolderKeys,
        on_pack: Callable[[str, dict[str, BlockLocation]], None],
        on_transfer: TransferCallback | None = None,
        pack_size: int = PACK_SIZE,
    ) -> None:
        self.storage = storage
        self.base = base
        self.keys = keys
        self.on_pack = on_pack
        self.sizes: dict[str, int] = {}  # finished packs and their stored sizes
        self.on_transfer = on_transfer
        self.pack_size = pack_size
        self.stored_bytes = 0  # bytes of finished packs
        self.packs = 0
        self._name = ""
        self._writer: ObjectWriter | None = None
        self._offset = 0
        self._table: dict[str, BlockLocation] = {}
        # Blocks reach the storage writer in pieces of about WRITE_SIZE: a write per
        # kilobyte-sized block would cost a storage call (and, cancellable, a thread) each.
        self._buffer = bytearray()

    def add(self, block_id: str, stored: bytes, size: int, algorithm: str) -> BlockLocation:
        """Given a block's id, stored bytes, plaintext size and compression, append it to
        the open pack; return where it lies. Raise StorageError."""
        if self._writer is None:
            self._name = new_pack_name()
            self._writer = self.storage.open_writer(
                pack_key(self.base, self._name), on_transfer=self.on_transfer
            )
            self._offset = 0
            self._table = {}
        self._buffer += stored
        if len(self._buffer) >= WRITE_SIZE:
            self._writer.write(self._buffer)
            self._buffer = bytearray()
        loc = BlockLocation(self._name, self._offset, len(stored), size, algorithm)
        self._table[block_id] = loc
        self._offset += len(stored)
        if self._offset >= self.pack_size:
            self.flush()
        return loc

    def pending(self, block_id: str) -> BlockLocation | None:
        """Given a block id, return its location if it is in the pack being written."""
        return self._table.get(block_id)

    def flush(self) -> None:
        """Finish the open pack (if any): write its table and commit it. Raise StorageError."""
        if self._writer is None:
            return
        rows = [
            [i, loc.offset, loc.length, loc.size, loc.algorithm] for i, loc in self._table.items()
        ]
        payload = json.dumps({"pack": self._name, "blocks": rows}, separators=(",", ":")).encode()
        table = seal(self.keys, "pack-table", self._name, payload)
        self._buffer += table + struct.pack(">I", len(table))
        self._writer.write(self._buffer)
        self._buffer = bytearray()
        writer, self._writer = self._writer, None
        try:
            info = writer.commit()
        except BaseException:
            writer.abort()
            raise
        expected = self._offset + len(table) + 4
        if info.size != expected:
            raise IntegrityError(
                f"pack {self._name}: storage reports {info.size} bytes, {expected} were written"
            )
        self.stored_bytes += info.size
        self.packs += 1
        self.sizes[self._name] = info.size
        self.on_pack(self._name, self._table)

    def abort(self) -> None:
        """Discard the pack being written."""
        self._buffer = bytearray()
        if self._writer is not None:
            self._writer.abort()
            self._writer = None


def read_table(
    storage: Storage, base: str, keys: FolderKeys, name: str, size: int
) -> dict[str, BlockLocation]:
    """Given a pack's name and stored size, return its table (block id -> location),
    checked: bound to this pack, every block inside the pack before the table. Raise
    IntegrityError (damaged, moved, or another config's), StorageError."""
    label = f"pack {name}"
    key = pack_key(base, name)
    if size < 4:
        raise ArchiveError(f"{label} is truncated ({size} bytes)")
    tail = b"".join(storage.get(key, size - 4, size))
    (table_len,) = struct.unpack(">I", tail)
    if not 0 < table_len <= min(MAX_TABLE, size - 4):
        raise ArchiveError(f"{label}: its table length is out of range (damaged or truncated)")
    start = size - 4 - table_len
    sealed = b"".join(storage.get(key, start, size - 4))
    if sealed[:1] != bytes([ENCRYPTED]):
        keys = FolderKeys(keys.slug)  # a pack of unencrypted backups
    payload = open_sealed(keys, "pack-table", name, sealed, f"the table of {label}")
    try:
        doc = json.loads(payload)
        if doc["pack"] != name:
            raise ValueError("names another pack")
        table: dict[str, BlockLocation] = {}
        for block_id, offset, length, plain, algorithm in doc["blocks"]:
            if (
                not isinstance(block_id, str)
                or len(block_id) != 64
                or algorithm not in ALGORITHMS
                or not (offset >= 0 and length >= 0 and offset + length <= start and plain >= 0)
            ):
                raise ValueError(f"bad row for block {str(block_id)[:16]}")
            table[block_id] = BlockLocation(name, offset, length, plain, algorithm)
    except (ValueError, KeyError, TypeError) as exc:
        raise ArchiveError(f"the table of {label} is damaged ({exc})") from None
    return table
