"""``/metrics``: Prometheus' text format computed from the database, behind a token."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from sqlalchemy import event

from backapp.app import create_app
from backapp.db import Run, utcnow
from backapp.db.repositories import runs as run_repo
from backapp.db.repositories import workers as worker_repo
from backapp.scheduler.main import SchedulerService
from backapp.services.context import AppContext
from tests.api.conftest import Api, bearer, config_doc, local_destination

METRICS_TOKEN = "scrape-me-0123456789"


def scrape(client: TestClient | Api) -> dict[str, list[Sample]]:
    """Given a client, GET /metrics and return its samples by name (parsed as Prometheus
    parses them)."""
    response = client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=")
    samples: dict[str, list[Sample]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(sample)
    return samples


def value(samples: dict[str, list[Sample]], name: str, **labels: str) -> float:
    """Given samples, a name and labels, return the one sample's value that has them."""
    found = [
        s.value
        for s in samples.get(name, [])
        if all(s.labels.get(k) == v for k, v in labels.items())
    ]
    assert len(found) == 1, (name, labels, samples.get(name))
    return found[0]


def test_metrics_show_runs_durations_bytes_and_the_last_success_of_each_config(
    api: Api, worker: SchedulerService, source: Path, dest: Path, tmp_path: Path
) -> None:
    good = api.create_config(config_doc([source], local_destination(dest)))
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    bad_doc = config_doc([source], local_destination(blocker / "inside"))
    bad = api.create_config({**bad_doc, "name": "Broken"})
    ok_run = api.wait_for_run(api.execute(good["id"])["id"])
    failed_run = api.wait_for_run(api.execute(bad["id"])["id"])
    assert (ok_run["status"], failed_run["status"]) == ("completed", "failed")

    samples = scrape(api)

    ok = {"config": good["slug"], "config_name": "API Test"}
    broken = {"config": bad["slug"], "config_name": "Broken"}
    assert value(samples, "backapp_runs_total", kind="backup", status="completed", **ok) == 1
    assert value(samples, "backapp_runs_total", kind="backup", status="failed", **broken) == 1
    count = value(
        samples, "backapp_run_duration_seconds_count", kind="backup", status="completed", **ok
    )
    assert count == 1
    total = value(
        samples, "backapp_run_duration_seconds_sum", kind="backup", status="completed", **ok
    )
    assert total == pytest.approx(ok_run["durationSeconds"])
    inf = value(
        samples,
        "backapp_run_duration_seconds_bucket",
        kind="backup",
        status="completed",
        le="+Inf",
        **ok,
    )
    assert inf == 1
    assert value(samples, "backapp_backup_read_bytes_total", **ok) == ok_run["totalBytes"] > 0
    assert value(samples, "backapp_backup_stored_bytes_total", **ok) == ok_run["storedBytes"] > 0
    assert value(samples, "backapp_backup_files_total", **ok) == 3
    finished = datetime.fromisoformat(ok_run["completedAt"].replace("Z", "+00:00"))
    last = value(samples, "backapp_last_success_timestamp_seconds", **ok)
    assert abs(last - finished.timestamp()) < 0.01
    assert not [s for s in samples["backapp_last_success_timestamp_seconds"] if s.labels == broken]
    assert value(samples, "backapp_last_backup_failed", **ok) == 0
    assert value(samples, "backapp_last_backup_failed", **broken) == 1
    assert value(samples, "backapp_last_backup_files", **ok) == 3
    assert value(samples, "backapp_config_enabled", **ok) == 1
    assert value(samples, "backapp_schedule_overdue_seconds", **ok) == 0  # next run: 02:00
    assert value(samples, "backapp_queue_depth", kind="backup") == 0
    assert value(samples, "backapp_alerts_open") == 1  # the failure's alert


def test_metrics_show_the_queue_and_the_age_of_each_workers_heartbeat(
    api: Api, ctx: AppContext, source: Path, dest: Path
) -> None:
    config = api.create_config(config_doc([source], local_destination(dest)))
    api.execute(config["id"])  # no worker runs: it stays queued
    beat = utcnow() - timedelta(seconds=42)
    with ctx.db.session() as session:
        run_repo.add(
            session,
            Run(
                config_id=config["id"],
                config_name="API Test",
                kind="verify",
                trigger="manual",
                type="full",
                status="running",
                started_at=beat,
                heartbeat_at=beat,
                worker_id="host-a:123",
            ),
        )

    samples = scrape(api)

    assert value(samples, "backapp_queue_depth", kind="backup") == 1
    assert value(samples, "backapp_runs_running", kind="verify") == 1
    age = value(samples, "backapp_run_heartbeat_age_seconds", worker="host-a:123")
    assert 42 <= age < 42 + 30


def test_metrics_show_every_schedulers_own_heartbeat_idle_or_busy(
    api: Api, ctx: AppContext
) -> None:
    now = utcnow()
    with ctx.db.session() as session:
        for worker_id, host, seen in (("host-a:1", "host-a", 7), ("host-b:2", "host-b", 900)):
            presence = worker_repo.Presence(
                worker_id, host, int(worker_id[-1]), "1.0", now - timedelta(hours=1)
            )
            worker_repo.beat(session, presence, now - timedelta(seconds=seen))

    samples = scrape(api)

    name = "backapp_scheduler_heartbeat_age_seconds"
    assert 7 <= value(samples, name, worker="host-a:1", host="host-a") < 7 + 30
    assert 900 <= value(samples, name, worker="host-b:2", host="host-b") < 900 + 30
    assert "backapp_run_heartbeat_age_seconds" not in samples  # nothing runs


def test_metrics_need_the_metrics_token_or_a_user(
    make_ctx: Callable[..., AppContext], database_url: str, api: Api
) -> None:
    ctx = make_ctx(database_url, metrics_token=METRICS_TOKEN)
    app = create_app(ctx)

    assert TestClient(app).get("/metrics").status_code == 401
    wrong = TestClient(app, headers=bearer("not-the-token"))
    assert wrong.get("/metrics").status_code == 401
    assert "backapp_runs" not in wrong.get("/metrics").text
    scraper = TestClient(app, headers=bearer(METRICS_TOKEN))
    assert "backapp_build_info" in scrape(scraper)
    # Without a metrics token set, a user's API token still reads them (any role).
    assert "backapp_queue_depth" in scrape(api)


def test_a_scrape_of_a_long_history_is_a_few_grouped_queries(
    api: Api, ctx: AppContext, source: Path, dest: Path
) -> None:
    config = api.create_config(config_doc([source], local_destination(dest)))
    start = utcnow() - timedelta(days=30)
    with ctx.db.session() as session:
        for i in range(2000):
            at = start + timedelta(minutes=20 * i)
            session.add(
                Run(
                    config_id=config["id"],
                    config_name="API Test",
                    kind="backup",
                    trigger="scheduled",
                    type="full",
                    status="completed" if i % 10 else "failed",
                    queued_at=at,
                    started_at=at,
                    completed_at=at + timedelta(seconds=i % 100),
                    duration_seconds=float(i % 100),
                    total_bytes=1000,
                    files_processed=2,
                )
            )

    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(str(args[2]))

    event.listen(ctx.db.engine, "before_cursor_execute", count)
    try:
        samples = scrape(api)
    finally:
        event.remove(ctx.db.engine, "before_cursor_execute", count)

    labels = {"config": config["slug"], "config_name": "API Test"}
    assert value(samples, "backapp_runs_total", kind="backup", status="completed", **labels) == 1800
    assert value(samples, "backapp_backup_files_total", **labels) == 4000
    bucket = value(
        samples,
        "backapp_run_duration_seconds_bucket",
        kind="backup",
        status="completed",
        le="60.0",
        **labels,
    )
    assert bucket == 1080  # durations 0..60 of each hundred, less the failed (0, 10, ... 60)
    # Authentication's few, then one grouped query per family of numbers: not one per run.
    assert len(statements) <= 10, statements
