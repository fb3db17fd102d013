"""Run the real ``backapp`` command in a subprocess, as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

# Settings a test's own environment must not leak into the command (it gives its own).
_SETTINGS = ("BACKUP_ENCRYPTION_KEY", "AWS_S3_ENDPOINT", "DATABASE_URL", "BACKAPP_NOTIFY_URLS")


def run_backapp(
    cwd: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Given a working folder, arguments and settings, run ``backapp ARGS`` there and return
    what it did (exit code, stdout, stderr as text), without BackApp's settings from the
    test's environment beyond ``env``."""
    full_env = {k: v for k, v in os.environ.items() if k not in _SETTINGS}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "backapp", *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd,
        timeout=timeout,
        check=False,
    )
