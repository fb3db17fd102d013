"""Backups written in format 1 (tests/fixtures/format1, made by make_fixture.py with the
release that writes it) keep listing, verifying and restoring exactly, and new backups
build on them: the guard for every later change of the storage format."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from backapp.domain.config import parse_config
from backapp.engine.backup import run_backup
from backapp.engine.format.crypto import MasterKey
from backapp.engine.format.layout import Repository
from backapp.engine.restore import run_restore
from backapp.engine.verify import run_verify
from backapp.errors import WrongKeyError
from backapp.storage.local import LocalStorage
from tests.helpers.cli import run_backapp
from tests.helpers.trees import restored_root, snapshot

FIXTURE = Path(__file__).parents[1] / "fixtures" / "format1"
EXPECTED: dict[str, Any] = json.loads((FIXTURE / "expected.json").read_text())
SOURCE = Path(EXPECTED["source"])
KEY = MasterKey.from_base64(EXPECTED["key"])
BACKUPS = sorted(EXPECTED["backups"])


@pytest.fixture
def store(tmp_path: Path) -> Path:
    """A copy of the fixture's storage folder (nothing may change the fixture itself)."""
    return Path(shutil.copytree(FIXTURE / "store", tmp_path / "store"))


def _tree(backup_id: str) -> dict[str, tuple[Any, ...]]:
    return {k: tuple(v) for k, v in EXPECTED["backups"][backup_id]["tree"].items()}


@pytest.mark.parametrize("backup_id", BACKUPS)
def test_each_format1_backup_restores_exactly_and_verifies(
    store: Path, tmp_path: Path, backup_id: str
) -> None:
    slug = EXPECTED["backups"][backup_id]["config"]
    repo = Repository(LocalStorage(store), "", slug)
    assert backup_id in repo.ids()
    assert repo.load(backup_id).format_version == 1
    verified = run_verify(repo, backup_id, master=KEY, full=True)
    assert verified.ok, verified.problems
    restored = run_restore(repo, backup_id, tmp_path / "out", master=KEY)
    assert restored.ok, restored.errors
    assert snapshot(restored_root(tmp_path / "out", SOURCE)) == _tree(backup_id)


def test_an_encrypted_format1_backup_needs_its_key(store: Path, tmp_path: Path) -> None:
    repo = Repository(LocalStorage(store), "", "sealed")
    other = MasterKey.from_base64("B" * 43 + "=")
    with pytest.raises(WrongKeyError):
        run_restore(repo, "latest", tmp_path / "out", master=other)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_the_first_format2_backup_after_a_format1_chain_is_full_and_all_restore(
    store: Path, tmp_path: Path
) -> None:
    # The source as it was at the last backup, at the path the fixture was made from.
    if SOURCE.exists():
        pytest.skip(f"{SOURCE} exists on this machine")
    latest = BACKUPS[-1]
    repo = Repository(LocalStorage(store), "", "sealed")
    try:
        assert run_restore(repo, latest, tmp_path / "seed", master=KEY).ok
        os.rename(restored_root(tmp_path / "seed", SOURCE), SOURCE)  # same times, links
        (SOURCE / "docs" / "day-three.txt").write_text("a third day\n")
        config = parse_config(
            {
                "name": "Sealed",
                "enabled": True,
                "sources": [{"path": str(SOURCE), "excludePatterns": ["*.tmp"]}],
                "destination": {"type": "local", "path": str(store)},
                "schedule": {"cronExpression": "0 2 * * *", "timezone": "UTC"},
                "options": {"type": "incremental", "encryption": True},
            }
        )
        result = run_backup(config, LocalStorage(store), slug="sealed", key=KEY)
        # Format 2 never builds on format-1 archives: the first backup in it is full.
        assert (result.info.type, result.info.parent) == ("full", None)
        assert result.info.format_version == 2
        assert "storage format 1" in result.parent_note
        assert result.info.stats.new_files == result.info.stats.files
        expected = snapshot(SOURCE)
    finally:
        shutil.rmtree(SOURCE, ignore_errors=True)
    assert run_restore(repo, "latest", tmp_path / "out", master=KEY).ok
    assert snapshot(restored_root(tmp_path / "out", SOURCE)) == expected


def test_the_cli_lists_and_restores_format1_backups(store: Path, tmp_path: Path) -> None:
    config = tmp_path / "sealed.json"
    config.write_text(
        json.dumps(
            {
                "name": "Sealed",
                "slug": "sealed",
                "enabled": True,
                "sources": [{"path": str(SOURCE)}],
                "destination": {"type": "local", "path": str(store)},
                "schedule": {"cronExpression": "0 2 * * *", "timezone": "UTC"},
                "options": {"type": "incremental", "encryption": True},
            }
        )
    )

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return run_backapp(tmp_path, *args, env={"BACKUP_ENCRYPTION_KEY": EXPECTED["key"]})

    listed = cli("backups", "list", "-c", str(config), "--json")
    assert listed.returncode == 0, listed.stderr
    sealed = [b for b in BACKUPS if EXPECTED["backups"][b]["config"] == "sealed"]
    assert [b["backupId"] for b in json.loads(listed.stdout)["backups"]] == sealed
    restored = cli("restore", "-c", str(config), "--target", str(tmp_path / "out"))
    assert restored.returncode == 0, restored.stderr
    assert snapshot(restored_root(tmp_path / "out", SOURCE)) == _tree(sealed[-1])
