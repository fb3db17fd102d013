"""A damaged newest backup is never built on: the next backup is a full one and says why;
listing shows every backup, the damaged ones marked."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from backapp.domain.config import slugify
from backapp.engine.backup import BackupResult, run_backup
from backapp.engine.format.layout import Repository
from backapp.engine.restore import run_restore
from backapp.storage.local import LocalStorage
from tests.engine.conftest import make_config
from tests.helpers.hostile import object_path, rewrite_manifest, rewrite_marker
from tests.helpers.trees import restored_root, snapshot


class Chain:
    def __init__(self, tmp_path: Path) -> None:
        self.src = tmp_path / "src"
        self.src.mkdir()
        for i in range(4):
            (self.src / f"f{i}.bin").write_bytes(os.urandom(20_000))
        self.config = make_config([self.src], tmp_path / "dest", type="incremental")
        self.storage = LocalStorage(tmp_path / "dest")
        self.repo = Repository(self.storage, "", slugify(self.config.name))
        self.tmp = tmp_path

    def backup(self) -> BackupResult:
        # Format 1: chains of archives (format 2 has no chains: see test_blocks_damage.py).
        return run_backup(
            self.config,
            self.storage,
            slug=slugify(self.config.name),
            block_size=16 * 1024,
            format_version=1,
        )

    def change(self) -> None:
        (self.src / "f1.bin").write_bytes(os.urandom(20_000))
        (self.src / "new.txt").write_text(os.urandom(8).hex())

    def restores_exactly(self) -> None:
        target = self.tmp / f"t{len(list(self.tmp.glob('t*')))}"
        restored = run_restore(self.repo, "latest", target)
        assert restored.ok, restored.errors
        assert snapshot(restored_root(target, self.src)) == snapshot(self.src)


Damage = Callable[[Chain, BackupResult, BackupResult], None]


def _marker_garbage(c: Chain, full: BackupResult, incr: BackupResult) -> None:
    object_path(c.repo, incr.backup_id, "backup.json").write_text("{not json")


def _manifest_missing(c: Chain, full: BackupResult, incr: BackupResult) -> None:
    object_path(c.repo, incr.backup_id, incr.info.manifest.name).unlink()


def _data_missing(c: Chain, full: BackupResult, incr: BackupResult) -> None:
    object_path(c.repo, incr.backup_id, incr.info.data.name).unlink()


def _data_truncated(c: Chain, full: BackupResult, incr: BackupResult) -> None:
    path = object_path(c.repo, incr.backup_id, incr.info.data.name)
    path.write_bytes(path.read_bytes()[:-100])


def _required_data_missing(c: Chain, full: BackupResult, incr: BackupResult) -> None:
    object_path(c.repo, full.backup_id, full.info.data.name).unlink()


def _required_marker_gone(c: Chain, full: BackupResult, incr: BackupResult) -> None:
    object_path(c.repo, full.backup_id, "backup.json").unlink()


def _unknown_format(c: Chain, full: BackupResult, incr: BackupResult) -> None:
    path = object_path(c.repo, incr.backup_id, "backup.json")
    path.write_text(path.read_text().replace('"formatVersion": 1', '"formatVersion": 9'))


DAMAGE: dict[str, tuple[Damage, str]] = {
    "backup.json is garbage": (_marker_garbage, "backup.json is damaged"),
    "manifest missing": (_manifest_missing, "manifest.json.gz is missing"),
    "data object missing": (_data_missing, "is missing"),
    "data object truncated": (_data_truncated, "bytes"),
    "a required backup's data missing": (_required_data_missing, "is missing"),
    "a required backup gone": (_required_marker_gone, "requires backup"),
    "unknown format": (_unknown_format, "format 9"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_the_backup_after_a_damaged_one_is_full_and_says_why(tmp_path: Path, damage: str) -> None:
    c = Chain(tmp_path)
    full = c.backup()
    c.change()
    incr = c.backup()
    assert incr.info.type == "incremental"
    hurt, words = DAMAGE[damage]
    hurt(c, full, incr)
    c.change()
    after = c.backup()
    assert after.info.type == "full"
    assert after.info.requires == []
    assert "damaged" in after.parent_note and words in after.parent_note, after.parent_note
    c.restores_exactly()
    # And the chain goes on from the new full backup.
    c.change()
    assert c.backup().info.parent == after.backup_id
    c.restores_exactly()


def test_a_parent_manifest_damaged_part_way_stores_the_rest_in_full(tmp_path: Path) -> None:
    c = Chain(tmp_path)
    full = c.backup()
    f2 = str(c.src / "f2.bin").lstrip("/")

    def break_order(entries: list[dict[str, object]]) -> list[dict[str, object]]:
        at = next(i for i, e in enumerate(entries) if e["path"] == f2)
        return [*entries[:at], {**entries[0], "path": "zzz-out-of-order"}, *entries[at:]]

    rewrite_manifest(c.repo, full.backup_id, break_order, order=False)
    size = object_path(c.repo, full.backup_id, "manifest.json.gz").stat().st_size
    rewrite_marker(
        c.repo, full.backup_id, lambda d: {**d, "manifest": {**d["manifest"], "size": size}}
    )
    c.change()
    incr = c.backup()
    assert incr.info.type == "incremental"
    assert "damaged part-way" in incr.parent_note
    assert incr.info.stats.unchanged_files == 1  # f0 only: after the damage all is read anew
    c.restores_exactly()


def test_listing_shows_damaged_backups_marked(tmp_path: Path) -> None:
    c = Chain(tmp_path)
    first = c.backup()
    c.change()
    second = c.backup()
    object_path(c.repo, second.backup_id, "backup.json").write_text("[]")
    listed = c.repo.scan()
    assert [b.backup_id for b in listed] == [first.backup_id, second.backup_id]
    assert listed[0].info is not None and listed[0].problem is None
    assert listed[1].info is None and "backup.json is damaged" in str(listed[1].problem)
    assert [i.backup_id for i in c.repo.list()] == [first.backup_id]
