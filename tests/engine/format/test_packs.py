"""Packs and index objects: blocks found again, moved or damaged tables refused."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from backapp.engine.compress import Codec
from backapp.engine.format.blockindex import BlockIndex, index_key, read_index, write_index
from backapp.engine.format.crypto import MasterKey
from backapp.engine.format.envelope import open_block, seal_block
from backapp.engine.format.keys import FolderKeys
from backapp.engine.format.packs import BlockLocation, PackWriter, pack_key, read_table
from backapp.errors import ArchiveError, TamperedError
from backapp.storage.local import LocalStorage

MASTER = MasterKey(os.urandom(32))


def _store(storage: LocalStorage, keys: FolderKeys, count: int, pack_size: int):
    codec = Codec("zstd", 3)
    finished: dict[str, dict[str, BlockLocation]] = {}
    writer = PackWriter(
        storage,
        f"b/{keys.slug}",
        keys,
        lambda n, t: finished.__setitem__(n, dict(t)),
        pack_size=pack_size,
    )
    blocks = {}
    for i in range(count):
        plain = os.urandom(1000 + i * 37) if i % 2 else bytes([i % 256]) * 20000
        block_id = keys.block_id(plain)
        writer.add(block_id, seal_block(keys, block_id, codec.compress(plain)), len(plain), "zstd")
        blocks[block_id] = plain
    writer.flush()
    return finished, blocks


@pytest.mark.parametrize("encrypted", [True, False])
def test_blocks_are_found_through_tables_and_the_index(tmp_path: Path, encrypted: bool) -> None:
    storage = LocalStorage(tmp_path)
    keys = FolderKeys.derive(MASTER if encrypted else None, "photos")
    finished, blocks = _store(storage, keys, 40, pack_size=5_000)
    assert len(finished) > 3  # several packs
    for name, table in finished.items():
        size = storage.head(pack_key("b/photos", name)).size  # type: ignore[union-attr]
        assert read_table(storage, "b/photos", keys, name, size) == table
    write_index(storage, "b/photos", keys, finished, name="ab" * 16)
    with BlockIndex(str(tmp_path)) as index:
        assert index.load(storage, "b/photos", keys) == []
        assert len(index) == len(blocks)
        for block_id, plain in blocks.items():
            loc = index.get(block_id)
            assert loc is not None
            raw = b"".join(
                storage.get(pack_key("b/photos", loc.pack), loc.offset, loc.offset + loc.length)
            )
            assert open_block(keys, block_id, raw, Codec("zstd", 3), loc.size, "b") == plain
        assert index.get("00" * 32) is None


def test_a_pack_or_index_copied_into_another_config_is_refused(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    photos = FolderKeys.derive(MASTER, "photos")
    docs = FolderKeys.derive(MASTER, "documents")
    finished, _ = _store(storage, photos, 4, pack_size=1 << 20)
    (name,) = finished
    src = tmp_path / pack_key("b/photos", name)
    dst = tmp_path / pack_key("b/documents", name)
    dst.parent.mkdir(parents=True)
    shutil.copy(src, dst)
    with pytest.raises(TamperedError, match=f"pack {name}"):
        read_table(storage, "b/documents", docs, name, dst.stat().st_size)
    write_index(storage, "b/photos", photos, finished, name="cd" * 16)
    (tmp_path / "b/documents/index").mkdir(parents=True)
    shutil.copy(
        tmp_path / index_key("b/photos", "cd" * 16), tmp_path / index_key("b/documents", "cd" * 16)
    )
    with BlockIndex(str(tmp_path)) as index:
        problems = index.load(storage, "b/documents", docs)
        assert len(index) == 0 and problems and "index " + "cd" * 16 in problems[0][1]


def test_a_renamed_index_and_a_truncated_pack_are_refused(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    keys = FolderKeys.derive(None, "photos")
    finished, _ = _store(storage, keys, 3, pack_size=1 << 20)
    (name,) = finished
    write_index(storage, "b/photos", keys, finished, name="ef" * 16)
    os.rename(
        tmp_path / index_key("b/photos", "ef" * 16), tmp_path / index_key("b/photos", "12" * 16)
    )
    with pytest.raises(TamperedError, match="moved"):
        list(read_index(storage, "b/photos", keys, "12" * 16))
    path = tmp_path / pack_key("b/photos", name)
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises((ArchiveError, TamperedError), match=f"pack {name}"):
        read_table(storage, "b/photos", keys, name, path.stat().st_size)


def test_the_index_holds_a_million_blocks_in_little_memory(tmp_path: Path) -> None:
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with BlockIndex(str(tmp_path)) as index:
        index.add_all(
            (os.urandom(32).hex(), BlockLocation("ab" * 16, i, 1000, 2000, "gzip"))
            for i in range(300_000)
        )
        assert len(index) == 300_000
        grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown < 60, f"{grown:.0f} MiB"
