"""A database outage in the middle of a backup (a TCP proxy in front of PostgreSQL cuts
every connection): the backup goes on, its progress writes wait, its result is recorded
when the database returns, and it is not mistaken for a lost worker; meanwhile the API
answers 503, and /healthz says nothing about where the database is."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from backapp.app import create_app
from backapp.engine.format.layout import Repository
from backapp.engine.restore import run_restore
from backapp.services import alerts as alert_service
from backapp.services import configs as config_service
from backapp.services import runs as run_service
from backapp.storage.local import LocalStorage
from tests.helpers.proxy import TcpCutProxy
from tests.helpers.trees import restored_root, snapshot
from tests.scheduler.conftest import add_config, config_doc, get_config, runs_of, wait_for

LEASE = 3  # short, so the outage outlasts twenty leases: every heartbeat looks stale
CUT_SECONDS = 60  # the minute


@pytest.fixture
def pg_proxy() -> Iterator[TcpCutProxy]:
    proxy = TcpCutProxy(5432).start()
    yield proxy
    proxy.restore()


def test_a_database_outage_mid_backup_pauses_its_records_not_the_backup(
    postgres_url: str, make_ctx, start_scheduler, tmp_path: Path, pg_proxy: TcpCutProxy
) -> None:
    ctx = make_ctx(postgres_url, run_lease=LEASE)
    src = tmp_path / "src"
    src.mkdir()
    (src / "data.bin").write_bytes(os.urandom(24 * 1024 * 1024))
    (src / "note.txt").write_text("hello")
    # 24 MiB at 256 KiB/s (~96 s): the backup is still running through the whole outage.
    doc = config_doc(src, tmp_path / "dest", "0 0 1 1 *", compression=False, bandwidth=256)
    config_id = add_config(ctx, doc)
    through_proxy = postgres_url.replace(":5432/", f":{pg_proxy.port}/")
    scheduler = start_scheduler(through_proxy, BACKAPP_RUN_LEASE=str(LEASE))
    with ctx.db.session() as session:
        run_id = run_service.enqueue(session, config_service.get(session, config_id)).id

    def transferred() -> int:
        run = next(r for r in runs_of(ctx, config_id) if r.id == run_id)
        return (
            int((run.progress or {}).get("bytesTransferred", 0)) if run.status == "running" else 0
        )

    wait_for(lambda: transferred() > 1024 * 1024, 30, "the backup to be uploading")
    web = make_ctx(through_proxy, run_lease=LEASE)
    client = TestClient(create_app(web))

    pg_proxy.cut()
    time.sleep(1)
    health = client.get("/healthz")
    assert health.status_code == 503
    assert health.json() == {"status": "degraded", "database": "unavailable"}
    assert str(pg_proxy.port) not in health.text and "127.0.0.1" not in health.text
    api = client.get("/api/backups/configs", headers={"Authorization": "Bearer bk_x"})
    assert api.status_code == 503, api.text
    time.sleep(CUT_SECONDS)
    pg_proxy.restore()

    run = wait_for(
        lambda: next(
            (r for r in runs_of(ctx, config_id) if r.id == run_id and r.status != "running"),
            None,
        ),
        90,
        "the run to end",
    )
    assert run.status == "completed", (run.status, run.error, scheduler.output()[-3000:])
    with ctx.db.session() as session:
        assert [a.kind for a in alert_service.list_alerts(session)] == []
    repo = Repository(LocalStorage(tmp_path / "dest"), "", get_config(ctx, config_id).slug)
    assert repo.ids() == [run.backup_id]
    restored = run_restore(repo, "latest", tmp_path / "restored")
    assert restored.ok
    assert snapshot(restored_root(tmp_path / "restored", src)) == snapshot(src)
    assert client.get("/healthz").status_code == 200
    assert scheduler.terminate() == 0
