"""A full disk, at the destination or at the restore target, ends in a clear error: no
traceback, no half-written object or file left behind, and the CLI exits 1.

Each run happens in a user and mount namespace with a 1 MiB tmpfs mounted where the
data goes, so the disk really fills up (ENOSPC from the kernel, not a mock).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.cli.conftest import CliRunner, write_config

# Mount a small tmpfs on $0, run the rest, then list what is left there into $0.list.
_WRAP = (
    'mount -t tmpfs -o size=1m tmpfs "$0" || exit 99; '
    '"$@"; rc=$?; (cd "$0" && find . -mindepth 1 -printf "%P\\n") > "$0.list"; exit $rc'
)


def _in_small_disk(mountpoint: Path) -> list[str]:
    if shutil.which("unshare") is None:
        pytest.fail("util-linux 'unshare' is needed")
    mountpoint.mkdir(parents=True, exist_ok=True)
    return ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", _WRAP, str(mountpoint)]


def _left(mountpoint: Path) -> list[str]:
    listing = Path(f"{mountpoint}.list").read_text().split()
    return sorted(listing)


@pytest.fixture
def big_source(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    (src / "small.txt").write_text("fits\n")
    for i in range(3):
        (src / f"big{i}.bin").write_bytes(os.urandom(700 * 1024))
    return src


def test_a_full_destination_fails_the_backup_cleanly(
    cli: CliRunner, tmp_path: Path, big_source: Path
) -> None:
    disk = tmp_path / "disk"
    cfg = write_config(
        tmp_path / "c.json",
        [big_source],
        {"type": "local", "path": str(disk / "backups")},
        compression=False,
    )
    run = cli("backup", "run", "-c", str(cfg), prefix=_in_small_disk(disk))
    assert run.returncode == 1, (run.stdout, run.stderr)
    assert "No space left on device" in run.stderr
    assert "Traceback" not in run.stderr + run.stdout
    assert _left(disk) == ["backups"], "nothing of the failed backup may stay"


def test_a_full_restore_target_reports_each_file_and_leaves_no_partial_file(
    cli: CliRunner, tmp_path: Path, big_source: Path
) -> None:
    cfg = write_config(
        tmp_path / "c.json", [big_source], {"type": "local", "path": str(tmp_path / "d")}
    )
    assert cli("backup", "run", "-c", str(cfg)).returncode == 0
    disk = tmp_path / "disk"
    run = cli(
        "restore",
        "-c",
        str(cfg),
        "--target",
        str(disk / "r"),
        "--json",
        prefix=_in_small_disk(disk),
    )
    assert run.returncode == 1, (run.stdout, run.stderr)
    assert "Traceback" not in run.stderr + run.stdout
    doc = json.loads(run.stdout)
    failed = {e["path"].rsplit("/", 1)[-1] for e in doc["errors"]}
    assert failed and failed <= {"big0.bin", "big1.bin", "big2.bin"}
    assert all("No space left on device" in e["message"] for e in doc["errors"])
    restored_files = {p.rsplit("/", 1)[-1] for p in _left(disk) if p.endswith((".bin", ".txt"))}
    # What is there is whole (checked by SHA-256 as written); what failed is gone.
    assert "small.txt" in restored_files
    assert not restored_files & failed
    assert not [p for p in _left(disk) if ".restoring-" in p or ".partial" in p]


def test_unshare_gives_a_real_full_disk(tmp_path: Path) -> None:
    # The two tests above rely on this: writing past 1 MiB really fails with ENOSPC.
    disk = tmp_path / "disk"
    script = ["dd", "if=/dev/zero", f"of={disk}/fill", "bs=64k", "count=64"]
    run = subprocess.run([*_in_small_disk(disk), *script], capture_output=True, text=True)
    assert run.returncode != 0
    assert "No space left on device" in run.stderr
