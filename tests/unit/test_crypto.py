"""Streaming encryption of stored objects: round trips, tamper detection, keys, format."""

from __future__ import annotations

import base64
import os
import struct
from itertools import pairwise

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import given, settings
from hypothesis import strategies as st

from backapp.engine.format.crypto import (
    HEADER_SIZE,
    TAG_SIZE,
    MasterKey,
    SegmentReader,
    decrypt_stream,
    encrypt_stream,
    encrypted_size,
)
from backapp.errors import (
    EncryptionKeyError,
    IntegrityError,
    TamperedError,
    TruncatedError,
    WrongKeyError,
)

SEGMENT = 64  # small, so that segment boundaries are cheap to reach
SEALED = SEGMENT + TAG_SIZE
SECRET = bytes(range(32))
KEY = MasterKey(SECRET)
OTHER_KEY = MasterKey(bytes(range(1, 33)))

# 3 full segments and a short final one.
PLAIN = bytes(i % 251 for i in range(3 * SEGMENT + 17))


def encrypt(data: bytes, key: MasterKey = KEY, segment_size: int = SEGMENT) -> bytes:
    return b"".join(encrypt_stream([data], key, segment_size))


def decrypt(blob: bytes, key: MasterKey = KEY) -> bytes:
    return b"".join(decrypt_stream([blob], key, name="data.tar.gz.enc"))


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    """Given data and cut positions, return the pieces between them (empty ones included)."""
    bounds = [0, *sorted(c % (len(data) + 1) for c in cuts), len(data)]
    return [data[a:b] for a, b in pairwise(bounds)]


def sizes_near_segment_multiples(segment: int) -> st.SearchStrategy[int]:
    exact = st.integers(0, 5).map(lambda k: k * segment)
    near = st.tuples(st.integers(1, 5), st.sampled_from([-1, 1])).map(
        lambda t: t[0] * segment + t[1]
    )
    return st.one_of(exact, near, st.integers(0, 6 * segment))


@st.composite
def plaintexts(draw: st.DrawFn, segment: int = SEGMENT) -> bytes:
    size = draw(sizes_near_segment_multiples(segment))
    return draw(st.binary(min_size=size, max_size=size))


# --- round trip -----------------------------------------------------------------------


@settings(max_examples=150)
@given(
    data=plaintexts(),
    segment_size=st.sampled_from([SEGMENT, 1024]),
    plain_cuts=st.lists(st.integers(0, 10_000), max_size=8),
    cipher_cuts=st.lists(st.integers(0, 10_000), max_size=8),
)
def test_any_data_in_any_chunking_decrypts_to_the_original(
    data: bytes, segment_size: int, plain_cuts: list[int], cipher_cuts: list[int]
) -> None:
    blob = b"".join(encrypt_stream(split(data, plain_cuts), KEY, segment_size))

    assert len(blob) == encrypted_size(len(data), segment_size)
    assert b"".join(decrypt_stream(split(blob, cipher_cuts), KEY)) == data


@pytest.mark.parametrize(
    "size",
    [0, 1, SEGMENT - 1, SEGMENT, SEGMENT + 1, 2 * SEGMENT - 1, 2 * SEGMENT, 2 * SEGMENT + 1],
)
def test_sizes_at_and_around_segment_boundaries_round_trip_one_byte_at_a_time(size: int) -> None:
    data = os.urandom(size)
    blob = b"".join(encrypt_stream([data[i : i + 1] for i in range(size)], KEY, SEGMENT))

    assert len(blob) == encrypted_size(size, SEGMENT)
    assert b"".join(decrypt_stream([blob[i : i + 1] for i in range(len(blob))], KEY)) == data


def test_empty_plaintext_round_trips_as_a_header_and_one_empty_segment() -> None:
    blob = encrypt(b"")

    assert len(blob) == encrypted_size(0, SEGMENT) == HEADER_SIZE + TAG_SIZE
    assert decrypt(blob) == b""


def test_encrypting_the_same_plaintext_twice_gives_different_objects() -> None:
    first, second = encrypt(PLAIN), encrypt(PLAIN)

    assert first[16:48] != second[16:48]  # the random salt
    assert first[HEADER_SIZE:] != second[HEADER_SIZE:]
    assert decrypt(first) == decrypt(second) == PLAIN


# --- wrong key and damage -------------------------------------------------------------


def test_wrong_key_is_reported_as_wrong_key_naming_the_setting() -> None:
    with pytest.raises(WrongKeyError, match="BACKUP_ENCRYPTION_KEY"):
        decrypt(encrypt(PLAIN), OTHER_KEY)


def expected_error(position: int) -> tuple[type[IntegrityError], ...]:
    """Given the offset of a damaged byte, return the errors that may report it."""
    if position < 12:  # magic, version, reserved
        return (IntegrityError,) if position < 9 else (TamperedError,)
    if position < 16:  # segment size: damage, never a wrong key
        return (TamperedError, IntegrityError)
    if position < HEADER_SIZE:  # salt and key check
        return (WrongKeyError,)
    return (TamperedError,)


@pytest.mark.parametrize("mask", [0x01, 0x80, 0xFF])
def test_flipping_any_single_byte_is_detected_with_the_right_error(mask: int) -> None:
    blob = encrypt(PLAIN)
    for position in range(len(blob)):
        damaged = bytearray(blob)
        damaged[position] ^= mask

        with pytest.raises(IntegrityError) as caught:
            decrypt(bytes(damaged))

        allowed = expected_error(position)
        assert isinstance(caught.value, allowed), (position, caught.value)
        if position >= 12:
            # Only the salt and the key check may be blamed on the key.
            assert isinstance(caught.value, WrongKeyError) == (16 <= position < HEADER_SIZE)


@pytest.mark.parametrize("position", range(8))
def test_damaged_magic_is_reported_as_not_an_encrypted_object(position: int) -> None:
    damaged = bytearray(encrypt(PLAIN))
    damaged[position] ^= 0x20

    with pytest.raises(IntegrityError, match="not a BackApp encrypted object") as caught:
        decrypt(bytes(damaged))
    assert type(caught.value) is IntegrityError


def test_unknown_format_version_is_reported_as_unsupported() -> None:
    damaged = bytearray(encrypt(PLAIN))
    damaged[8] = 2

    with pytest.raises(IntegrityError, match="unsupported encryption format version 2"):
        decrypt(bytes(damaged))


@pytest.mark.parametrize("size", [0, 2**32 - 1, 64 * 1024 * 1024 + 1])
def test_out_of_range_segment_size_is_reported_as_damage(size: int) -> None:
    blob = bytearray(encrypt(PLAIN))
    blob[12:16] = struct.pack(">I", size)

    with pytest.raises(TamperedError, match="segment size"):
        decrypt(bytes(blob))


@pytest.mark.parametrize(("first", "second"), [(0, 1), (1, 2), (0, 2)])
@pytest.mark.parametrize("plain_size", [3 * SEGMENT, 3 * SEGMENT + 17])
def test_swapping_two_segments_is_reported_as_tampering(
    first: int, second: int, plain_size: int
) -> None:
    blob = encrypt(os.urandom(plain_size))
    segments = [blob[HEADER_SIZE + i * SEALED : HEADER_SIZE + (i + 1) * SEALED] for i in range(3)]
    segments[first], segments[second] = segments[second], segments[first]
    swapped = blob[:HEADER_SIZE] + b"".join(segments) + blob[HEADER_SIZE + 3 * SEALED :]

    with pytest.raises(TamperedError):
        decrypt(swapped)


@pytest.mark.parametrize("plain_size", [3 * SEGMENT, 3 * SEGMENT + 17])
def test_truncation_exactly_at_a_segment_boundary_is_reported_as_truncation(
    plain_size: int,
) -> None:
    blob = encrypt(os.urandom(plain_size))
    boundaries = range(HEADER_SIZE, len(blob), SEALED)  # before each segment, the last too
    assert len(boundaries) == -(-plain_size // SEGMENT)

    for cut in boundaries:
        with pytest.raises(TruncatedError, match="truncated"):
            decrypt(blob[:cut])


def test_truncation_anywhere_else_is_detected_and_never_decrypts() -> None:
    blob = encrypt(PLAIN)
    for cut in range(len(blob)):
        with pytest.raises(IntegrityError) as caught:
            decrypt(blob[:cut])
        if cut > HEADER_SIZE:
            assert isinstance(caught.value, TamperedError | TruncatedError), (cut, caught.value)
        elif cut > 0:
            assert isinstance(caught.value, TruncatedError), (cut, caught.value)


@settings(max_examples=100)
@given(
    plain_size=st.sampled_from([0, 1, SEGMENT, 3 * SEGMENT, 3 * SEGMENT + 17]),
    extra=st.binary(min_size=1, max_size=3 * SEALED),
    separate_chunk=st.booleans(),
)
def test_bytes_appended_after_the_final_segment_are_detected(
    plain_size: int, extra: bytes, separate_chunk: bool
) -> None:
    blob = encrypt(os.urandom(plain_size))
    chunks = [blob, extra] if separate_chunk else [blob + extra]

    with pytest.raises(IntegrityError):
        b"".join(decrypt_stream(chunks, KEY))


def test_a_second_object_appended_after_the_first_is_detected() -> None:
    with pytest.raises(IntegrityError):
        decrypt(encrypt(PLAIN) + encrypt(PLAIN))


# --- the key --------------------------------------------------------------------------


@pytest.mark.parametrize("text", [None, "", "   ", "\n"])
def test_missing_key_says_the_setting_is_not_set(text: str | None) -> None:
    with pytest.raises(EncryptionKeyError, match="BACKUP_ENCRYPTION_KEY is not set"):
        MasterKey.from_base64(text)


@pytest.mark.parametrize("text", ["not base64 at all!", "abc", "%%%%", "YWJj*ZGVm"])
def test_key_that_is_not_base64_is_rejected(text: str) -> None:
    with pytest.raises(EncryptionKeyError, match="not valid base64"):
        MasterKey.from_base64(text)


@given(size=st.integers(1, 31))
def test_short_key_is_rejected_with_its_length_and_how_to_make_one(size: int) -> None:
    text = base64.b64encode(os.urandom(size)).decode()

    with pytest.raises(EncryptionKeyError) as caught:
        MasterKey.from_base64(text)
    assert f"decodes to {size} bytes" in str(caught.value)
    assert "openssl rand -base64 32" in str(caught.value)


@given(secret=st.binary(min_size=32, max_size=128), newline=st.booleans())
def test_openssl_style_keys_of_32_bytes_or_more_are_accepted(secret: bytes, newline: bool) -> None:
    text = base64.b64encode(secret).decode() + ("\n" if newline else "")

    key = MasterKey.from_base64(text)

    assert key.secret == secret
    assert decrypt(encrypt(b"hello", key), key) == b"hello"


def test_a_key_generated_like_openssl_rand_base64_32_encrypts() -> None:
    key = MasterKey.from_base64(base64.b64encode(os.urandom(32)).decode())

    assert decrypt(encrypt(PLAIN, key), key) == PLAIN


def test_the_repr_of_a_key_never_shows_the_secret() -> None:
    secret = os.urandom(32)
    key = MasterKey.from_base64(base64.b64encode(secret).decode())
    shown = [repr(key), str(key), f"{key}", repr([key]), repr({"key": key})]

    for text in shown:
        assert "MasterKey(***)" in text
        for form in (repr(secret), secret.hex(), base64.b64encode(secret).decode()):
            assert form not in text


# --- random access --------------------------------------------------------------------


@settings(max_examples=60)
@given(data=plaintexts())
def test_each_segment_decrypts_alone_to_its_slice_of_the_plaintext(data: bytes) -> None:
    blob = encrypt(data)
    reader = SegmentReader(KEY, blob[:HEADER_SIZE], len(data), "data.tar.gz.enc")

    assert reader.object_size == len(blob)
    assert reader.segments == max(1, -(-len(data) // SEGMENT))
    for index in reversed(range(reader.segments)):  # any order: no segment needs another
        start, end = reader.cipher_range(index, index)
        assert end - start == reader.sealed_length(index)
        assert reader.open(index, blob[start:end]) == data[index * SEGMENT : (index + 1) * SEGMENT]


def test_a_range_of_segments_covers_exactly_those_segments_up_to_the_short_final_one() -> None:
    blob = encrypt(PLAIN)
    reader = SegmentReader(KEY, blob[:HEADER_SIZE], len(PLAIN), "data.tar.gz.enc")

    start, end = reader.cipher_range(1, 3)

    assert (start, end) == (HEADER_SIZE + SEALED, len(blob))
    assert reader.sealed_length(3) == 17 + TAG_SIZE
    opened = b"".join(
        reader.open(i, blob[HEADER_SIZE + i * SEALED : HEADER_SIZE + i * SEALED + SEALED])
        for i in range(1, 4)
    )
    assert opened == PLAIN[SEGMENT:]


def test_random_access_rejects_a_segment_read_at_the_wrong_index() -> None:
    blob = encrypt(PLAIN)
    reader = SegmentReader(KEY, blob[:HEADER_SIZE], len(PLAIN), "data.tar.gz.enc")
    start, end = reader.cipher_range(1, 1)

    with pytest.raises(TamperedError):
        reader.open(2, blob[start:end])


def test_random_access_with_the_wrong_key_is_reported_as_wrong_key() -> None:
    blob = encrypt(PLAIN)

    with pytest.raises(WrongKeyError):
        SegmentReader(OTHER_KEY, blob[:HEADER_SIZE], len(blob), "data.tar.gz.enc")


# --- the documented format ------------------------------------------------------------
# An independent implementation written from the module docstring (docs/FORMAT.md):
# if either direction breaks, objects already in storage or written by other tools
# no longer read.


def _reference_key(secret: bytes, salt: bytes, info: bytes, length: int) -> bytes:
    return HKDF(hashes.SHA256(), length, salt, info).derive(secret)


def _reference_nonce(index: int, final: bool) -> bytes:
    return index.to_bytes(11, "big") + bytes([1 if final else 0])


def reference_decrypt(blob: bytes, secret: bytes) -> bytes:
    header = blob[:64]
    assert header[:8] == b"BKAPENC1"
    assert header[8] == 1
    assert header[9:12] == b"\x00\x00\x00"
    (segment_size,) = struct.unpack(">I", header[12:16])
    salt = header[16:48]
    aead = AESGCM(_reference_key(secret, salt, b"backapp/v1/object-key", 32))
    body = blob[64:]
    step = segment_size + 16
    sealed = [body[i : i + step] for i in range(0, len(body), step)]
    return b"".join(
        aead.decrypt(_reference_nonce(i, i == len(sealed) - 1), piece, header)
        for i, piece in enumerate(sealed)
    )


def reference_encrypt(plain: bytes, secret: bytes, segment_size: int) -> bytes:
    salt = os.urandom(32)
    # The key check is 16 bytes of HKDF-SHA256 with its own info string.
    check = _reference_key(secret, salt, b"backapp/v1/key-check", 16)
    header = b"BKAPENC1" + bytes([1, 0, 0, 0]) + struct.pack(">I", segment_size) + salt + check
    pieces = [plain[i : i + segment_size] for i in range(0, len(plain), segment_size)] or [b""]
    aead = AESGCM(_reference_key(secret, salt, b"backapp/v1/object-key", 32))
    return header + b"".join(
        aead.encrypt(_reference_nonce(i, i == len(pieces) - 1), piece, header)
        for i, piece in enumerate(pieces)
    )


@pytest.mark.parametrize("plain_size", [0, 5, 3 * SEGMENT, 3 * SEGMENT + 17])
def test_objects_follow_the_documented_format(plain_size: int) -> None:
    plain = os.urandom(plain_size)

    assert reference_decrypt(encrypt(plain), SECRET) == plain


@pytest.mark.parametrize("plain_size", [0, 5, 3 * SEGMENT, 3 * SEGMENT + 17])
def test_objects_written_from_the_documented_format_decrypt(plain_size: int) -> None:
    plain = os.urandom(plain_size)

    assert decrypt(reference_encrypt(plain, SECRET, SEGMENT)) == plain
