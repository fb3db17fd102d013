"""Odd sources never crash or hang a backup: they are skipped or stored as read, and counted."""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from backapp.domain.config import slugify
from backapp.engine.backup import run_backup
from backapp.engine.format import tarstream
from backapp.engine.format.layout import Repository
from backapp.engine.progress import CancelToken
from backapp.engine.restore import run_restore
from backapp.errors import CancelledError, EncryptionKeyError, SourceError
from backapp.storage.local import LocalStorage
from tests.engine.conftest import make_config
from tests.helpers.trees import restored_root


def test_fifo_socket_in_source_are_skipped_without_hanging(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("a")
    os.mkfifo(src / "pipe")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(src / "sock"))
    try:
        config = make_config([src], tmp_path / "dest")
        outcome: dict[str, object] = {}

        def backup() -> None:
            outcome["result"] = run_backup(
                config, LocalStorage(tmp_path / "dest"), slug=slugify(config.name)
            )

        worker = threading.Thread(target=backup, daemon=True)
        worker.start()
        worker.join(timeout=30)
        assert not worker.is_alive(), "backup hung on a FIFO"
    finally:
        sock.close()
    result = outcome["result"]
    assert result.skips.count == 2  # type: ignore[attr-defined]
    assert result.skips.reasons == {"fifo skipped": 1, "socket skipped": 1}  # type: ignore[attr-defined]
    assert result.files_processed == 1  # type: ignore[attr-defined]


def test_file_that_vanishes_during_backup_is_skipped_and_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a-first.bin").write_bytes(b"x" * 10)
    (src / "b-vanishes.txt").write_text("gone soon")
    (src / "c-last.txt").write_text("still here")
    real_readv = os.readv

    def readv_then_delete(fd: int, buffers: list[memoryview]) -> int:
        # While the first file is read (after the folder was listed), the second one vanishes.
        if (src / "b-vanishes.txt").exists():
            (src / "b-vanishes.txt").unlink()
        return real_readv(fd, buffers)

    monkeypatch.setattr(tarstream.os, "readv", readv_then_delete)
    config = make_config([src], tmp_path / "dest")
    result = run_backup(config, LocalStorage(tmp_path / "dest"), slug=slugify(config.name))
    assert result.skips.count == 1
    assert result.skips.samples[0][0].endswith("b-vanishes.txt")
    assert result.skips.samples[0][1] == "vanished during backup"
    assert result.files_processed == 2


def test_file_that_shrinks_while_read_is_stored_as_read_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    victim = src / "growing.log"
    victim.write_bytes(b"0123456789" * 1000)
    real_readv = os.readv
    shrunk = []

    def readv_after_truncate(fd: int, buffers: list[memoryview]) -> int:
        if not shrunk:
            shrunk.append(True)
            os.truncate(victim, 4000)  # someone rotates the log mid-read
        return real_readv(fd, buffers)

    monkeypatch.setattr(tarstream.os, "readv", readv_after_truncate)
    config = make_config([src], tmp_path / "dest")
    storage = LocalStorage(tmp_path / "dest")
    result = run_backup(config, storage, slug=slugify(config.name))
    assert result.skips.warnings == 1
    assert "shrank" in result.skips.samples[0][1]
    monkeypatch.undo()
    restored = run_restore(
        Repository(storage, "", slugify(config.name)), "latest", tmp_path / "out"
    )
    assert restored.ok, restored.errors
    out = restored_root(tmp_path / "out", src) / "growing.log"
    assert out.read_bytes() == b"0123456789" * 400


def test_missing_source_fails_before_anything_is_uploaded(tmp_path: Path) -> None:
    config = make_config([tmp_path / "nope"], tmp_path / "dest")
    with pytest.raises(SourceError, match="does not exist"):
        run_backup(config, LocalStorage(tmp_path / "dest"), slug=slugify(config.name))
    assert not (tmp_path / "dest").exists() or not any((tmp_path / "dest").rglob("*"))


def test_missing_key_fails_before_anything_is_uploaded(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    config = make_config([src], tmp_path / "dest", encryption=True)
    with pytest.raises(EncryptionKeyError, match="BACKUP_ENCRYPTION_KEY is not set"):
        run_backup(config, LocalStorage(tmp_path / "dest"), slug=slugify(config.name), key=None)
    assert not (tmp_path / "dest").exists() or not any((tmp_path / "dest").rglob("*"))


def test_overlapping_sources_are_refused(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    config = make_config([tmp_path / "a", tmp_path / "a" / "b"], tmp_path / "dest")
    with pytest.raises(SourceError, match="overlap"):
        run_backup(config, LocalStorage(tmp_path / "dest"), slug=slugify(config.name))


def test_cancelled_backup_leaves_nothing_behind(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for i in range(30):
        (src / f"f{i:02}").write_bytes(os.urandom(200_000))
    cancel = CancelToken()
    seen = []

    def on_progress(progress: object) -> None:
        seen.append(progress)
        cancel.cancel("stopped by test")

    storage = LocalStorage(tmp_path / "dest")
    config = make_config([src], tmp_path / "dest")
    with pytest.raises(CancelledError, match="stopped by test"):
        run_backup(
            config,
            storage,
            slug=slugify(config.name),
            progress=on_progress,
            cancel=cancel,
            block_size=65536,
        )
    assert seen
    assert list(storage.list("")) == []
    assert Repository(storage, "", slugify(config.name)).ids() == []


def test_patterns_select_what_is_backed_up(tmp_path: Path) -> None:
    src = tmp_path / "src"
    for d in ("logs", "node_modules/pkg", "photos/2024", "docs", "empty-kept"):
        (src / d).mkdir(parents=True)
    (src / "logs" / "app.log").write_text("log")
    (src / "node_modules" / "pkg" / "index.js").write_text("js")
    (src / "photos" / "2024" / "a.jpg").write_text("jpg")
    (src / "photos" / "2024" / "a.tmp").write_text("tmp")
    (src / "docs" / "a.md").write_text("md")
    (src / "docs" / "keep.log").write_text("keep")
    config = make_config([src], tmp_path / "dest")
    data = config.to_json_dict()
    data["sources"][0]["excludePatterns"] = ["node_modules/", "*.log", "!keep.log", "*.tmp"]
    from backapp.domain.config import parse_config

    storage = LocalStorage(tmp_path / "dest")
    run_backup(parse_config(data), storage, slug=slugify(parse_config(data).name))
    run_restore(Repository(storage, "", slugify(config.name)), "latest", tmp_path / "out")
    out = restored_root(tmp_path / "out", src)
    kept = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    assert kept == [
        "docs",
        "docs/a.md",
        "docs/keep.log",
        "empty-kept",
        "logs",
        "photos",
        "photos/2024",
        "photos/2024/a.jpg",
    ]

    data["sources"][0]["excludePatterns"] = []
    data["sources"][0]["includePatterns"] = ["photos/", "*.md"]
    run_backup(parse_config(data), storage, slug=slugify(parse_config(data).name))
    run_restore(Repository(storage, "", slugify(config.name)), "latest", tmp_path / "out2")
    out2 = restored_root(tmp_path / "out2", src)
    kept2 = sorted(str(p.relative_to(out2)) for p in out2.rglob("*"))
    assert kept2 == [
        "docs",
        "docs/a.md",
        "photos",
        "photos/2024",
        "photos/2024/a.jpg",
        "photos/2024/a.tmp",
    ]


def test_cancel_stops_a_bandwidth_limited_backup_within_seconds(tmp_path: Path) -> None:
    from backapp.storage.wrappers import ThrottledStorage, TokenBucket

    src = tmp_path / "src"
    src.mkdir()
    (src / "big.bin").write_bytes(os.urandom(8 * 1024 * 1024))
    cancel = CancelToken()
    local = LocalStorage(tmp_path / "dest")
    bucket = TokenBucket(256 * 1024, sleep=cancel.wait)  # 8 MiB would take 32 s
    slow = ThrottledStorage(local, bucket, None)
    config = make_config([src], tmp_path / "dest", compression=False)
    timer = threading.Timer(1.0, cancel.cancel, args=("stopped by test",))
    timer.start()
    started = time.monotonic()
    with pytest.raises(CancelledError):
        run_backup(config, slow, slug=slugify(config.name), cancel=cancel)
    timer.join()
    assert time.monotonic() - started < 4
    # Nothing committed, no lock left; finished packs stay for the next run to resume.
    left = [o.key for o in local.list("")]
    assert all(k.split("/")[1] in ("packs", "index") for k in left), left


def test_a_failure_after_the_commit_never_removes_the_committed_backup(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("a")
    storage = LocalStorage(tmp_path / "dest")
    config = make_config([src], tmp_path / "dest")

    def progress(p: object) -> None:
        if getattr(p, "phase", "") == "completed":
            raise RuntimeError("progress sink broke after the commit")

    with pytest.raises(RuntimeError):
        run_backup(config, storage, slug=slugify(config.name), progress=progress)
    repo = Repository(storage, "", slugify(config.name))
    [backup_id] = repo.ids()
    names = sorted(name for name, _ in repo.objects(backup_id))
    assert names == ["backup.json"]  # format 2: its data and manifest are blocks in packs
    assert list(storage.list(repo.base + "/packs/"))
    restored = run_restore(repo, backup_id, tmp_path / "out")
    assert restored.ok


def _swap_for_a_link(folder: Path, to: Path) -> None:
    folder.rename(folder.with_name(folder.name + ".moved"))
    folder.symlink_to(to)


def test_a_folder_swapped_for_a_symlink_while_it_is_opened_is_not_followed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A local user who can write in the source swaps a folder for a link to a secret
    # place between the backup's listing and its opening of the folder (as root, the
    # backup would otherwise store what the link points to).
    src = tmp_path / "src"
    (src / "victim").mkdir(parents=True)
    (src / "victim" / "own.txt").write_text("own\n")
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "shadow").write_text("root:hash\n")
    real_open = os.open

    def open_after_the_swap(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if (
            path == "victim"
            and kwargs.get("dir_fd") is not None
            and not (src / "victim.moved").exists()
        ):
            _swap_for_a_link(src / "victim", secret)
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", open_after_the_swap)
    config = make_config([src], tmp_path / "dest")
    result = run_backup(config, LocalStorage(tmp_path / "dest"), slug=slugify(config.name))
    monkeypatch.undo()
    repo = Repository(LocalStorage(tmp_path / "dest"), "", slugify(config.name))
    restored = run_restore(repo, "latest", tmp_path / "t")
    assert restored.ok
    root = restored_root(tmp_path / "t", src)
    assert not list(root.rglob("shadow"))
    assert "changed type during backup" in dict(result.skips.samples).get(
        str(src / "victim").lstrip("/") + "/", ""
    )


def test_files_are_read_from_the_folder_the_backup_opened_even_if_it_is_swapped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "src"
    (src / "victim").mkdir(parents=True)
    (src / "victim" / "a.txt").write_text("first\n")
    (src / "victim" / "shadow").write_text("the victim's own file\n")
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "shadow").write_text("root:hash\n")
    real_readv = os.readv

    def readv_then_swap(fd: int, buffers: list[memoryview]) -> int:
        if not (src / "victim.moved").exists():  # while a.txt is read
            _swap_for_a_link(src / "victim", secret)
        return real_readv(fd, buffers)

    monkeypatch.setattr(tarstream.os, "readv", readv_then_swap)
    config = make_config([src], tmp_path / "dest")
    run_backup(config, LocalStorage(tmp_path / "dest"), slug=slugify(config.name))
    monkeypatch.undo()
    repo = Repository(LocalStorage(tmp_path / "dest"), "", slugify(config.name))
    assert run_restore(repo, "latest", tmp_path / "t").ok
    stored = restored_root(tmp_path / "t", src) / "victim" / "shadow"
    assert stored.read_text() == "the victim's own file\n"
