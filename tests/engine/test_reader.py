"""The archive reader streams file data out of a backup in any order it is asked for."""

from __future__ import annotations

import hashlib
import os
from collections import defaultdict
from pathlib import Path

import pytest

from backapp.domain.config import slugify
from backapp.engine.backup import run_backup
from backapp.engine.backup.parent import open_manifest
from backapp.engine.format.crypto import MasterKey
from backapp.engine.format.layout import Repository
from backapp.engine.format.manifest import Entry
from backapp.engine.restore.blockreader import BlockArchiveReader
from backapp.engine.restore.reader import ArchiveReader
from backapp.engine.restore.snapshot import Snapshot
from backapp.storage.local import LocalStorage
from tests.engine.conftest import make_config

Reader = ArchiveReader | BlockArchiveReader


def _backup(
    tmp_path: Path, key: MasterKey, version: int
) -> tuple[Reader, list[Entry], dict[str, bytes]]:
    src = tmp_path / "src"
    src.mkdir()
    contents = {}
    for i in range(40):
        data = os.urandom((i * 37_000) % 300_000) if i % 5 else b""
        (src / f"f{i:02}.bin").write_bytes(data)
        contents[str(src / f"f{i:02}.bin").lstrip("/")] = data
    config = make_config([src], tmp_path / "dest", encryption=True, compressionLevel=1)
    storage = LocalStorage(tmp_path / "dest")
    result = run_backup(
        config,
        storage,
        slug=slugify(config.name),
        key=key,
        block_size=64 * 1024,
        segment_size=10_000,
        format_version=version,
    )
    repo = Repository(storage, "", slugify(config.name), key)
    if version >= 2:
        snap = Snapshot(repo, result.backup_id, key)
        files = [e for e in snap.entries() if e.type == "file"]
        return snap.archive(None), files, contents
    reader = open_manifest(repo, result.info, key)
    files = [e for e in reader if e.type == "file"]
    archive = ArchiveReader(repo, result.info, reader.read_trailer(), key)
    return archive, files, contents


def _collect(archive: Reader, entries: list[Entry], whole: bool) -> dict[str, bytes]:
    got: dict[str, bytearray] = defaultdict(bytearray)
    for piece in archive.pieces(iter(entries), whole=whole):
        assert piece.error is None
        got[piece.entry.path] += piece.data
    return {k: bytes(v) for k, v in got.items()}


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("whole", [False, True])
@pytest.mark.parametrize("order", ["archive", "reversed", "shuffled", "sparse"])
def test_pieces_returns_every_file_exactly_in_any_order(
    tmp_path: Path, master_key: MasterKey, order: str, whole: bool, version: int
) -> None:
    archive, files, contents = _backup(tmp_path, master_key, version)
    if order == "reversed":
        files = files[::-1]
    elif order == "shuffled":
        files = sorted(files, key=lambda e: hashlib.sha256(e.path.encode()).digest())
    elif order == "sparse":
        files = files[::7]  # far apart: several separate reads
    got = _collect(archive, files, whole)
    assert got == {e.path: contents[e.path] for e in files}
