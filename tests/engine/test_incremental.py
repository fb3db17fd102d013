"""Incremental backups: only changes are sent, and every point in time restores exactly."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from backapp.domain.config import slugify
from backapp.engine.backup import run_backup
from backapp.engine.backup.parent import open_manifest
from backapp.engine.format.crypto import HEADER_SIZE, TAG_SIZE, MasterKey
from backapp.engine.format.layout import Repository
from backapp.engine.restore import run_restore
from backapp.engine.verify import run_verify
from backapp.storage.local import LocalStorage
from tests.engine.conftest import make_config
from tests.helpers.trees import restored_root, snapshot


def _initial(src: Path) -> None:
    (src / "docs" / "old").mkdir(parents=True)
    (src / "media").mkdir()
    for i in range(20):
        (src / "docs" / f"note-{i:02}.txt").write_text(f"note {i}\n" * 50)
    (src / "docs" / "old" / "report.pdf").write_bytes(os.urandom(150_000))
    (src / "media" / "movie.bin").write_bytes(os.urandom(600_000))
    (src / "media" / "song.bin").write_bytes(os.urandom(200_000))
    os.symlink("docs/note-00.txt", src / "first-note")


def _day(src: Path, day: int) -> None:
    """One day of edits: each day touches the tree differently."""
    if day == 1:
        (src / "docs" / "note-03.txt").write_text("edited on day 1\n")
        (src / "docs" / "new-on-day-1.txt").write_text("fresh\n")
        (src / "docs" / "note-05.txt").unlink()
    elif day == 2:
        os.rename(src / "media" / "movie.bin", src / "media" / "film.bin")  # a rename
        os.chmod(src / "docs" / "note-07.txt", 0o600)
        os.utime(src / "docs" / "note-08.txt", ns=(1_000_000_000_123, 1_000_000_000_123))
    elif day == 3:
        (src / "empty-dir" / "nested").mkdir(parents=True)
        os.symlink("../media/film.bin", src / "docs" / "link-to-film")
        shutil.copy2(src / "media" / "song.bin", src / "media" / "song-copy.bin")  # a copy
    elif day == 4:
        shutil.rmtree(src / "docs" / "old")
        with open(src / "media" / "song.bin", "r+b") as f:  # same size, new content
            f.seek(1000)
            f.write(b"X" * 100)
    elif day == 5:
        (src / "first-note").unlink()
        os.symlink("docs/note-01.txt", src / "first-note")  # retargeted link
        (src / "docs" / "note-10.txt").write_text("")  # emptied
        os.rmdir(src / "empty-dir" / "nested")


@pytest.mark.parametrize("encryption", [False, True])
def test_full_plus_five_incrementals_restore_every_point_in_time_exactly(
    tmp_path: Path, master_key: MasterKey, encryption: bool
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    _initial(src)
    config = make_config([src], tmp_path / "dest", type="incremental", encryption=encryption)
    storage = LocalStorage(tmp_path / "dest")
    repo = Repository(storage, "", slugify(config.name))
    points = []
    for day in range(6):
        if day:
            _day(src, day)
        result = run_backup(
            config, storage, slug=slugify(config.name), key=master_key, block_size=64 * 1024
        )
        points.append((result, snapshot(src)))

    full, *incrementals = [r for r, _ in points]
    assert full.info.type == "full"
    assert all(r.info.type == "incremental" for r in incrementals)
    assert [r.info.parent for r in incrementals] == [r.backup_id for r, _ in points[:-1]]
    # Day 2 renamed a 600 kB file: its blocks are stored already, not uploaded again.
    day2 = incrementals[1]
    assert day2.info.stats.renamed_files == 1
    assert day2.info.stats.stored_bytes < 50_000
    # Day 3 copied a 200 kB file: also referenced.
    assert incrementals[2].info.stats.renamed_files == 1
    # Day 4 changed song.bin in place (same size): it is sent again.
    assert incrementals[3].info.stats.changed_files == 1
    assert incrementals[3].info.stats.stored_bytes > 190_000
    assert incrementals[0].info.stats.deleted_files == 1
    assert incrementals[3].info.stats.deleted_files == 1  # docs/old/report.pdf

    for index, (result, expected) in enumerate(points):
        target = tmp_path / f"restore-{index}"
        restored = run_restore(repo, result.backup_id, target, master=master_key)
        assert restored.ok, restored.errors
        assert snapshot(restored_root(target, src)) == expected, f"point {index}"
        assert run_verify(repo, result.backup_id, master=master_key, full=True).ok


def test_no_change_incremental_sends_almost_nothing(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    _initial(src)
    config = make_config([src], tmp_path / "dest", type="incremental")
    storage = LocalStorage(tmp_path / "dest")
    first = run_backup(config, storage, slug=slugify(config.name))
    again = run_backup(config, storage, slug=slugify(config.name))
    assert again.info.type == "incremental"
    assert again.info.stats.unchanged_files == first.info.stats.files
    assert again.info.stats.new_files == again.info.stats.changed_files == 0
    assert again.info.stats.stored_bytes < 5_000  # the manifest and the index: no data
    assert again.info.parent == first.backup_id and again.info.requires == []


def test_every_nth_backup_is_full(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("x")
    config = make_config([src], tmp_path / "dest", type="incremental", fullEvery=3)
    storage = LocalStorage(tmp_path / "dest")
    kinds = [run_backup(config, storage, slug=slugify(config.name)).info.type for _ in range(7)]
    assert kinds == [
        "full",
        "incremental",
        "incremental",
        "full",
        "incremental",
        "incremental",
        "full",
    ]


def test_changing_encryption_starts_a_new_full_chain(tmp_path: Path, master_key: MasterKey) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("x")
    storage = LocalStorage(tmp_path / "dest")
    plain = make_config([src], tmp_path / "dest", type="incremental")
    run_backup(plain, storage, slug=slugify(plain.name))
    secret = make_config([src], tmp_path / "dest", type="incremental", encryption=True)
    assert (
        run_backup(secret, storage, slug=slugify(secret.name), key=master_key).info.type == "full"
    )


def test_verify_names_a_missing_or_damaged_object_in_the_chain(
    tmp_path: Path, master_key: MasterKey
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    _initial(src)
    config = make_config(
        [src], tmp_path / "dest", type="incremental", encryption=True, compression=False
    )
    storage = LocalStorage(tmp_path / "dest")
    repo = Repository(storage, "", slugify(config.name))
    segment = 4096
    full = run_backup(
        config,
        storage,
        slug=slugify(config.name),
        key=master_key,
        block_size=64 * 1024,
        segment_size=segment,
        format_version=1,  # the chain of archives of format 1
    )
    _day(src, 1)
    incr = run_backup(
        config,
        storage,
        slug=slugify(config.name),
        key=master_key,
        block_size=64 * 1024,
        segment_size=segment,
        format_version=1,  # the chain of archives of format 1
    )
    assert run_verify(repo, "latest", master=master_key, full=True).ok

    # Flip a byte in the middle of movie.bin's data: uncompressed, so tar offset maps
    # straight to an encrypted segment.
    entries = {e.path: e for e in open_manifest(repo, full.info, master_key)}
    movie = entries[str(src / "media" / "movie.bin").lstrip("/")]
    assert movie.offset is not None
    plain_at = movie.offset + 300_000
    cipher_at = HEADER_SIZE + (plain_at // segment) * (segment + TAG_SIZE) + plain_at % segment
    data = tmp_path / "dest" / slugify(config.name) / full.backup_id / full.info.data.name
    raw = bytearray(data.read_bytes())
    raw[cipher_at] ^= 0xFF
    data.write_bytes(bytes(raw))
    quick = run_verify(repo, incr.backup_id, master=master_key)
    assert quick.ok  # sizes and manifests are intact: only a full check reads the bytes
    deep = run_verify(repo, incr.backup_id, master=master_key, full=True)
    assert not deep.ok
    damaged_files = [w for w, _ in deep.problems if not w.startswith(slugify(config.name))]
    assert damaged_files == [str(src / "media" / "movie.bin").lstrip("/")]

    data.unlink()
    missing = run_verify(repo, incr.backup_id, master=master_key)
    assert (str(data.relative_to(tmp_path / "dest")), "object is missing") in missing.problems

    manifest = tmp_path / "dest" / slugify(config.name) / incr.backup_id / incr.info.manifest.name
    manifest.write_bytes(manifest.read_bytes()[:-10])
    truncated = run_verify(repo, incr.backup_id, master=master_key)
    assert any("truncated" in m for _, m in truncated.problems)


def test_restores_stream_the_manifest_when_there_are_too_many_files_to_keep(
    tmp_path: Path, master_key: MasterKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    from backapp.engine.restore.plan import RestorePlan

    monkeypatch.setattr(RestorePlan, "KEEP_FILES", 3)  # as if it were millions of files
    src = tmp_path / "src"
    src.mkdir()
    _initial(src)
    config = make_config([src], tmp_path / "dest", type="incremental", encryption=True)
    storage = LocalStorage(tmp_path / "dest")
    repo = Repository(storage, "", slugify(config.name))
    points = []
    for day in range(4):
        if day:
            _day(src, day)
        result = run_backup(
            config, storage, slug=slugify(config.name), key=master_key, block_size=64 * 1024
        )
        points.append((result.backup_id, snapshot(src)))
    for index, (backup_id, expected) in enumerate(points):
        restored = run_restore(repo, backup_id, tmp_path / f"r{index}", master=master_key)
        assert restored.ok, restored.errors
        assert snapshot(restored_root(tmp_path / f"r{index}", src)) == expected
    picked = run_restore(
        repo,
        "latest",
        tmp_path / "picked",
        master=master_key,
        include=[str(src / "media").lstrip("/") + "/"],
    )
    assert picked.ok
    got = sorted(p.name for p in restored_root(tmp_path / "picked", src).rglob("*"))
    assert got == ["film.bin", "media", "song-copy.bin", "song.bin"]
