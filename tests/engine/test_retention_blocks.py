"""Retention over format-2 backups: an incremental needs no older backup, so keep-N
deletes parents too, and prune after it frees their blocks while the kept backups stay
whole."""

from __future__ import annotations

import os
from pathlib import Path

from backapp.domain.config import slugify
from backapp.engine.backup import run_backup
from backapp.engine.format.crypto import MasterKey
from backapp.engine.format.layout import Repository
from backapp.engine.restore import run_restore
from backapp.engine.verify import run_verify
from backapp.services.retention import delete_expired
from backapp.storage.local import LocalStorage
from tests.engine.conftest import make_config
from tests.helpers.trees import restored_root, snapshot


def _stored(dest: Path) -> int:
    return sum(p.stat().st_size for p in dest.rglob("*") if p.is_file())


def test_keep_last_deletes_older_incrementals_and_prune_frees_their_blocks(
    tmp_path: Path, master_key: MasterKey
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    config = make_config(
        [src], tmp_path / "dest", type="incremental", encryption=True, retention={"keepLast": 1}
    )
    storage = LocalStorage(tmp_path / "dest")
    ids = []
    for day in range(3):
        (src / f"day{day}.bin").write_bytes(os.urandom(600_000))
        if day:
            (src / f"day{day - 1}.bin").unlink()  # each day's data is only in that day's backup
        ids.append(run_backup(config, storage, slug=slugify(config.name), key=master_key))
    assert [r.info.type for r in ids] == ["full", "incremental", "incremental"]
    repo = Repository(storage, "", slugify(config.name), master_key)
    before = _stored(tmp_path / "dest")
    outcome = delete_expired(repo, config)["retention"]
    assert [d["backupId"] for d in outcome["deleted"]] == [ids[1].backup_id, ids[0].backup_id]
    assert outcome["prune"]["blocksRemoved"] >= 2 and outcome["prune"]["packsRemoved"] >= 1
    assert _stored(tmp_path / "dest") < before - 1_000_000  # two days' data freed
    assert repo.ids() == [ids[2].backup_id]
    assert run_verify(repo, "latest", master=master_key, full=True).ok
    restored = run_restore(repo, "latest", tmp_path / "out", master=master_key)
    assert restored.ok, restored.errors
    assert snapshot(restored_root(tmp_path / "out", src)) == snapshot(src)
