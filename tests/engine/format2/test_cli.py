"""Format 2 through the real ``backapp`` command: a listing without the key shows what
storage shows (ids, times, sizes) and says the rest needs the key; restore and verify
of a replayed marker fail and name it."""

from __future__ import annotations

import base64
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from backapp.domain.config import parse_config, slugify
from backapp.engine.backup import run_backup
from backapp.engine.format.crypto import MasterKey
from backapp.storage.local import LocalStorage
from tests.engine.format2.world import CONFIG_NAME, make_tree
from tests.helpers.cli import run_backapp


@pytest.fixture
def key_b64() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def write_config(tmp_path: Path, src: Path, *, encryption: bool) -> dict[str, Any]:
    doc = {
        "name": CONFIG_NAME,
        "enabled": True,
        "sources": [{"path": str(src)}],
        "destination": {"type": "local", "path": str(tmp_path / "dest")},
        "schedule": {"cronExpression": "0 2 * * *", "timezone": "UTC"},
        "options": {"type": "full", "compression": True, "encryption": encryption},
    }
    (tmp_path / "config.json").write_text(json.dumps(doc))
    return doc


def backup(tmp_path: Path, doc: dict[str, Any], key: str | None) -> None:
    """Back up the config of ``doc`` through the engine, as ``backapp backup run`` does."""
    master = MasterKey.from_base64(key) if key else None
    run_backup(
        parse_config(doc), LocalStorage(tmp_path / "dest"), slug=slugify(CONFIG_NAME), key=master
    )


def backup_ids(tmp_path: Path) -> list[str]:
    folder = tmp_path / "dest" / slugify(CONFIG_NAME)
    return sorted(p.parent.name for p in folder.glob("*/backup.json"))


def test_backups_list_without_the_key_shows_ids_times_and_says_the_rest_needs_it(
    tmp_path: Path, key_b64: str
) -> None:
    src = make_tree(tmp_path / "src")
    doc = write_config(tmp_path, src, encryption=True)
    cfg = tmp_path / "config.json"
    env = {"BACKUP_ENCRYPTION_KEY": key_b64}
    backup(tmp_path, doc, key_b64)
    (src / "more.txt").write_text("more\n")
    backup(tmp_path, doc, key_b64)
    ids = backup_ids(tmp_path)
    assert len(ids) == 2
    markers = [
        json.loads((tmp_path / "dest" / slugify(CONFIG_NAME) / i / "backup.json").read_text())
        for i in ids
    ]

    listed = run_backapp(tmp_path, "backups", "list", "-c", str(cfg))
    assert listed.returncode == 0, listed.stderr
    lines = [line for line in listed.stdout.splitlines() if line.strip()]
    assert len(lines) == 2, listed.stdout
    for line, marker in zip(lines, markers, strict=True):
        assert line.startswith(marker["backupId"])
        assert marker["completedAt"][:10] in line  # the date it was made
        assert "DAMAGED" not in line, line
        assert "BACKUP_ENCRYPTION_KEY" in line, line
    assert "quarterly" not in listed.stdout

    as_json = run_backapp(tmp_path, "backups", "list", "-c", str(cfg), "--json")
    assert as_json.returncode == 0, as_json.stderr
    docs = json.loads(as_json.stdout)["backups"]
    assert [d["backupId"] for d in docs] == ids
    for doc, marker in zip(docs, markers, strict=True):
        assert doc["completedAt"] == marker["completedAt"]
        assert doc["createdAt"] == marker["createdAt"]
        assert doc["storedBytes"] == marker["storedBytes"]
        assert doc["encrypted"] is True
        assert doc.get("damaged") is not True
        assert "BACKUP_ENCRYPTION_KEY" in doc["problem"]

    with_key = run_backapp(tmp_path, "backups", "list", "-c", str(cfg), env=env)
    assert with_key.returncode == 0, with_key.stderr
    assert "files" in with_key.stdout and "BACKUP_ENCRYPTION_KEY" not in with_key.stdout


def test_cli_restore_and_verify_refuse_a_replayed_marker(tmp_path: Path, key_b64: str) -> None:
    encryption = True  # both kinds are covered through the engine in test_tampering
    src = make_tree(tmp_path / "src")
    doc = write_config(tmp_path, src, encryption=encryption)
    cfg = tmp_path / "config.json"
    env = {"BACKUP_ENCRYPTION_KEY": key_b64} if encryption else {}
    backup(tmp_path, doc, key_b64 if encryption else None)
    (src / "more.txt").write_text("more\n")
    backup(tmp_path, doc, key_b64 if encryption else None)
    first, second = backup_ids(tmp_path)
    folder = tmp_path / "dest" / slugify(CONFIG_NAME)
    shutil.copy(folder / first / "backup.json", folder / second / "backup.json")

    verify = run_backapp(tmp_path, "verify", "-c", str(cfg), "-b", second, "--full", env=env)
    assert verify.returncode != 0
    assert f"backup {second}: backup.json" in verify.stdout + verify.stderr
    restore = run_backapp(
        tmp_path, "restore", "-c", str(cfg), "-b", second, "-t", str(tmp_path / "t"), env=env
    )
    assert restore.returncode != 0
    assert f"backup {second}: backup.json" in restore.stdout + restore.stderr
    assert not (tmp_path / "t").exists() or not any((tmp_path / "t").iterdir())
