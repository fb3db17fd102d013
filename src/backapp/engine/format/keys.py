"""The keys of one config folder in format 2, derived from BACKUP_ENCRYPTION_KEY.

    id key     = HKDF-SHA256(K, salt="backapp/v2", info="backapp/v2/block-id\\0" + slug)
    data key   = HKDF-SHA256(K, salt="backapp/v2", info="backapp/v2/data\\0" + slug)
    marker key = HKDF-SHA256(K, salt="backapp/v2", info="backapp/v2/marker\\0" + slug)
    key check  = 16 bytes of HKDF-SHA256(K, salt="backapp/v2", info="backapp/v2/key-check\\0")

Every config folder has its own keys, so a block, pack or marker copied from one
config's folder into another's does not open there, even under the same
BACKUP_ENCRYPTION_KEY. A block is named by HMAC-SHA256(id key, SHA-256(plaintext))
when encrypted (the name reveals nothing about the content) and by SHA-256(plaintext)
when not.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from backapp.engine.format.crypto import MasterKey

_SALT = b"backapp/v2"
ID_SIZE = 32  # bytes of a block id (64 hex digits)


def _derive(master: MasterKey, purpose: str, slug: str) -> bytes:
    info = b"backapp/v2/" + purpose.encode() + b"\x00" + slug.encode()
    return HKDF(hashes.SHA256(), 32, _SALT, info).derive(master.secret)


@dataclass(frozen=True, repr=False)
class FolderKeys:
    """The keys of one config folder (``slug``); all None when the folder is not encrypted."""

    slug: str
    id_key: bytes | None = None
    data_key: bytes | None = None
    marker_key: bytes | None = None
    key_check: str | None = None  # tells a wrong key from damage (the same in every folder)
    _aead: AESGCM | None = field(default=None, compare=False)

    def __repr__(self) -> str:
        return f"FolderKeys({self.slug!r}, encrypted={self.encrypted})"

    @classmethod
    def derive(cls, master: MasterKey | None, slug: str) -> FolderKeys:
        """Given the master key (None: not encrypted) and a config folder, return its keys."""
        if master is None:
            return cls(slug)
        data = _derive(master, "data", slug)
        return cls(
            slug,
            id_key=_derive(master, "block-id", slug),
            data_key=data,
            marker_key=_derive(master, "marker", slug),
            key_check=_derive(master, "key-check", "")[:16].hex(),
            _aead=AESGCM(data),
        )

    @property
    def encrypted(self) -> bool:
        """Return whether objects of this folder are sealed with AES-256-GCM."""
        return self._aead is not None

    @property
    def aead(self) -> AESGCM:
        """Return the AES-256-GCM cipher of the data key (encrypted folders only)."""
        assert self._aead is not None, "not an encrypted folder"
        return self._aead

    def block_id(self, plain: bytes | bytearray | memoryview) -> str:
        """Given a block's plaintext, return its id (64 hex digits)."""
        return self.block_id_of_digest(hashlib.sha256(plain).digest())

    def block_id_of_digest(self, digest: bytes) -> str:
        """Given the SHA-256 digest of a block's plaintext, return the block's id: the
        digest itself (hex) when not encrypted, else HMAC-SHA256(id key, digest) — a
        keyed hash of the plaintext that tells nothing of it without the key. (A file of
        one block is hashed once: its SHA-256 is also its block's.)"""
        if self.id_key is None:
            return digest.hex()
        return hmac.new(self.id_key, digest, hashlib.sha256).hexdigest()

    def mac(self, data: bytes) -> str:
        """Given bytes, return their MAC under the marker key (hex); encrypted folders only."""
        assert self.marker_key is not None, "not an encrypted folder"
        return hmac.new(self.marker_key, data, hashlib.sha256).hexdigest()
