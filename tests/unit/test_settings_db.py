"""A DATABASE_URL BackApp cannot serve from is refused at start, in one line, exit 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
def test_an_in_memory_sqlite_database_is_refused_with_the_setting_named(
    tmp_path: Path, url: str
) -> None:
    env = {**os.environ, "DATABASE_URL": url}
    done = subprocess.run(
        [sys.executable, "-m", "backapp", "db", "upgrade"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "DATABASE_URL" in done.stderr and "sqlite:///./data/backapp.db" in done.stderr
    assert "Traceback" not in done.stderr
