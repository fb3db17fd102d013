from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

CliRunner = Callable[..., subprocess.CompletedProcess[str]]


def write_config(
    path: Path, sources: list[Path], destination: dict[str, Any], **options: Any
) -> Path:
    """Given sources, a destination document and option overrides, write a config file."""
    opts: dict[str, Any] = {"type": "full", "compression": True, "encryption": False}
    opts.update(options)
    doc = {
        "name": "CLI Test",
        "enabled": True,
        "sources": [{"path": str(s)} for s in sources],
        "destination": destination,
        "schedule": {"cronExpression": "0 2 * * *", "timezone": "UTC"},
        "options": opts,
    }
    path.write_text(json.dumps(doc))
    return path


@pytest.fixture
def encryption_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


@pytest.fixture
def cli(tmp_path: Path) -> CliRunner:
    """Return a function running ``backapp ARGS`` in a subprocess with a clean environment."""

    def run(
        *args: str,
        env: dict[str, str] | None = None,
        prefix: list[str] | None = None,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess[str]:
        full_env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("BACKUP_ENCRYPTION_KEY", "AWS_S3_ENDPOINT", "DATABASE_URL")
        }
        full_env.update(env or {})
        return subprocess.run(
            [*(prefix or []), sys.executable, "-m", "backapp", *args],
            capture_output=True,
            text=True,
            env=full_env,
            cwd=tmp_path,
            timeout=timeout,
        )

    return run
