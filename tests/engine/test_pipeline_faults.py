"""A failure at any stage of the backup pipeline fails the backup: nothing is committed,
nothing is left behind, and the next backup works and restores exactly."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from backapp.domain.config import slugify
from backapp.engine import blockstore as blockstore_module
from backapp.engine.backup import blockbackup as blockbackup_module
from backapp.engine.backup import run_backup
from backapp.engine.compress import Codec
from backapp.engine.format.crypto import MasterKey
from backapp.engine.format.layout import Repository
from backapp.engine.format.packs import PackWriter
from backapp.engine.restore import run_restore
from backapp.errors import BackappError, IntegrityError, StorageConnectionError, StorageError
from backapp.storage import ObjectInfo
from backapp.storage.local import LocalStorage
from tests.engine.conftest import make_config
from tests.helpers.faults import FaultStorage
from tests.helpers.trees import restored_root, snapshot

BLOCK = 64 * 1024


def _tree(root: Path) -> Path:
    (root / "sub").mkdir(parents=True)
    for i in range(6):
        (root / f"f{i}.bin").write_bytes(os.urandom(200 * 1024))
    (root / "sub" / "small.txt").write_text("small\n")
    return root


def _leftovers(dest: Path) -> list[str]:
    return sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())


def _after_failure_a_clean_backup_restores(
    tmp_path: Path, src: Path, storage: LocalStorage, key: MasterKey | None
) -> None:
    config = make_config([src], Path(storage.description), encryption=key is not None)
    result = run_backup(config, storage, slug=slugify(config.name), key=key, block_size=BLOCK)
    repo = Repository(storage, "", slugify(config.name))
    assert repo.ids() == [result.backup_id]
    target = tmp_path / "restored"
    restored = run_restore(repo, "latest", target, master=key)
    assert restored.ok, restored.errors
    assert snapshot(restored_root(target, src)) == snapshot(src)


Inject = Callable[[pytest.MonkeyPatch, FaultStorage], None]


def _raise_after(n: int, exc: BaseException) -> Callable[..., Any]:
    calls = {"n": 0}
    lock = threading.Lock()

    def check() -> None:
        with lock:
            calls["n"] += 1
            if calls["n"] > n:
                raise exc

    return check


def _compress_fails(mp: pytest.MonkeyPatch, _: FaultStorage) -> None:
    check = _raise_after(2, RuntimeError("can't start new thread"))
    real = Codec.compress

    def compress(self: Codec, block: Any) -> bytes:
        check()
        return real(self, block)

    mp.setattr(Codec, "compress", compress)


def _seal_fails(mp: pytest.MonkeyPatch, _: FaultStorage) -> None:
    check = _raise_after(3, RuntimeError("cannot schedule new futures after shutdown"))
    real = blockstore_module.seal_block

    def seal_block(*args: Any) -> bytes:
        check()
        return real(*args)

    mp.setattr(blockstore_module, "seal_block", seal_block)


def _thread_start_fails(mp: pytest.MonkeyPatch, _: FaultStorage) -> None:
    # Small blocks reach the pool in batches: the second hand-off fails.
    check = _raise_after(1, RuntimeError("can't start new thread"))
    real = ThreadPoolExecutor.submit

    def submit(self: ThreadPoolExecutor, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        if self._thread_name_prefix.startswith("backapp-block"):
            check()
        return real(self, fn, *args, **kwargs)

    mp.setattr(ThreadPoolExecutor, "submit", submit)


def _a_block_is_dropped(mp: pytest.MonkeyPatch, _: FaultStorage) -> None:
    # A defect that loses a block without raising anything: the accounting catches it.
    real = PackWriter.add
    calls = {"n": 0}

    def add(self: PackWriter, block_id: str, *args: Any) -> Any:
        calls["n"] += 1
        if calls["n"] != 3:
            return real(self, block_id, *args)
        return None

    mp.setattr(PackWriter, "add", add)


def _pack_write_fails(_: pytest.MonkeyPatch, storage: FaultStorage) -> None:
    storage.inject("write", key_contains="/packs/", after=1, error=StorageConnectionError("reset"))


def _pack_write_runtime_error(_: pytest.MonkeyPatch, storage: FaultStorage) -> None:
    storage.inject("write", key_contains="/packs/", after=1, error=RuntimeError("pool is shut"))


def _pack_commit_fails(_: pytest.MonkeyPatch, storage: FaultStorage) -> None:
    storage.inject("commit", key_contains="/packs/", error=StorageError("complete failed"))


def _last_pack_commit_fails(_: pytest.MonkeyPatch, storage: FaultStorage) -> None:
    # The data pack is committed; the manifest's pack (the second) is not.
    storage.inject("commit", key_contains="/packs/", after=1, error=StorageError("failed"))


def _pack_stored_short(_: pytest.MonkeyPatch, storage: FaultStorage) -> None:
    def short(inner: Any, key: str) -> ObjectInfo | None:
        head = inner.head(key)
        assert head is not None
        return ObjectInfo(key, head.size - 1)

    storage.inject("head", key_contains="/packs/", action=short)


def _pack_vanishes(_: pytest.MonkeyPatch, storage: FaultStorage) -> None:
    storage.inject("head", key_contains="/packs/", action=lambda inner, key: None)


def _index_put_fails(_: pytest.MonkeyPatch, storage: FaultStorage) -> None:
    storage.inject("put", key_contains="/index/", error=StorageConnectionError("reset"))


def _marker_put_fails(_: pytest.MonkeyPatch, storage: FaultStorage) -> None:
    storage.inject("put", key_contains="backup.json", error=StorageConnectionError("timed out"))


def _scan_fails(mp: pytest.MonkeyPatch, _: FaultStorage) -> None:
    real = blockbackup_module.scan

    def scan(sources: Any, skips: Any) -> Any:
        for n, item in enumerate(real(sources, skips)):
            if n == 4:
                raise OSError(5, "Input/output error")
            yield item

    mp.setattr(blockbackup_module, "scan", scan)


STAGES: dict[str, Inject] = {
    "scan": _scan_fails,
    "compression": _compress_fails,
    "encryption": _seal_fails,
    "thread start": _thread_start_fails,
    "block dropped silently": _a_block_is_dropped,
    "pack upload": _pack_write_fails,
    "pack upload RuntimeError": _pack_write_runtime_error,
    "pack commit": _pack_commit_fails,
    "manifest pack commit": _last_pack_commit_fails,
    "pack stored short": _pack_stored_short,
    "pack vanished": _pack_vanishes,
    "index upload": _index_put_fails,
    "marker": _marker_put_fails,
}


@pytest.mark.parametrize("stage", list(STAGES))
def test_a_failure_at_any_stage_fails_the_backup_and_leaves_nothing(
    tmp_path: Path, master_key: MasterKey, stage: str
) -> None:
    src = _tree(tmp_path / "src")
    dest = tmp_path / "dest"
    local = LocalStorage(dest)
    storage = FaultStorage(local)
    config = make_config([src], dest, encryption=True)
    with pytest.MonkeyPatch.context() as mp:
        STAGES[stage](mp, storage)
        with pytest.raises((BackappError, RuntimeError, OSError)):
            run_backup(config, storage, slug=slugify(config.name), key=master_key, block_size=BLOCK)
    repo = Repository(local, "", slugify(config.name))
    assert repo.ids() == [], "a failed backup must never be committed"
    # What it stored stays for the next run to resume from: whole packs and their
    # checkpoint indexes only — no marker, no lock, no half-written file.
    left = _leftovers(dest)
    assert all(f.split("/")[1] in ("packs", "index") for f in left), left
    assert not [f for f in left if ".partial" in f], left
    _after_failure_a_clean_backup_restores(tmp_path, src, local, master_key)


def test_a_lost_reply_to_the_commit_marker_keeps_the_committed_backup(
    tmp_path: Path, master_key: MasterKey
) -> None:
    src = _tree(tmp_path / "src")
    local = LocalStorage(tmp_path / "dest")
    storage = FaultStorage(local)

    def stored_then_lost(inner: Any, key: str, data: bytes) -> None:
        inner.put_bytes(key, data)
        raise StorageConnectionError("read timed out")

    storage.inject("put", key_contains="backup.json", action=stored_then_lost)
    config = make_config([src], tmp_path / "dest", encryption=True)
    result = run_backup(
        config, storage, slug=slugify(config.name), key=master_key, block_size=BLOCK
    )
    repo = Repository(local, "", slugify(config.name))
    assert repo.ids() == [result.backup_id]
    target = tmp_path / "restored"
    assert run_restore(repo, "latest", target, master=master_key).ok
    assert snapshot(restored_root(target, src)) == snapshot(src)


def test_a_dropped_block_is_reported_as_lost_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = _tree(tmp_path / "src")
    _a_block_is_dropped(monkeypatch, FaultStorage(LocalStorage(tmp_path / "dest")))
    config = make_config([src], tmp_path / "dest")
    with pytest.raises(IntegrityError, match="lost on the way"):
        run_backup(
            config, LocalStorage(tmp_path / "dest"), slug=slugify(config.name), block_size=BLOCK
        )


@pytest.mark.parametrize("landed", [True, False])
def test_when_storage_cannot_say_whether_the_marker_landed_nothing_is_deleted(
    tmp_path: Path, master_key: MasterKey, landed: bool
) -> None:
    src = _tree(tmp_path / "src")
    local = LocalStorage(tmp_path / "dest")
    storage = FaultStorage(local)

    def maybe_stored_then_lost(inner: Any, key: str, data: bytes) -> None:
        if landed:
            inner.put_bytes(key, data)
        raise StorageConnectionError("read timed out")

    storage.inject("put", key_contains="backup.json", action=maybe_stored_then_lost)
    storage.inject("get", key_contains="backup.json", error=StorageConnectionError("down"))
    config = make_config([src], tmp_path / "dest", encryption=True)
    with pytest.raises(StorageConnectionError):
        run_backup(config, storage, slug=slugify(config.name), key=master_key, block_size=BLOCK)
    repo = Repository(local, "", slugify(config.name))
    left = _leftovers(tmp_path / "dest")  # nothing deleted: two packs, the index (marker)
    assert len(left) == (4 if landed else 3), left
    if landed:  # a marker may point at them: the backup is whole and restores
        target = tmp_path / "restored"
        assert run_restore(repo, "latest", target, master=master_key).ok
        assert snapshot(restored_root(target, src)) == snapshot(src)
    # The next run (the store answering again) keeps what is committed, removes the rest.
    after = run_backup(config, local, slug=slugify(config.name), key=master_key, block_size=BLOCK)
    assert len(repo.ids()) == (2 if landed else 1)
    # Not landed: the blocks the run stored are found again, not uploaded a second time.
    assert after.info.stats.stored_bytes < 20_000
