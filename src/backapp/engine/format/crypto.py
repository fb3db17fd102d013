"""Streaming authenticated encryption of stored objects (format in docs/FORMAT.md).

An encrypted object is a 64-byte header followed by AES-256-GCM segments:

    header  = magic "BKAPENC1" | version u8 (1) | reserved 3 bytes | segment size u32 BE
              | salt 32 bytes | key check 16 bytes
    segment = AES-256-GCM(key, nonce, plaintext[i*S : (i+1)*S], aad=header) -> ciphertext+tag
    nonce   = segment index as 11-byte big-endian | final flag (0x01 last segment, else 0x00)

The object key and the key check are derived from BACKUP_ENCRYPTION_KEY with
HKDF-SHA256 (salt = the header's random salt), so every object has its own key
and nonces never repeat under one key. The counter in the nonce catches
reordering, the final flag catches truncation at a segment boundary, the
header as associated data catches header edits, and the key check tells a
wrong key from damaged data.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import os
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from backapp.errors import (
    EncryptionKeyError,
    IntegrityError,
    TamperedError,
    TruncatedError,
    WrongKeyError,
)

MAGIC = b"BKAPENC1"
VERSION = 1
SALT_SIZE = 32
CHECK_SIZE = 16
TAG_SIZE = 16
HEADER_SIZE = len(MAGIC) + 4 + 4 + SALT_SIZE + CHECK_SIZE  # 64
DEFAULT_SEGMENT_SIZE = 1024 * 1024
MIN_KEY_BYTES = 32
_MAX_SEGMENT = 64 * 1024 * 1024
_KEY_INFO = b"backapp/v1/object-key"
_CHECK_INFO = b"backapp/v1/key-check"


@dataclass(frozen=True, repr=False)
class MasterKey:
    """The decoded BACKUP_ENCRYPTION_KEY (never printed: its repr hides the bytes)."""

    secret: bytes

    def __repr__(self) -> str:
        return "MasterKey(***)"

    @classmethod
    def from_base64(cls, text: str | None) -> MasterKey:
        """Given the base64 text of the key, return it. Raise EncryptionKeyError."""
        if text is None or not text.strip():
            raise EncryptionKeyError(
                "encryption is enabled but BACKUP_ENCRYPTION_KEY is not set "
                "(generate one with: openssl rand -base64 32)"
            )
        try:
            # `openssl rand -base64 64` wraps its output: line breaks are not part of the key.
            raw = base64.b64decode("".join(text.split()), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise EncryptionKeyError(
                "BACKUP_ENCRYPTION_KEY is not valid base64 "
                "(generate one with: openssl rand -base64 32)"
            ) from exc
        if len(raw) < MIN_KEY_BYTES:
            raise EncryptionKeyError(
                f"BACKUP_ENCRYPTION_KEY decodes to {len(raw)} bytes; at least {MIN_KEY_BYTES} "
                "are required (generate one with: openssl rand -base64 32)"
            )
        return cls(raw)

    @classmethod
    def configured(cls, text: str | None, *, required: bool) -> MasterKey | None:
        """Given the configured key text (or None), return the key; None if it is not set
        and not required. Raise EncryptionKeyError (missing but required, or malformed)."""
        if text is None and not required:
            return None
        return cls.from_base64(text)

    def derive(self, salt: bytes) -> tuple[bytes, bytes]:
        """Given an object's salt, return its (AES-256 key, key check value)."""
        key = HKDF(hashes.SHA256(), 32, salt, _KEY_INFO).derive(self.secret)
        check = HKDF(hashes.SHA256(), CHECK_SIZE, salt, _CHECK_INFO).derive(self.secret)
        return key, check


def _nonce(index: int, final: bool) -> bytes:
    return index.to_bytes(11, "big") + (b"\x01" if final else b"\x00")


def encrypted_size(plain_size: int, segment_size: int = DEFAULT_SEGMENT_SIZE) -> int:
    """Given a plaintext size, return the size of its encrypted object."""
    segments = max(1, -(-plain_size // segment_size))
    return HEADER_SIZE + plain_size + segments * TAG_SIZE


class Encryptor:
    """Encrypts one object as a stream: feed plaintext, collect ciphertext."""

    def __init__(self, key: MasterKey, segment_size: int = DEFAULT_SEGMENT_SIZE) -> None:
        salt = os.urandom(SALT_SIZE)
        aes_key, check = key.derive(salt)
        self._aead = AESGCM(aes_key)
        self._segment = segment_size
        self.header = (
            MAGIC + bytes([VERSION, 0, 0, 0]) + struct.pack(">I", segment_size) + salt + check
        )
        self._buffer = bytearray()
        self._index = 0
        self._started = False
        self._finished = False

    def update(self, data: bytes | bytearray | memoryview) -> bytes:
        """Given plaintext, return the ciphertext that is ready (whole segments only)."""
        assert not self._finished, "update after finalize"
        parts: list[bytes] = []
        if not self._started:
            parts.append(self.header)
            self._started = True
        view = memoryview(data)
        size = self._segment
        # Keep at least one byte back: the last segment must carry the final flag.
        if self._buffer:
            take = min(len(view), size - len(self._buffer))
            self._buffer += view[:take]
            view = view[take:]
            if len(self._buffer) == size and view:
                parts.append(self._seal(self._buffer, final=False))
                self._buffer = bytearray()
        while len(view) > size:
            parts.append(self._seal(view[:size], final=False))
            view = view[size:]
        self._buffer += view
        return b"".join(parts)

    def finalize(self) -> bytes:
        """Return the remaining ciphertext, ending with the final segment."""
        assert not self._finished, "finalize twice"
        out = bytearray()
        if not self._started:
            out += self.header
            self._started = True
        out += self._seal(bytes(self._buffer), final=True)
        self._buffer.clear()
        self._finished = True
        return bytes(out)

    def _seal(self, chunk: bytes | bytearray | memoryview, *, final: bool) -> bytes:
        sealed = self._aead.encrypt(_nonce(self._index, final), chunk, self.header)
        self._index += 1
        return sealed


@dataclass(frozen=True)
class Header:
    """A parsed object header."""

    raw: bytes
    segment_size: int
    salt: bytes
    check: bytes


def parse_header(raw: bytes) -> Header:
    """Given the first HEADER_SIZE bytes of an object, return its Header. Raise IntegrityError."""
    if len(raw) < HEADER_SIZE:
        if MAGIC.startswith(raw[: len(MAGIC)]) and raw:
            raise TruncatedError("encrypted object is truncated: its header is incomplete")
        raise IntegrityError("not a BackApp encrypted object (bad magic)")
    if raw[: len(MAGIC)] != MAGIC:
        raise IntegrityError("not a BackApp encrypted object (bad magic)")
    version = raw[len(MAGIC)]
    if version != VERSION:
        raise IntegrityError(f"unsupported encryption format version {version}")
    (segment_size,) = struct.unpack(">I", raw[12:16])
    if not 1 <= segment_size <= _MAX_SEGMENT:
        raise TamperedError("encrypted object header is damaged (segment size out of range)")
    return Header(raw[:HEADER_SIZE], segment_size, raw[16:48], raw[48:64])


def key_matches(key: MasterKey, raw: bytes) -> bool | None:
    """Given a key and the first HEADER_SIZE bytes of an object, return whether the key is
    the one the object was encrypted with (None: the header cannot be parsed)."""
    try:
        header = parse_header(raw)
    except IntegrityError:
        return None
    return hmac.compare_digest(key.derive(header.salt)[1], header.check)


class Decryptor:
    """Decrypts one object as a stream, authenticating every segment."""

    def __init__(self, key: MasterKey, name: str = "object") -> None:
        self._key = key
        self._name = name
        self._header: Header | None = None
        self._aead: AESGCM | None = None
        self._buffer = bytearray()
        self._index = 0
        self._done = False

    def update(self, data: bytes | bytearray | memoryview) -> bytes:
        """Given ciphertext, return the plaintext of complete segments. Raise IntegrityError."""
        if self._done:
            if data:
                raise TamperedError(f"{self._name}: data found after the final segment")
            return b""
        self._buffer += data
        if self._header is None:
            if len(self._buffer) < HEADER_SIZE:
                return b""
            self._start(bytes(self._buffer[:HEADER_SIZE]))
            del self._buffer[:HEADER_SIZE]
        assert self._header is not None
        sealed = self._header.segment_size + TAG_SIZE
        out = bytearray()
        # A full-size segment may still be the final one; decide only when more follows.
        while len(self._buffer) > sealed:
            out += self._open(bytes(self._buffer[:sealed]), final=False)
            del self._buffer[:sealed]
        return bytes(out)

    def finalize(self) -> bytes:
        """Return the plaintext of the final segment. Raise IntegrityError if it is missing."""
        if self._done:
            return b""
        if self._header is None:
            parse_header(bytes(self._buffer))  # raises the precise reason
            raise TruncatedError(f"{self._name} is truncated")
        if len(self._buffer) < TAG_SIZE:
            raise TruncatedError(
                f"{self._name} is truncated after segment {self._index} (its end is missing)"
            )
        tail = bytes(self._buffer)
        self._buffer.clear()
        out = self._open(tail, final=True)
        self._done = True
        return out

    def _start(self, raw: bytes) -> None:
        header = parse_header(raw)
        aes_key, check = self._key.derive(header.salt)
        if not hmac.compare_digest(check, header.check):
            raise WrongKeyError(
                f"{self._name} was encrypted with a different key: check BACKUP_ENCRYPTION_KEY"
            )
        self._header = header
        self._aead = AESGCM(aes_key)

    def _open(self, sealed: bytes, *, final: bool) -> bytes:
        assert self._aead is not None and self._header is not None
        try:
            plain = self._aead.decrypt(_nonce(self._index, final), sealed, self._header.raw)
        except InvalidTag:
            raise self._diagnose(sealed, final) from None
        self._index += 1
        return plain

    def _diagnose(self, sealed: bytes, final: bool) -> IntegrityError:
        assert self._aead is not None and self._header is not None
        if final:
            try:
                self._aead.decrypt(_nonce(self._index, False), sealed, self._header.raw)
            except InvalidTag:
                pass
            else:
                return TruncatedError(
                    f"{self._name} is truncated: segment {self._index} is not the final "
                    "segment, the rest of the object is missing"
                )
            if len(sealed) < self._header.segment_size + TAG_SIZE:
                return TamperedError(
                    f"{self._name}: segment {self._index} (the last) failed authentication: "
                    "the object was modified or cut short"
                )
        return TamperedError(
            f"{self._name}: segment {self._index} failed authentication: the data was "
            "modified, corrupted or its segments reordered"
        )


def encrypt_stream(
    chunks: Iterable[bytes], key: MasterKey, segment_size: int = DEFAULT_SEGMENT_SIZE
) -> Iterator[bytes]:
    """Given plaintext chunks and a key, yield the encrypted object's bytes."""
    enc = Encryptor(key, segment_size)
    for chunk in chunks:
        out = enc.update(chunk)
        if out:
            yield out
    yield enc.finalize()


def decrypt_stream(
    chunks: Iterable[bytes], key: MasterKey, name: str = "object"
) -> Iterator[bytes]:
    """Given an encrypted object's bytes, yield its plaintext. Raise IntegrityError."""
    dec = Decryptor(key, name)
    for chunk in chunks:
        out = dec.update(chunk)
        if out:
            yield out
    tail = dec.finalize()
    if tail:
        yield tail


class SegmentReader:
    """Random access to the segments of one encrypted object, given its header and the
    size of its plaintext (from the manifest: what the object should hold)."""

    def __init__(self, key: MasterKey, header: bytes, plain_size: int, name: str) -> None:
        self._dec = Decryptor(key, name)
        self._dec._start(header[:HEADER_SIZE])
        assert self._dec._header is not None
        self.segment_size = self._dec._header.segment_size
        self.plain_size = plain_size
        self.segments = max(1, -(-plain_size // self.segment_size))
        self.object_size = HEADER_SIZE + plain_size + self.segments * TAG_SIZE

    def cipher_range(self, first: int, last: int) -> tuple[int, int]:
        """Given segment indexes first..last, return their byte range [start, end) in the object."""
        sealed = self.segment_size + TAG_SIZE
        start = HEADER_SIZE + first * sealed
        end = min(HEADER_SIZE + (last + 1) * sealed, self.object_size)
        return start, end

    def sealed_length(self, index: int) -> int:
        """Given a segment index, return the length of its sealed bytes."""
        if index < self.segments - 1:
            return self.segment_size + TAG_SIZE
        return self.plain_size - index * self.segment_size + TAG_SIZE

    def open(self, index: int, sealed: bytes) -> bytes:
        """Given a segment index and sealed bytes, return its plaintext. Raise IntegrityError."""
        self._dec._index = index
        return self._dec._open(sealed, final=index == self.segments - 1)
