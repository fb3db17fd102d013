"""Resuming interrupted backups (issue 17): what a killed run stored is found again by the
next run, which uploads only the rest and says so; cleanup keeps it while it is recent,
and prune removes it once no backup names it and the grace period has passed."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

from backapp.engine.format.layout import Repository
from backapp.engine.prune import run_prune
from backapp.storage.local import LocalStorage
from tests.cli.conftest import CliRunner, write_config
from tests.cli.test_interrupted_runs import _kill_when, _start
from tests.helpers.trees import restored_root, snapshot

MIB = 1024 * 1024
TREE = 64 * MIB


def _random_tree(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    for i in range(TREE // (4 * MIB)):
        (src / f"photo-{i:02}.jpg").write_bytes(os.urandom(4 * MIB))
    return src


def _indexed_packs(dest: Path) -> int:
    """Given a destination, return how many packs its (checkpoint) indexes list."""
    index = dest / "cli-test" / "index"
    return len(list(index.iterdir())) if index.exists() else 0


def _kill_after(cli: CliRunner, tmp_path: Path, src: Path, dest: Path, packs: int) -> None:
    """Start a slow backup and SIGKILL it once ``packs`` more packs are listed."""
    cfg = write_config(
        tmp_path / "slow.json",
        [src],
        {"type": "local", "path": str(dest)},
        compression=False,
        bandwidth=8 * 1024,  # 8 MiB/s: a 16 MiB pack every two seconds
    )
    before = _indexed_packs(dest)
    process = _start(cfg, tmp_path)
    _kill_when(process, lambda: _indexed_packs(dest) >= before + packs, timeout=90)


def _run(cli: CliRunner, tmp_path: Path, src: Path, dest: Path) -> dict[str, object]:
    cfg = write_config(
        tmp_path / "fast.json", [src], {"type": "local", "path": str(dest)}, compression=False
    )
    run = cli("backup", "run", "-c", str(cfg), "--json")
    assert run.returncode == 0, run.stderr
    doc: dict[str, object] = json.loads(run.stdout)
    return doc


def test_a_backup_killed_half_way_is_resumed_by_the_next_run(
    cli: CliRunner, tmp_path: Path
) -> None:
    src = _random_tree(tmp_path)
    dest = tmp_path / "dest"
    _kill_after(cli, tmp_path, src, dest, packs=2)  # 32 of 64 MiB stored
    cfg = write_config(
        tmp_path / "fast.json", [src], {"type": "local", "path": str(dest)}, compression=False
    )
    run = cli("backup", "run", "-c", str(cfg))
    assert run.returncode == 0, run.stderr
    assert "resumed: " in run.stdout and "already stored by an interrupted run" in run.stdout
    repo = Repository(LocalStorage(dest), "", "cli-test")
    (info,) = repo.list()
    assert info.type == "full"
    assert info.stored_bytes <= 0.6 * TREE, info.stored_bytes  # at most ~60% uploaded
    restored = cli("restore", "-c", str(cfg), "-t", str(tmp_path / "out"))
    assert restored.returncode == 0, restored.stderr
    assert snapshot(restored_root(tmp_path / "out", src)) == snapshot(src)


def test_a_backup_interrupted_twice_still_converges(cli: CliRunner, tmp_path: Path) -> None:
    src = _random_tree(tmp_path)
    dest = tmp_path / "dest"
    _kill_after(cli, tmp_path, src, dest, packs=1)
    _kill_after(cli, tmp_path, src, dest, packs=1)  # resumes the first, dies again
    doc = _run(cli, tmp_path, src, dest)
    assert int(doc["resumedBytes"]) >= 2 * 16 * MIB - 4 * MIB, doc  # type: ignore[call-overload]
    assert int(doc["bytesTransferred"]) <= 0.6 * TREE, doc  # type: ignore[call-overload]
    again = _run(cli, tmp_path, src, dest)  # nothing new: nothing resumed, little sent
    assert again["resumedBytes"] == 0 and int(again["bytesTransferred"]) < MIB  # type: ignore[call-overload]
    cfg = tmp_path / "fast.json"
    restored = cli("restore", "-c", str(cfg), "-t", str(tmp_path / "out"))
    assert restored.returncode == 0, restored.stderr
    assert snapshot(restored_root(tmp_path / "out", src)) == snapshot(src)


def test_prune_keeps_a_recent_interrupted_run_and_removes_it_after_the_grace_period(
    cli: CliRunner, tmp_path: Path
) -> None:
    src = _random_tree(tmp_path)
    dest = tmp_path / "dest"
    _kill_after(cli, tmp_path, src, dest, packs=1)
    repo = Repository(LocalStorage(dest), "", "cli-test")
    kept = run_prune(repo)
    assert kept.packs_resumable_kept >= 1 and kept.bytes_freed == 0
    later = datetime.now(UTC) + timedelta(hours=2)
    gone = run_prune(repo, now=later)
    assert gone.packs_removed + gone.packs_unlisted_removed >= 1
    assert all(p.is_dir() for p in (dest / "cli-test" / "packs").rglob("*"))  # no pack left
    # A completed backup, then prune after the grace period: no block no backup names.
    _kill_after(cli, tmp_path, src, dest, packs=1)
    _run(cli, tmp_path, src, dest)
    run_prune(repo, now=later)
    left = run_prune(repo, dry_run=True, now=later)
    assert (left.blocks_removed, left.blocks_unused_left, left.packs_unlisted_removed) == (0, 0, 0)


def _s3_indexes(s3: object, bucket: str) -> int:
    listed = s3.list_objects_v2(Bucket=bucket, Prefix="p/cli-test/index/")  # type: ignore[attr-defined]
    return len(listed.get("Contents", []))


def test_a_backup_to_s3_stopped_by_sigterm_is_resumed(
    cli: CliRunner, tmp_path: Path, moto_endpoint: str, s3_bucket: str
) -> None:
    import signal

    import boto3

    src = tmp_path / "src"
    src.mkdir()
    for i in range(8):
        (src / f"video-{i}.bin").write_bytes(os.urandom(4 * MIB))
    dest = {"type": "s3", "bucket": s3_bucket, "region": "us-east-1", "prefix": "p"}
    env = {"AWS_S3_ENDPOINT": moto_endpoint}
    slow = write_config(tmp_path / "slow.json", [src], dest, compression=False, bandwidth=8192)
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    process = _start(slow, tmp_path, env)
    import time

    deadline = time.monotonic() + 60
    while _s3_indexes(s3, s3_bucket) < 1:  # a pack is stored and listed
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)  # as Ctrl-C: stopped and cleaned up, exit 130
    assert process.wait(timeout=30) == 130
    fast = write_config(tmp_path / "fast.json", [src], dest, compression=False)
    run = cli("backup", "run", "-c", str(fast), "--json", env=env)
    assert run.returncode == 0, run.stderr
    doc = json.loads(run.stdout)
    assert doc["resumedBytes"] >= 12 * MIB and doc["bytesTransferred"] <= 24 * MIB, doc
    restored = cli("restore", "-c", str(fast), "-t", str(tmp_path / "out"), env=env)
    assert restored.returncode == 0, restored.stderr
    assert snapshot(restored_root(tmp_path / "out", src)) == snapshot(src)
