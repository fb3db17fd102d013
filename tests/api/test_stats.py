"""Statistics after real runs: totals, outcomes, success rate, bytes, last runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.api.conftest import Api, config_doc, local_destination


def test_stats_of_an_empty_installation_are_zero(api: Api) -> None:
    stats = api.get("/api/backups/stats").json()

    assert stats["totalConfigs"] == 0
    assert stats["activeConfigs"] == 0
    assert stats["totalBackups"] == 0
    assert stats["completedBackups"] == 0
    assert stats["failedBackups"] == 0
    assert stats["successRate"] is None
    assert stats["totalBytesStored"] == 0
    assert stats["lastRun"] is None
    assert stats["lastRunPerConfig"] == {}


def test_stats_count_one_completed_and_one_failed_run(
    api: Api, worker: Any, source: Path, dest: Path, tmp_path: Path
) -> None:
    good = api.create_config(config_doc([source], local_destination(dest)))
    bad = api.create_config(
        {**config_doc([tmp_path / "missing"], local_destination(dest)), "name": "Broken"}
    )
    idle = api.create_config({**config_doc([source], local_destination(dest)), "name": "Idle"})
    api.patch(f"/api/backups/configs/{idle['id']}", json={"enabled": False})

    completed = api.wait_for_run(api.execute(good["id"])["id"])
    failed = api.wait_for_run(api.execute(bad["id"])["id"])
    assert completed["status"] == "completed", completed["error"]
    assert failed["status"] == "failed"

    stats = api.get("/api/backups/stats").json()

    assert stats["totalConfigs"] == 3
    assert stats["activeConfigs"] == 2
    assert stats["totalBackups"] == 2
    assert stats["completedBackups"] == 1
    assert stats["failedBackups"] == 1
    assert stats["successRate"] == 50.0
    # The stored bytes of a backup are the packs and index it wrote (backup.json is a small
    # marker); its index was rewritten as final once it committed (a few bytes differ).
    packs = sum(f.stat().st_size for f in dest.rglob("packs/*/*") if f.is_file())
    index = sum(f.stat().st_size for f in dest.rglob("index/*") if f.is_file())
    assert stats["totalBytesStored"] == completed["storedBytes"]
    assert abs(completed["storedBytes"] - (packs + index)) < 64, (completed, packs, index)
    assert stats["bytesTransferred"] >= completed["bytesTransferred"] > 0
    assert stats["openAlerts"] == 1
    assert stats["lastRun"]["id"] == failed["id"]
    per_config = stats["lastRunPerConfig"]
    assert set(per_config) == {good["id"], bad["id"]}
    assert per_config[good["id"]]["id"] == completed["id"]
    assert per_config[good["id"]]["status"] == "completed"
    assert per_config[bad["id"]]["status"] == "failed"
    assert stats["nextRunAt"].endswith("T02:00:00+00:00")
