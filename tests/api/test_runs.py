"""Runs through the API: queueing, the one-active-run rule, the log, cancelling."""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from backapp.services import configs as config_service
from backapp.services import runs as run_service
from tests.api.conftest import Api, config_doc, local_destination

BIG_FILES = 100
BIG_FILE_SIZE = 2 * 1024 * 1024  # 200 MiB in all: a backup that takes a while


@pytest.fixture(scope="module")
def big_source(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A 200 MiB tree of incompressible files, made once for the module."""
    root = tmp_path_factory.mktemp("big") / "source"
    for i in range(BIG_FILES):
        folder = root / f"d{i % 10}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{i:03}.bin").write_bytes(os.urandom(BIG_FILE_SIZE))
    yield root
    shutil.rmtree(root)  # pytest keeps the last runs' temp folders: not 200 MiB of them


def test_execute_queues_a_run_and_answers_202_at_once(api: Api, source: Path, dest: Path) -> None:
    config = api.create_config(config_doc([source], local_destination(dest)))

    response = api.post("/api/backups/execute", json={"configId": config["id"]})

    assert response.status_code == 202
    run = response.json()
    assert str(uuid.UUID(run["id"])) == run["id"]
    assert run["status"] == "queued"
    assert run["configId"] == config["id"]
    assert run["configName"] == "API Test"
    assert run["trigger"] == "manual"
    assert run["type"] == "full"
    assert run["requestedBy"] == "admin"
    assert run["startedAt"] is None
    assert run["progress"] is None
    assert api.run(run["id"]) == run


def test_execute_for_an_unknown_config_is_a_404(api: Api) -> None:
    response = api.post("/api/backups/execute", json={"configId": str(uuid.uuid4())})

    assert response.status_code == 404
    assert api.get("/api/backups/logs").json() == []


def test_execute_needs_exactly_a_config_id(api: Api) -> None:
    assert api.post("/api/backups/execute", json={}).status_code == 422
    assert api.post("/api/backups/execute", json={"config_id": "x"}).status_code == 422
    response = api.post("/api/backups/execute", json={"configId": "x", "now": True})
    assert response.status_code == 422
    assert "now" in [p["field"] for p in response.json()["problems"]]


def test_a_config_never_has_two_runs_at_once(api: Api, source: Path, dest: Path) -> None:
    config = api.create_config(config_doc([source], local_destination(dest)))
    first = api.execute(config["id"])

    second = api.post("/api/backups/execute", json={"configId": config["id"]})

    assert second.status_code == 409
    assert first["id"] in second.json()["error"]
    assert [r["id"] for r in api.get("/api/backups/logs").json()] == [first["id"]]


def test_a_queued_run_is_cancelled_at_once(api: Api, source: Path, dest: Path) -> None:
    config = api.create_config(config_doc([source], local_destination(dest)))
    run = api.execute(config["id"])

    response = api.post(f"/api/backups/logs/{run['id']}/cancel")

    assert response.status_code == 202
    cancelled = response.json()
    assert cancelled["status"] == "cancelled"
    assert cancelled["completedAt"] is not None
    assert "admin" in cancelled["error"]
    assert api.run(run["id"])["status"] == "cancelled"
    assert api.post(f"/api/backups/logs/{run['id']}/cancel").status_code == 409
    assert api.execute(config["id"])["status"] == "queued"  # the config is free again


def test_cancelling_an_unknown_run_is_a_404(api: Api) -> None:
    assert api.post(f"/api/backups/logs/{uuid.uuid4()}/cancel").status_code == 404


def test_an_unknown_run_is_a_404(api: Api) -> None:
    response = api.get(f"/api/backups/logs/{uuid.uuid4()}")

    assert response.status_code == 404
    assert "not found" in response.json()["error"]


def _fill_history(api: Api, config_id: str, count: int) -> None:
    """Given a config, record ``count`` cancelled runs of it through the services."""
    with api.ctx.db.session() as session:
        config = config_service.get(session, config_id)
        for _ in range(count):
            run = run_service.enqueue(session, config, requested_by="admin")
            run_service.request_cancel(session, run.id, "admin")


def test_logs_are_newest_first_with_a_default_limit_of_50(
    api: Api, source: Path, dest: Path
) -> None:
    config = api.create_config(config_doc([source], local_destination(dest)))
    _fill_history(api, config["id"], 55)

    logs = api.get("/api/backups/logs").json()

    assert len(logs) == 50
    stamps = [r["queuedAt"] for r in logs]
    assert stamps == sorted(stamps, reverse=True)
    assert len(api.get("/api/backups/logs", params={"limit": 1000}).json()) == 55
    ten = api.get("/api/backups/logs", params={"limit": 10}).json()
    assert [r["id"] for r in ten] == [r["id"] for r in logs[:10]]


def test_log_limits_outside_1_to_1000_are_a_422(api: Api) -> None:
    for limit in ("0", "1001", "-1", "ten"):
        response = api.get("/api/backups/logs", params={"limit": limit})
        assert response.status_code == 422, limit
        assert response.json()["problems"][0]["field"] == "query.limit"
    assert api.get("/api/backups/logs", params={"limit": 1}).status_code == 200


def test_logs_filter_by_config_and_status(api: Api, source: Path, dest: Path) -> None:
    first = api.create_config(config_doc([source], local_destination(dest)))
    second = api.create_config(config_doc([source], local_destination(dest)))
    _fill_history(api, first["id"], 2)
    queued = api.execute(second["id"])

    mine = api.get("/api/backups/logs", params={"configId": second["id"]}).json()
    assert [r["id"] for r in mine] == [queued["id"]]
    theirs = api.get("/api/backups/logs", params={"configId": first["id"]}).json()
    assert len(theirs) == 2
    assert {r["configId"] for r in theirs} == {first["id"]}
    only_queued = api.get("/api/backups/logs", params={"status": "queued"}).json()
    assert [r["id"] for r in only_queued] == [queued["id"]]
    assert api.get("/api/backups/logs", params={"configId": str(uuid.uuid4())}).json() == []
    assert api.get("/api/backups/logs", params={"status": "exploded"}).status_code == 422


def test_a_completed_run_records_its_metrics(
    api: Api, worker: Any, source: Path, dest: Path
) -> None:
    config = api.create_config(config_doc([source], local_destination(dest)))

    run = api.wait_for_run(api.execute(config["id"])["id"])

    assert run["status"] == "completed", run["error"]
    assert run["filesProcessed"] == 3
    assert run["filesSkipped"] == 0
    assert run["totalBytes"] == sum(f.stat().st_size for f in source.rglob("*") if f.is_file())
    assert run["bytesTransferred"] > 0
    assert run["durationSeconds"] is not None and run["durationSeconds"] >= 0
    assert run["startedAt"] <= run["completedAt"]
    assert run["backupId"]
    assert run["error"] is None
    assert run["progress"] is None
    assert (dest / config["slug"] / run["backupId"] / "backup.json").is_file()


def test_a_running_backup_shows_progress_and_stops_within_seconds_when_cancelled(
    api: Api, worker: Any, big_source: Path, dest: Path
) -> None:
    # 200 MiB at 10 MiB/s would take 20 s: long enough to watch it and cancel it.
    config = api.create_config(
        config_doc([big_source], local_destination(dest), compression=False, bandwidth=10240)
    )
    run_id = api.execute(config["id"])["id"]

    running = api.wait_for_run(
        run_id,
        ("running",),
        timeout=20,
        until=lambda r: bool((r["progress"] or {}).get("bytesDone")),
    )
    progress = running["progress"]
    assert {"filesDone", "bytesDone", "filesTotal", "bytesTotal", "phase"} <= set(progress)
    assert progress["bytesDone"] > 0
    assert running["startedAt"] is not None
    assert api.post("/api/backups/execute", json={"configId": config["id"]}).status_code == 409

    asked = time.monotonic()
    response = api.post(f"/api/backups/logs/{run_id}/cancel")
    assert response.status_code == 202
    assert response.json()["cancelRequested"] is True

    final = api.wait_for_run(run_id, timeout=10)
    took = time.monotonic() - asked
    assert final["status"] == "cancelled", final
    assert took < 5, f"cancelling took {took:.1f}s"
    assert final["backupId"] is None
    assert final["progress"] is None
    assert final["completedAt"] is not None
    # No marker, no lock, no half-written file: only whole packs and their checkpoint
    # indexes, which the next run resumes from.
    leftovers = [p.relative_to(dest) for p in dest.rglob("*") if p.is_file()]
    assert all(p.parts[1] in ("packs", "index") for p in leftovers), leftovers
    assert not [p for p in leftovers if ".partial" in p.name], leftovers
    assert api.get(f"/api/backups/configs/{config['id']}/backups").json() == []
    assert api.get("/api/alerts").json() == []


def test_ids_holding_a_nul_character_are_unknown_rather_than_a_server_error(
    api: Api, source: Path, dest: Path
) -> None:
    # PostgreSQL refuses NUL in any text it is asked to compare: these must be 404s, not 500s.
    api.create_config(config_doc([source], local_destination(dest)))
    nul = "a%00b"

    assert api.post("/api/backups/execute", json={"configId": "a\u0000"}).status_code == 404
    assert api.get(f"/api/backups/configs/{nul}").status_code == 404
    assert api.patch(f"/api/backups/configs/{nul}", json={}).status_code == 404
    assert api.delete(f"/api/backups/configs/{nul}").status_code == 404
    assert api.get(f"/api/backups/logs/{nul}").status_code == 404
    assert api.post(f"/api/backups/logs/{nul}/cancel").status_code == 404
    assert api.post(f"/api/alerts/{nul}/acknowledge").status_code == 404
    assert api.get("/api/backups/logs", params={"configId": "a\u0000"}).json() == []
    login = api.post("/api/auth/login", json={"username": "admin\u0000", "password": "x"})
    assert login.status_code == 401
