"""The missed-backup alarm (options.maxAgeHours): one alert while no backup is new enough,
none for a fresh or disabled config, resolved by the next completed backup."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from backapp.db import utcnow
from backapp.db.repositories import runs as run_repo
from backapp.scheduler.main import SchedulerService
from backapp.services import alerts, overdue
from backapp.services import configs as config_service
from backapp.services.execution import ActiveRun
from backapp.services.runs import enqueue
from tests.scheduler.conftest import config_doc


def _open(ctx: Any) -> list[Any]:
    with ctx.db.session() as session:
        found = alerts.list_alerts(session, open_only=True)
        session.expunge_all()
    return found


def test_a_config_without_a_recent_backup_raises_one_missed_alert_until_a_backup_completes(
    database_url: str, make_ctx: Any, tmp_path: Path
) -> None:
    ctx = make_ctx(database_url)
    source = tmp_path / "src"
    source.mkdir()
    (source / "a.txt").write_text("a")
    created = utcnow()
    doc = config_doc(source, tmp_path / "dest", "0 0 1 1 *", maxAgeHours=24)
    with ctx.db.session() as session:
        config_id = config_service.create(session, doc, now=created).id
        off = config_service.create(
            session, {**doc, "name": "Off", "enabled": False}, now=created
        ).id

    assert overdue.check_overdue(ctx, created + timedelta(hours=23)) == 0  # not yet
    assert overdue.check_overdue(ctx, created + timedelta(hours=25)) == 1
    assert overdue.check_overdue(ctx, created + timedelta(hours=26)) == 0  # once
    (alert,) = _open(ctx)
    assert alert.kind == "backup_overdue" and alert.config_id == config_id != off
    assert "No backup of 'Sched src' completed in the last 24 h" in alert.message
    assert "none since the config was created" in alert.message

    # A completed backup resolves it; the alarm counts from that backup again.
    with ctx.db.session() as session:
        run_id = enqueue(session, config_service.get(session, config_id), trigger="manual").id
    with ctx.db.session() as session:
        assert run_repo.claim(session, run_id, "test", utcnow())
    assert SchedulerService(ctx).executor.execute(ActiveRun(run_id)) == "completed"
    assert _open(ctx) == []
    with ctx.db.session() as session:
        (resolved,) = alerts.list_alerts(session)
        assert resolved.resolved_by_run_id == run_id
    assert overdue.check_overdue(ctx, utcnow() + timedelta(hours=23)) == 0
    assert overdue.check_overdue(ctx, utcnow() + timedelta(hours=25)) == 1
    (again,) = _open(ctx)
    assert "the newest completed at" in again.message
