from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import pytest

from backapp.domain.config import BackupConfig, parse_config
from backapp.engine.format.crypto import MasterKey
from backapp.storage.local import LocalStorage


def make_config(sources: list[Path], dest: Path, **options: Any) -> BackupConfig:
    """Given source folders, a local destination and option overrides, return a config."""
    opts: dict[str, Any] = {"type": "full", "compression": True, "encryption": False}
    opts.update(options)
    return parse_config(
        {
            "name": "Engine Test",
            "enabled": True,
            "sources": [{"path": str(s)} for s in sources],
            "destination": {"type": "local", "path": str(dest)},
            "schedule": {"cronExpression": "0 2 * * *", "timezone": "UTC"},
            "options": opts,
        }
    )


@pytest.fixture
def master_key() -> MasterKey:
    return MasterKey.from_base64(base64.b64encode(os.urandom(32)).decode())


@pytest.fixture
def local_storage(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "store")
