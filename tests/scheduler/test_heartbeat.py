"""Every scheduler process has a heartbeat of its own (the `workers` table), idle or busy:
/metrics shows its age, small while it lives, growing after a kill -9; a clean stop
removes it. Real `backapp scheduler` processes, a short heartbeat interval."""

from __future__ import annotations

import socket
import time
from datetime import timedelta

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from backapp.app import create_app
from tests.scheduler.conftest import wait_for

TOKEN = "scrape-me-0123456789"
INTERVAL = 0.5  # BACKAPP_SCHEDULER_HEARTBEAT (5 s by default)
STALE = 3.0  # the test's alert threshold: six intervals (the documented rule: 60 s)
METRIC = "backapp_scheduler_heartbeat_age_seconds"


def ages(client: TestClient) -> dict[tuple[str, str], float]:
    """Given a client, scrape /metrics and return each scheduler's heartbeat age."""
    response = client.get("/metrics")
    assert response.status_code == 200, response.text
    found: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name == METRIC:
                found[(sample.labels["worker"], sample.labels["host"])] = sample.value
    return found


def test_an_idle_schedulers_heartbeat_is_fresh_ages_after_kill_9_and_goes_on_a_clean_stop(
    database_url: str, make_ctx, start_scheduler
) -> None:
    ctx = make_ctx(database_url, metrics_token=TOKEN)
    client = TestClient(create_app(ctx), headers={"Authorization": f"Bearer {TOKEN}"})
    env = {"BACKAPP_SCHEDULER_HEARTBEAT": str(INTERVAL)}
    killed, stopped = start_scheduler(database_url, **env), start_scheduler(database_url, **env)
    host = socket.gethostname()
    killed_key = (f"{host}:{killed.proc.pid}", host)
    stopped_key = (f"{host}:{stopped.proc.pid}", host)
    wait_for(lambda: {killed_key, stopped_key} <= ages(client).keys(), 30, "both schedulers listed")

    # Idle (no config, no run): the heartbeat stays fresh.
    seen = []
    for _ in range(8):
        now = ages(client)
        seen += [now[killed_key], now[stopped_key]]
        time.sleep(0.25)
    assert max(seen) < STALE / 2, (seen, killed.output()[-2000:])

    killed.kill9()
    assert stopped.terminate() == 0
    assert stopped_key not in ages(client), stopped.output()[-2000:]  # a clean stop: gone
    age = wait_for(
        lambda: (a := ages(client).get(killed_key)) is not None and a > STALE and a,
        STALE + 10,
        "the killed scheduler's heartbeat to grow stale",
    )
    later = ages(client)[killed_key]
    assert later >= age  # still listed, still ageing


def test_a_heartbeat_in_a_database_outage_is_logged_and_long_gone_schedulers_are_forgotten(
    database_url: str, make_ctx, monkeypatch, caplog
) -> None:
    from backapp.db import DatabaseError, utcnow
    from backapp.db.repositories import workers as worker_repo
    from backapp.scheduler.main import SchedulerService

    ctx = make_ctx(database_url)
    service = SchedulerService(ctx, worker_id="outage:1")
    real_session = ctx.db.session

    def down(*args: object, **kwargs: object) -> None:
        raise DatabaseError("the database is unavailable")

    monkeypatch.setattr(ctx.db, "session", down)
    service.beat_presence(force=True)  # never raises
    service.beat_presence(force=True)
    assert [r.message for r in caplog.records].count(
        "scheduler heartbeat not recorded: the database is unavailable"
    ) == 1  # said once per outage
    monkeypatch.setattr(ctx.db, "session", real_session)
    gone = utcnow() - timedelta(days=8)  # a scheduler killed long ago: forgotten
    with ctx.db.session() as session:
        worker_repo.beat(session, worker_repo.Presence("old:9", "old", 9, "0.9", gone), gone)
    service.beat_presence(force=True)
    with ctx.db.session() as session:
        assert [w.id for w in worker_repo.list_workers(session)] == ["outage:1"]
    service.shutdown()
