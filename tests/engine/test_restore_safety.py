"""Restore never writes outside its target, whatever a manifest says, and names damage."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from backapp.domain.config import slugify
from backapp.engine.backup import BackupResult, run_backup
from backapp.engine.format.crypto import MasterKey
from backapp.engine.format.layout import Repository
from backapp.engine.restore import run_restore
from backapp.errors import RestoreError, TargetNotEmptyError
from backapp.storage.local import LocalStorage
from tests.engine.conftest import make_config
from tests.helpers.hostile import file_entry, pack_of, rewrite_manifest
from tests.helpers.trees import restored_root, snapshot


def _backup(tmp_path: Path, key: MasterKey | None = None) -> tuple[Repository, BackupResult, Path]:
    src = tmp_path / "src"
    (src / "docs").mkdir(parents=True)
    (src / "docs" / "a.txt").write_text("alpha\n")
    (src / "b.bin").write_bytes(os.urandom(3 * 1024 * 1024))
    config = make_config([src], tmp_path / "dest", encryption=key is not None)
    storage = LocalStorage(tmp_path / "dest")
    result = run_backup(config, storage, slug=slugify(config.name), key=key, block_size=64 * 1024)
    return Repository(storage, "", slugify(config.name)), result, src


def _rewrite_manifest(repo: Repository, backup_id: str, edit: Any) -> None:
    """Given an unencrypted backup, rewrite its manifest's entries through ``edit``."""
    rewrite_manifest(repo, backup_id, edit, order=False)


def _file_entry(entries: list[dict[str, Any]]) -> dict[str, Any]:
    return next(e for e in entries if e["type"] == "file")


@pytest.mark.parametrize("bad_path", ["../escaped.txt", "/tmp/absolute-escape.txt", "a/../../up"])
def test_restore_refuses_manifest_paths_that_leave_the_target(
    tmp_path: Path, bad_path: str
) -> None:
    repo, result, src = _backup(tmp_path)
    _rewrite_manifest(
        repo, result.backup_id, lambda es: [{**_file_entry(es), "path": bad_path}, *es]
    )
    target = tmp_path / "restore" / "target"
    restored = run_restore(repo, "latest", target)
    assert not (tmp_path / "restore" / "escaped.txt").exists()
    assert not Path("/tmp/absolute-escape.txt").exists()
    assert [p for p, _ in restored.errors] == [bad_path]
    assert "unsafe path" in restored.errors[0][1]
    assert snapshot(restored_root(target, src)) == snapshot(src)  # the rest is restored


def test_restore_never_writes_through_a_symlink_in_the_backup(tmp_path: Path) -> None:
    repo, result, _ = _backup(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()

    def add_escape(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        link = {**entries[0], "path": "evil", "type": "symlink", "target": str(outside)}
        pwned = {**_file_entry(entries), "path": "evil/pwned.txt"}
        return [link, pwned, *entries]

    _rewrite_manifest(repo, result.backup_id, add_escape)
    restored = run_restore(repo, "latest", tmp_path / "target")
    assert list(outside.iterdir()) == []
    assert [p for p, _ in restored.errors] == ["evil/pwned.txt"]
    assert "symlink" in restored.errors[0][1]


def test_restore_refuses_hardlinks_pointing_outside(tmp_path: Path) -> None:
    repo, result, _ = _backup(tmp_path)
    _rewrite_manifest(
        repo,
        result.backup_id,
        lambda es: [{**es[0], "path": "h", "type": "hardlink", "target": "../../etc/passwd"}, *es],
    )
    restored = run_restore(repo, "latest", tmp_path / "target")
    assert [p for p, _ in restored.errors] == ["h"]
    assert "unsafe path" in restored.errors[0][1]
    assert not (tmp_path / "target" / "h").exists()


def test_overwrite_restore_replaces_a_symlink_in_the_target_instead_of_following_it(
    tmp_path: Path,
) -> None:
    repo, _, src = _backup(tmp_path)
    target = tmp_path / "target"
    outside = tmp_path / "outside"
    outside.mkdir()
    # Someone put a symlink where the backup has a folder.
    planted = restored_root(target, src) / "docs"
    planted.parent.mkdir(parents=True)
    planted.symlink_to(outside)
    restored = run_restore(repo, "latest", target, existing="overwrite")
    assert list(outside.iterdir()) == []
    assert restored.ok
    assert not planted.is_symlink()
    assert snapshot(restored_root(target, src)) == snapshot(src)


def test_non_empty_target_is_refused_unless_overwriting(tmp_path: Path) -> None:
    repo, _, src = _backup(tmp_path)
    target = tmp_path / "target"
    restored_root(target, src).mkdir(parents=True)
    (restored_root(target, src) / "b.bin").write_text("old content")
    with pytest.raises(TargetNotEmptyError, match="not empty"):
        run_restore(repo, "latest", target)
    restored = run_restore(repo, "latest", target, existing="overwrite")
    assert restored.ok
    assert snapshot(restored_root(target, src)) == snapshot(src)


def test_skip_and_keep_both_policies_leave_existing_files(tmp_path: Path) -> None:
    repo, result, src = _backup(tmp_path)
    target = tmp_path / "target"
    root = restored_root(target, src)
    (root / "docs").mkdir(parents=True)
    (root / "docs" / "a.txt").write_text("mine\n")
    skipped = run_restore(repo, "latest", target, existing="skip")
    assert skipped.skipped_existing == 1
    assert (root / "docs" / "a.txt").read_text() == "mine\n"
    both = run_restore(repo, "latest", target, existing="keep-both")
    assert both.ok
    assert (root / "docs" / "a.txt").read_text() == "mine\n"
    copy = root / "docs" / f"a.txt.restored-{result.backup_id}"
    assert copy.read_text() == "alpha\n"


def test_restore_of_chosen_paths_only(tmp_path: Path) -> None:
    repo, _, src = _backup(tmp_path)
    restored = run_restore(
        repo, "latest", tmp_path / "target", include=[str(src / "docs").lstrip("/") + "/"]
    )
    assert restored.ok
    root = restored_root(tmp_path / "target", src)
    assert (root / "docs" / "a.txt").read_text() == "alpha\n"
    assert not (root / "b.bin").exists()
    with pytest.raises(RestoreError, match="nothing in backup"):
        run_restore(repo, "latest", tmp_path / "t2", include=["no/such/path"])


@pytest.mark.parametrize("encrypted", [False, True])
def test_damaged_archive_names_the_damaged_file_and_restores_the_rest(
    tmp_path: Path, master_key: MasterKey, encrypted: bool
) -> None:
    repo, result, src = _backup(tmp_path, master_key if encrypted else None)
    repo = repo.with_key(master_key if encrypted else None)
    block_id = file_entry(repo, result.backup_id, "b.bin")["blocks"][1][0]
    pack, offset, length = pack_of(repo, block_id)
    raw = bytearray(pack.read_bytes())
    raw[offset + length // 2] ^= 0x40  # inside b.bin's second block
    pack.write_bytes(bytes(raw))
    restored = run_restore(repo, "latest", tmp_path / "target", master=master_key)
    assert not restored.ok
    assert [p for p, _ in restored.errors] == [str(src / "b.bin").lstrip("/")]
    assert block_id[:12] in restored.errors[0][1] and pack.name in restored.errors[0][1]
    root = restored_root(tmp_path / "target", src)
    assert not (root / "b.bin").exists()  # never a silently wrong file
    assert (root / "docs" / "a.txt").read_text() == "alpha\n"


@pytest.mark.parametrize("encrypted", [False, True])
def test_truncated_archive_restores_what_is_intact_and_names_the_rest(
    tmp_path: Path, master_key: MasterKey, encrypted: bool
) -> None:
    src = tmp_path / "src"
    (src / "a").mkdir(parents=True)
    (src / "a" / "first.txt").write_text("in the first block\n")
    (src / "z.bin").write_bytes(os.urandom(3 * 1024 * 1024))
    key = master_key if encrypted else None
    config = make_config([src], tmp_path / "dest", encryption=encrypted)
    storage = LocalStorage(tmp_path / "dest")
    result = run_backup(config, storage, slug=slugify(config.name), key=key, block_size=64 * 1024)
    repo = Repository(storage, "", slugify(config.name), key)
    block_id = file_entry(repo, result.backup_id, "z.bin")["blocks"][-1][0]
    pack, _, _ = pack_of(repo, block_id)
    pack.write_bytes(pack.read_bytes()[: pack.stat().st_size // 2])
    restored = run_restore(repo, "latest", tmp_path / "target", master=key)
    root = restored_root(tmp_path / "target", src)
    assert (root / "a" / "first.txt").read_text() == "in the first block\n"
    assert [p for p, _ in restored.errors] == [str(src / "z.bin").lstrip("/")]
    assert "cut short" in restored.errors[0][1]
    assert not (root / "z.bin").exists()
