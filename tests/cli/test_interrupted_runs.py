"""A backup killed at the worst moment (kill -9 mid-upload) leaves leftovers that the next
run removes: its lock, its half-written pack or unfinished multipart upload (the packs it
finished stay: the next run resumes from them, see test_resume.py). A live run's lock is
respected."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest

from backapp.engine.format.layout import Repository
from backapp.engine.lock import RepoLock
from backapp.errors import RepositoryLockedError
from backapp.storage.local import LocalStorage
from tests.cli.conftest import CliRunner, write_config
from tests.helpers.trees import restored_root, snapshot


def _source(tmp_path: Path, mib: int) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    (src / "big.bin").write_bytes(os.urandom(mib * 1024 * 1024))
    (src / "small.txt").write_text("small\n")
    return src


def _start(cfg: Path, tmp_path: Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    full = {k: v for k, v in os.environ.items() if k not in ("BACKUP_ENCRYPTION_KEY",)}
    full.update(env or {})
    return subprocess.Popen(
        [sys.executable, "-m", "backapp", "backup", "run", "-c", str(cfg), "--json"],
        cwd=tmp_path,
        env=full,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _kill_when(process: subprocess.Popen[str], ready: object, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not ready():  # type: ignore[operator]
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the backup never got to the point to kill it"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_a_backup_killed_mid_upload_is_cleaned_up_by_the_next_run(
    cli: CliRunner, tmp_path: Path
) -> None:
    src = _source(tmp_path, 6)
    dest = tmp_path / "dest"
    cfg = write_config(
        tmp_path / "c.json",
        [src],
        {"type": "local", "path": str(dest)},
        compression=False,
        bandwidth=1024,
    )
    process = _start(cfg, tmp_path)

    def mid_upload() -> bool:  # a pack half-written, the lock in place
        files = _files(dest) if dest.exists() else []
        return any("/packs/" in f and ".partial-" in f for f in files) and any(
            f.startswith("cli-test/locks/") and f.endswith(".json") for f in files
        )

    _kill_when(process, mid_upload)
    assert mid_upload()

    # The same config, at full speed now.
    write_config(cfg, [src], {"type": "local", "path": str(dest)}, compression=False)
    run = cli("backup", "run", "-c", str(cfg), "--json")
    assert run.returncode == 0, run.stderr
    doc = json.loads(run.stdout)
    assert "removed the stale lock of backup" in doc["cleanup"]
    assert "left by interrupted runs" in doc["cleanup"]
    left = _files(dest)
    assert [f for f in left if not f.startswith(("cli-test/packs/", "cli-test/index/"))] == [
        f"cli-test/{doc['backupId']}/backup.json"
    ]
    assert not [f for f in left if ".partial-" in f]
    restored = cli("restore", "-c", str(cfg), "-t", str(tmp_path / "out"))
    assert restored.returncode == 0, restored.stderr
    assert snapshot(restored_root(tmp_path / "out", src)) == snapshot(src)


def test_a_backup_killed_mid_multipart_upload_has_its_upload_aborted_next_time(
    cli: CliRunner, tmp_path: Path, moto_endpoint: str, s3_bucket: str
) -> None:
    src = _source(tmp_path, 24)
    dest = {"type": "s3", "bucket": s3_bucket, "region": "us-east-1", "prefix": "p"}
    cfg = write_config(tmp_path / "c.json", [src], dest, compression=False, bandwidth=4096)
    env = {"AWS_S3_ENDPOINT": moto_endpoint}
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    process = _start(cfg, tmp_path, env)
    _kill_when(process, lambda: bool(s3.list_multipart_uploads(Bucket=s3_bucket).get("Uploads")))
    assert s3.list_multipart_uploads(Bucket=s3_bucket).get("Uploads")

    write_config(cfg, [src], dest, compression=False)  # the same config, at full speed now
    run = cli("backup", "run", "-c", str(cfg), "--json", env=env, timeout=180)
    assert run.returncode == 0, run.stderr
    doc = json.loads(run.stdout)
    assert "left by interrupted runs" in doc["cleanup"]
    assert s3.list_multipart_uploads(Bucket=s3_bucket).get("Uploads") is None
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=s3_bucket)["Contents"])
    assert [k for k in keys if not k.startswith(("p/cli-test/packs/", "p/cli-test/index/"))] == [
        f"p/cli-test/{doc['backupId']}/backup.json"
    ]


def _foreign_lock(dest: Path, *, host: str, pid: int, age_seconds: float = 0) -> Path:
    lock = dest / "cli-test" / "locks" / "20260101T000000-abcdefabcdef.json"
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text(
        json.dumps(
            {
                "host": host,
                "pid": pid,
                "purpose": "backup",
                "backupId": "20260101T000000.000Z-abcdef",
                "created": "then",
            }
        )
    )
    if age_seconds:
        then = time.time() - age_seconds
        os.utime(lock, (then, then))
    return lock


def test_a_live_lock_of_another_host_is_respected_and_a_stale_one_removed(
    cli: CliRunner, tmp_path: Path
) -> None:
    src = _source(tmp_path, 1)
    dest = tmp_path / "dest"
    cfg = write_config(tmp_path / "c.json", [src], {"type": "local", "path": str(dest)})
    lock = _foreign_lock(dest, host="elsewhere", pid=1)
    run = cli("backup", "run", "-c", str(cfg))
    assert run.returncode == 1
    assert (
        "locked by another run: backup of backup 20260101T000000.000Z-abcdef on host "
        "elsewhere (pid 1)" in run.stderr
    )
    assert lock.exists() and not [p for p in _files(dest) if "locks" not in p]
    _foreign_lock(dest, host="elsewhere", pid=1, age_seconds=11 * 60)  # not refreshed
    run = cli("backup", "run", "-c", str(cfg), "--json")
    assert run.returncode == 0, run.stderr
    assert "removed the stale lock" in json.loads(run.stdout)["cleanup"]
    assert not lock.exists()


def test_a_lock_of_this_host_is_stale_once_its_process_is_gone_even_if_the_pid_is_reused(
    tmp_path: Path,
) -> None:
    repo = Repository(LocalStorage(tmp_path / "dest"), "", "cfg")
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        live = RepoLock(repo, "backup")
        live_doc = json.loads(live._document())
        # The sleeper holds it: same host, its pid and its start time.
        from backapp.engine.lock import _process_start

        live_doc.update(pid=sleeper.pid, start=_process_start(sleeper.pid))
        repo.storage.put_bytes(live.key, json.dumps(live_doc).encode())
        with pytest.raises(RepositoryLockedError, match=f"pid {sleeper.pid}"):
            RepoLock(repo, "backup").acquire(attempts=1)
        # The same pid with another start time: a different process, the lock is stale.
        live_doc.update(start="1")
        repo.storage.put_bytes(live.key, json.dumps(live_doc).encode())
        with RepoLock(repo, "backup") as mine:
            assert mine.removed_stale
    finally:
        sleeper.kill()
        sleeper.wait()
    # And a dead pid on this host: stale at once.
    repo.storage.put_bytes(live.key, json.dumps({**live_doc, "pid": sleeper.pid}).encode())
    with RepoLock(repo, "backup") as mine:
        assert mine.removed_stale
    assert socket.gethostname() in mine.removed_stale[0]
    assert list(repo.storage.list("cfg/locks/")) == []


def test_a_held_lock_is_refreshed_while_its_run_goes_on(tmp_path: Path) -> None:
    repo = Repository(LocalStorage(tmp_path / "dest"), "", "cfg")
    with RepoLock(repo, "backup", refresh_every=0.1) as lock:
        first = json.loads(repo.storage.get_bytes(lock.key))["refreshed"]
        path = tmp_path / "dest" / lock.key
        before = path.stat().st_mtime_ns
        deadline = time.monotonic() + 5
        while path.stat().st_mtime_ns == before and time.monotonic() < deadline:
            time.sleep(0.05)
        assert path.stat().st_mtime_ns > before
        assert json.loads(repo.storage.get_bytes(lock.key))["refreshed"] >= first
    assert not path.exists()


def test_sigterm_mid_upload_aborts_cleans_up_and_says_so_in_one_line(
    tmp_path: Path, moto_endpoint: str, s3_bucket: str
) -> None:
    src = _source(tmp_path, 24)
    dest = {"type": "s3", "bucket": s3_bucket, "region": "us-east-1", "prefix": "p"}
    cfg = write_config(tmp_path / "c.json", [src], dest, compression=False, bandwidth=4096)
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    process = _start(cfg, tmp_path, {"AWS_S3_ENDPOINT": moto_endpoint})
    deadline = time.monotonic() + 60
    while not s3.list_multipart_uploads(Bucket=s3_bucket).get("Uploads"):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    signalled = time.monotonic()
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=30)
    assert time.monotonic() - signalled < 15
    assert process.returncode == 130, (out, err)
    assert "interrupted (SIGTERM)" in out + err and "Traceback" not in out + err
    assert s3.list_multipart_uploads(Bucket=s3_bucket).get("Uploads") is None
    # Not even a lock; only what it stored whole stays, for the next run to resume from.
    left = [o["Key"] for o in s3.list_objects_v2(Bucket=s3_bucket).get("Contents", [])]
    assert all(k.startswith(("p/cli-test/packs/", "p/cli-test/index/")) for k in left), left


def test_a_killed_restore_leaves_no_partial_file_and_skip_finishes_it(
    cli: CliRunner, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for i in range(6):
        (src / f"f{i}.bin").write_bytes(os.urandom(2 * 1024 * 1024))
    cfg = write_config(
        tmp_path / "c.json",
        [src],
        {"type": "local", "path": str(tmp_path / "d")},
        compression=False,
        downloadBandwidth=2048,
    )
    assert cli("backup", "run", "-c", str(cfg)).returncode == 0
    target = tmp_path / "t"
    root = target / str(src).lstrip("/")
    process = subprocess.Popen(
        [sys.executable, "-m", "backapp", "restore", "-c", str(cfg), "-t", str(target)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _kill_when(process, lambda: root.exists() and len(list(root.iterdir())) >= 2)
    for restored in root.iterdir():  # whatever is there under its name is whole
        assert restored.read_bytes() == (src / restored.name).read_bytes()
    assert not [p for p in target.rglob("*") if ".backapp-restoring-" in p.name]
    (root / "f0.bin").write_bytes(b"edited since")  # a kept file that differs: said so
    run = cli("restore", "-c", str(cfg), "-t", str(target), "--existing", "skip", "--json")
    assert run.returncode == 0, run.stderr
    doc = json.loads(run.stdout)
    assert any(
        w["path"].endswith("f0.bin") and "kept the file" in w["message"] for w in doc["warnings"]
    )
    for i in range(1, 6):
        assert (root / f"f{i}.bin").read_bytes() == (src / f"f{i}.bin").read_bytes()
