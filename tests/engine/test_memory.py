"""Memory stays flat as the data grows: the pipeline streams, it never holds an archive."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

_MEASURE = """
import resource, subprocess, sys
subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def _peak_rss_kib(args: list[str], cwd: Path) -> int:
    out = subprocess.run(
        [sys.executable, "-c", _MEASURE, *args], capture_output=True, text=True, cwd=cwd, check=True
    )
    return int(out.stdout.strip())


def _tree(root: Path, mib: int) -> Path:
    root.mkdir()
    chunk = os.urandom(1024 * 1024)
    for i in range(mib // 8):
        with open(root / f"file-{i:03}.bin", "wb") as f:
            for j in range(8):
                f.write(chunk[j:] + chunk[:j])  # distinct blocks, still incompressible
    return root


def test_backup_and_restore_memory_does_not_grow_with_the_data(tmp_path: Path) -> None:
    peaks = {}
    for mib in (24, 144):
        src = _tree(tmp_path / f"src-{mib}", mib)
        cfg = tmp_path / f"cfg-{mib}.json"
        cfg.write_text(
            json.dumps(
                {
                    "name": f"mem {mib}",
                    "enabled": True,
                    "sources": [{"path": str(src)}],
                    "destination": {"type": "local", "path": str(tmp_path / "dest")},
                    "schedule": {"cronExpression": "0 2 * * *", "timezone": "UTC"},
                    "options": {
                        "type": "full",
                        "compression": True,
                        "compressionLevel": 1,
                        "encryption": False,
                    },
                }
            )
        )
        backup = [sys.executable, "-m", "backapp", "backup", "run", "-c", str(cfg), "--json"]
        restore = [
            sys.executable,
            "-m",
            "backapp",
            "restore",
            "-c",
            str(cfg),
            "-t",
            str(tmp_path / f"out-{mib}"),
        ]
        peaks[mib] = (_peak_rss_kib(backup, tmp_path), _peak_rss_kib(restore, tmp_path))
    (small_backup, small_restore), (big_backup, big_restore) = peaks[24], peaks[144]
    # Six times the data, (almost) the same memory: allow 12 MiB of noise.
    assert big_backup - small_backup < 12 * 1024, peaks
    assert big_restore - small_restore < 12 * 1024, peaks
    assert big_backup < 150 * 1024, peaks
