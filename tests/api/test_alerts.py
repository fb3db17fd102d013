"""Alerts: raised by failed runs, listed, acknowledged by someone at some time."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.api.conftest import Api, config_doc, local_destination


def failed_run(api: Api, tmp_path: Path, dest: Path, name: str = "Broken") -> dict[str, Any]:
    """Given a worker is running, back up a missing folder and return the failed run."""
    doc = {**config_doc([tmp_path / f"missing-{name}"], local_destination(dest)), "name": name}
    config = api.create_config(doc)
    run = api.wait_for_run(api.execute(config["id"])["id"])
    assert run["status"] == "failed"
    return run


def test_a_failed_run_raises_an_open_alert_naming_its_config_and_run(
    api: Api, worker: Any, tmp_path: Path, dest: Path
) -> None:
    run = failed_run(api, tmp_path, dest)

    alerts = api.get("/api/alerts").json()

    assert len(alerts) == 1
    alert = alerts[0]
    assert alert["kind"] == "config_error"
    assert alert["severity"] == "critical"
    assert alert["configId"] == run["configId"]
    assert alert["configName"] == "Broken"
    assert alert["runId"] == run["id"]
    assert "does not exist" in alert["message"]
    assert alert["acknowledged"] is False
    assert alert["acknowledgedBy"] is None


def test_acknowledging_records_who_and_when_and_closes_the_alert(
    api: Api, viewer: Api, worker: Any, tmp_path: Path, dest: Path
) -> None:
    failed_run(api, tmp_path, dest, "First")
    failed_run(api, tmp_path, dest, "Second")
    first, second = sorted(api.get("/api/alerts").json(), key=lambda a: a["configName"])
    before = datetime.now(UTC)

    assert viewer.post(f"/api/alerts/{first['id']}/acknowledge").status_code == 403
    response = api.post(f"/api/alerts/{first['id']}/acknowledge")

    assert response.status_code == 200, response.text
    acknowledged = response.json()
    assert acknowledged["acknowledged"] is True
    assert acknowledged["acknowledgedBy"] == "admin"
    when = datetime.fromisoformat(acknowledged["acknowledgedAt"])
    assert before - timedelta(seconds=1) <= when <= datetime.now(UTC) + timedelta(seconds=1)
    assert [a["id"] for a in api.get("/api/alerts").json()] == [second["id"]]
    everything = viewer.get("/api/alerts", params={"status": "all"}).json()
    assert {a["id"] for a in everything} == {first["id"], second["id"]}
    assert api.get("/api/backups/stats").json()["openAlerts"] == 1
    again = api.post(f"/api/alerts/{first['id']}/acknowledge")
    assert again.status_code == 409
    assert "admin" in again.json()["error"]


def test_alerts_are_listed_newest_first_within_the_limit(
    api: Api, worker: Any, tmp_path: Path, dest: Path
) -> None:
    runs = [failed_run(api, tmp_path, dest, f"Broken {i}") for i in range(3)]

    alerts = api.get("/api/alerts").json()
    limited = api.get("/api/alerts", params={"limit": 2}).json()

    assert [a["runId"] for a in alerts] == [r["id"] for r in reversed(runs)]
    assert limited == alerts[:2]
    assert api.get("/api/alerts", params={"limit": 0}).status_code == 422
    assert api.get("/api/alerts", params={"status": "closed"}).status_code == 422


def test_acknowledging_an_unknown_alert_is_a_404(api: Api) -> None:
    response = api.post(f"/api/alerts/{uuid.uuid4()}/acknowledge")

    assert response.status_code == 404
    assert "not found" in response.json()["error"]
