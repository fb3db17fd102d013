"""The envelope of format 2: the one place where objects and blocks are sealed.

Every sealed thing is bound to what it is and where it belongs: its associated data is

    "backapp/v2" 0x00 role 0x00 config-slug 0x00 name

(``role``: block, pack-table, index, marker; ``name``: the block id, pack name,
index name or backup id). Encrypted (version byte 0x02):

    0x02 | nonce (12 random bytes) | AES-256-GCM(data key, nonce, payload, associated data)

Not encrypted (version byte 0x00), a checksum catches damage and moved objects
(without a key nothing can stop a deliberate forgery):

    0x00 | payload | SHA-256(associated data | payload)

Blocks are the exception when not encrypted: a block is stored as its bare
compressed bytes (a gzip member or zstd frame, so a backup's blocks are a tar
stream that ``tar xzf`` reads), checked by its id, the SHA-256 of its plaintext.
"""

from __future__ import annotations

import hashlib
import hmac
import os

from cryptography.exceptions import InvalidTag

from backapp.engine.compress import Codec
from backapp.engine.format.keys import FolderKeys
from backapp.errors import ArchiveError, TamperedError

ENCRYPTED = 0x02
PLAIN = 0x00
NONCE_SIZE = 12
TAG_SIZE = 16
CHECKSUM_SIZE = 32
ROLES = frozenset({"block", "pack-table", "index", "marker", "manifest"})


def associated_data(keys: FolderKeys, role: str, name: str) -> bytes:
    """Given a folder's keys, a role and a name, return the bytes an object is bound to."""
    assert role in ROLES, role
    return b"\x00".join((b"backapp/v2", role.encode(), keys.slug.encode(), name.encode()))


def overhead(keys: FolderKeys) -> int:
    """Return how many bytes sealing adds to a payload (not to a plain block)."""
    return 1 + (NONCE_SIZE + TAG_SIZE if keys.encrypted else CHECKSUM_SIZE)


def seal(keys: FolderKeys, role: str, name: str, payload: bytes) -> bytes:
    """Given a folder's keys, what the payload is (role, name) and the payload, return it
    sealed: encrypted and authenticated, or checksummed when the folder is not encrypted."""
    aad = associated_data(keys, role, name)
    if keys.encrypted:
        nonce = os.urandom(NONCE_SIZE)
        return bytes([ENCRYPTED]) + nonce + keys.aead.encrypt(nonce, payload, aad)
    return bytes([PLAIN]) + payload + hashlib.sha256(aad + payload).digest()


def open_sealed(keys: FolderKeys, role: str, name: str, sealed: bytes, label: str) -> bytes:
    """Given a folder's keys, what the object should be (role, name), its sealed bytes and
    a label for messages, return the payload. Raise TamperedError (modified, moved, swapped
    or made for another config or key), ArchiveError (not a format-2 object)."""
    aad = associated_data(keys, role, name)
    version = sealed[0] if sealed else None
    if keys.encrypted:
        if version != ENCRYPTED:
            raise TamperedError(f"{label} is not encrypted, but this backup is")
        if len(sealed) < 1 + NONCE_SIZE + TAG_SIZE:
            raise TamperedError(f"{label} is truncated")
        nonce = sealed[1 : 1 + NONCE_SIZE]
        try:
            return keys.aead.decrypt(nonce, sealed[1 + NONCE_SIZE :], aad)
        except InvalidTag:
            raise TamperedError(
                f"{label} failed authentication: it was modified, moved from elsewhere, or "
                "made with another BACKUP_ENCRYPTION_KEY"
            ) from None
    if version == ENCRYPTED:
        raise TamperedError(f"{label} is encrypted, but this backup is not")
    if version != PLAIN or len(sealed) < 1 + CHECKSUM_SIZE:
        raise ArchiveError(f"{label} is not a BackApp format-2 object")
    payload = sealed[1:-CHECKSUM_SIZE]
    if not hmac.compare_digest(hashlib.sha256(aad + payload).digest(), sealed[-CHECKSUM_SIZE:]):
        raise TamperedError(f"{label} is damaged or was moved from elsewhere (checksum)")
    return payload


def seal_block(keys: FolderKeys, block_id: str, compressed: bytes) -> bytes:
    """Given a block's id and its compressed bytes, return what is stored."""
    if not keys.encrypted:
        return compressed
    return seal(keys, "block", block_id, compressed)


def open_block(
    keys: FolderKeys, block_id: str, stored: bytes, codec: Codec, size: int, label: str
) -> bytes:
    """Given a block's id, its stored bytes, its compression and plaintext size, return
    its plaintext, checked against its id. Raise TamperedError, ArchiveError."""
    compressed = open_sealed(keys, "block", block_id, stored, label) if keys.encrypted else stored
    try:
        plain = codec.decompress(compressed, size)
    except ArchiveError as exc:
        raise ArchiveError(f"{label} is damaged ({exc})") from None
    if keys.block_id(plain) != block_id:
        raise TamperedError(f"{label} does not hold the content its id names (damaged or swapped)")
    return plain
