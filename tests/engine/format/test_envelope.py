"""Format 2's envelope and keys: what is sealed for one place opens only there."""

from __future__ import annotations

import base64
import hashlib
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backapp.engine.compress import Codec
from backapp.engine.format.crypto import MasterKey
from backapp.engine.format.envelope import open_block, open_sealed, seal, seal_block
from backapp.engine.format.keys import FolderKeys
from backapp.errors import ArchiveError, TamperedError

MASTER = MasterKey(os.urandom(32))
ENCRYPTED = FolderKeys.derive(MASTER, "photos")
PLAIN = FolderKeys.derive(None, "photos")


@settings(max_examples=60, deadline=None)
@given(payload=st.binary(max_size=4096), encrypted=st.booleans(), name=st.text(max_size=40))
def test_sealed_payload_opens_where_it_was_sealed(
    payload: bytes, encrypted: bool, name: str
) -> None:
    keys = ENCRYPTED if encrypted else PLAIN
    sealed = seal(keys, "index", name, payload)
    assert open_sealed(keys, "index", name, sealed, "index x") == payload
    if encrypted and payload:
        assert payload not in sealed or len(payload) < 8


@pytest.mark.parametrize("keys", [ENCRYPTED, PLAIN], ids=["encrypted", "plain"])
def test_moved_renamed_or_retyped_objects_are_refused(keys: FolderKeys) -> None:
    sealed = seal(keys, "index", "a" * 32, b'{"packs": {}}')
    other_config = FolderKeys.derive(MASTER if keys.encrypted else None, "documents")
    for role, name, where in [
        ("index", "b" * 32, keys),  # renamed (another index's name)
        ("pack-table", "a" * 32, keys),  # presented as another kind of object
        ("index", "a" * 32, other_config),  # copied into another config's folder
    ]:
        with pytest.raises(TamperedError, match="index x"):
            open_sealed(where, role, name, sealed, "index x")


def test_one_flipped_byte_anywhere_is_detected() -> None:
    for keys in (ENCRYPTED, PLAIN):
        sealed = bytearray(seal(keys, "marker", "20261201T000000.000Z-abcdef", b"x" * 100))
        for i in range(len(sealed)):
            damaged = bytearray(sealed)
            damaged[i] ^= 0x40
            with pytest.raises((TamperedError, ArchiveError)):
                open_sealed(keys, "marker", "20261201T000000.000Z-abcdef", bytes(damaged), "m")


def test_another_key_and_mixed_encryption_are_refused() -> None:
    sealed = seal(ENCRYPTED, "index", "n", b"secret paths")
    other = FolderKeys.derive(MasterKey(os.urandom(32)), "photos")
    with pytest.raises(TamperedError, match="another BACKUP_ENCRYPTION_KEY"):
        open_sealed(other, "index", "n", sealed, "index n")
    with pytest.raises(TamperedError, match="encrypted, but this backup is not"):
        open_sealed(PLAIN, "index", "n", sealed, "index n")
    with pytest.raises(TamperedError, match="not encrypted, but this backup is"):
        open_sealed(ENCRYPTED, "index", "n", seal(PLAIN, "index", "n", b"x"), "index n")


def test_block_ids_are_keyed_per_config_and_plain_ids_are_sha256() -> None:
    data = b"the same content"
    assert PLAIN.block_id(data) == hashlib.sha256(data).hexdigest()
    assert ENCRYPTED.block_id(data) != PLAIN.block_id(data)
    assert ENCRYPTED.block_id(data) != FolderKeys.derive(MASTER, "documents").block_id(data)
    assert ENCRYPTED.block_id(data) == FolderKeys.derive(MASTER, "photos").block_id(data)
    assert "photos" in repr(ENCRYPTED) and base64.b64encode(MASTER.secret).decode() not in repr(
        ENCRYPTED
    )


@pytest.mark.parametrize("keys", [ENCRYPTED, PLAIN], ids=["encrypted", "plain"])
@pytest.mark.parametrize("algorithm", ["gzip", "zstd", "none"])
def test_blocks_open_only_under_their_own_id(keys: FolderKeys, algorithm: str) -> None:
    codec = Codec(algorithm, None)  # type: ignore[arg-type]
    a, b = os.urandom(3000), b"b" * 5000
    ida, idb = keys.block_id(a), keys.block_id(b)
    stored_a = seal_block(keys, ida, codec.compress(a))
    stored_b = seal_block(keys, idb, codec.compress(b))
    assert open_block(keys, ida, stored_a, codec, len(a), "block a") == a
    if not keys.encrypted and algorithm == "gzip":
        import gzip

        assert gzip.decompress(stored_a) == a  # bare gzip members: tar can read them
    with pytest.raises((TamperedError, ArchiveError), match="block a"):
        open_block(keys, ida, stored_b, codec, len(a), "block a")  # swapped content
    with pytest.raises((TamperedError, ArchiveError), match="block b"):
        open_block(keys, idb, stored_a, codec, len(b), "block b")
