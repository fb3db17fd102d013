"""Scheduling decisions with an injected clock: missed runs, skips, DST nights, retention."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

from backapp.db import utcnow
from backapp.db.repositories import runs as run_repo
from backapp.domain.config import RetentionPolicy, slugify
from backapp.domain.retention import StoredBackup, plan_retention
from backapp.engine.backup import run_backup
from backapp.engine.format.layout import Repository
from backapp.services import alerts as alert_service
from backapp.services import configs as config_service
from backapp.services import retention, scheduling
from backapp.services import runs as run_service
from backapp.storage.local import LocalStorage
from tests.helpers.hostile import redate_marker
from tests.scheduler.conftest import add_config, config_doc, get_config, runs_of


def _set_next_run(ctx, config_id: str, when: datetime) -> None:
    with ctx.db.session() as session:
        config_service.get(session, config_id).next_run_at = when


def test_run_missed_within_the_grace_period_runs_once_on_start(
    database_url: str, make_ctx, tmp_path: Path
) -> None:
    ctx = make_ctx(database_url, misfire_grace=3600)
    src = tmp_path / "src"
    src.mkdir()
    config_id = add_config(ctx, config_doc(src, tmp_path / "d", "*/10 * * * *"))
    now = datetime(2026, 11, 26, 12, 0, 5, tzinfo=UTC)
    _set_next_run(ctx, config_id, now - timedelta(minutes=35))  # 11:25: four fires missed
    assert scheduling.fire_due(ctx, now) == 1
    runs = runs_of(ctx, config_id)
    assert [(r.status, r.scheduled_for) for r in runs] == [
        ("queued", datetime(2026, 11, 26, 12, 0, tzinfo=UTC))
    ]
    assert get_config(ctx, config_id).next_run_at == datetime(2026, 11, 26, 12, 10, tzinfo=UTC)
    with ctx.db.session() as session:
        assert alert_service.list_alerts(session) == []
    assert scheduling.fire_due(ctx, now) == 0  # the same moment never fires twice


def test_run_missed_beyond_the_grace_period_raises_an_alert_and_does_not_run(
    database_url: str, make_ctx, tmp_path: Path
) -> None:
    ctx = make_ctx(database_url, misfire_grace=3600)
    src = tmp_path / "src"
    src.mkdir()
    config_id = add_config(ctx, config_doc(src, tmp_path / "d", "0 2 * * *"))
    now = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
    _set_next_run(ctx, config_id, datetime(2026, 11, 26, 2, 0, tzinfo=UTC))
    assert scheduling.fire_due(ctx, now) == 0
    assert runs_of(ctx, config_id) == []
    with ctx.db.session() as session:
        alerts = alert_service.list_alerts(session)
        assert [(a.kind, a.config_id) for a in alerts] == [("missed_run", config_id)]
        assert "was missed" in alerts[0].message
    assert get_config(ctx, config_id).next_run_at == datetime(2026, 11, 27, 2, 0, tzinfo=UTC)


def test_a_fire_while_the_previous_run_is_active_is_recorded_as_skipped(
    database_url: str, make_ctx, tmp_path: Path
) -> None:
    ctx = make_ctx(database_url)
    src = tmp_path / "src"
    src.mkdir()
    config_id = add_config(ctx, config_doc(src, tmp_path / "d", "* * * * *"))
    with ctx.db.session() as session:
        running = run_service.enqueue(session, config_service.get(session, config_id))
        assert run_repo.claim(session, running.id, "test-worker", utcnow())
    now = datetime(2030, 1, 1, 0, 0, 1, tzinfo=UTC)
    _set_next_run(ctx, config_id, datetime(2030, 1, 1, tzinfo=UTC))
    assert scheduling.fire_due(ctx, now) == 0
    skipped = [r for r in runs_of(ctx, config_id) if r.status == "skipped"]
    assert len(skipped) == 1
    assert skipped[0].scheduled_for == datetime(2030, 1, 1, tzinfo=UTC)
    assert "still running" in (skipped[0].error or "")


def test_daylight_saving_nights_fire_a_0230_schedule_once(
    database_url: str, make_ctx, tmp_path: Path
) -> None:
    ctx = make_ctx(database_url)
    src = tmp_path / "src"
    src.mkdir()
    doc = config_doc(src, tmp_path / "d", "30 2 * * *")
    doc["schedule"]["timezone"] = "Europe/Paris"
    config_id = add_config(ctx, doc)
    for night_start in (
        datetime(2026, 3, 28, 22, tzinfo=UTC),
        datetime(2026, 10, 24, 22, tzinfo=UTC),
    ):
        _set_next_run(ctx, config_id, get_config(ctx, config_id).next_run_at or night_start)
        with ctx.db.session() as session:  # recompute from just before the night
            config_service.get(session, config_id).next_run_at = config_service.next_fire(
                config_service.document_of(config_service.get(session, config_id)), night_start
            )
        clock = night_start
        while clock < night_start + timedelta(hours=8):
            scheduling.fire_due(ctx, clock)
            with ctx.db.session() as session:  # let each run finish at once
                for run in run_repo.list_runs(session, config_id=config_id, status="queued"):
                    run.status = "completed"
            clock += timedelta(minutes=1)
    fires = [r.scheduled_for for r in runs_of(ctx, config_id)]
    assert fires == [
        datetime(2026, 3, 29, 1, 0, tzinfo=UTC),  # 02:30 does not exist: at the change (03:00)
        datetime(2026, 10, 25, 0, 30, tzinfo=UTC),  # 02:30 happens twice: the first only
    ]


def test_retention_keeps_the_newest_and_what_kept_incrementals_need() -> None:
    now = datetime(2026, 11, 26, tzinfo=UTC)
    day = timedelta(days=1)
    backups = [  # ids sort by time, as real backup ids do
        StoredBackup("01-full", now - 50 * day),
        StoredBackup("02-full", now - 40 * day),
        StoredBackup("03-incr", now - 39 * day, ("02-full",)),
        StoredBackup("04-full", now - 35 * day),
        StoredBackup("05-incr", now - 5 * day, ("04-full",)),
    ]
    plan = plan_retention(backups, RetentionPolicy(keep_within_days=30), now)
    assert plan.delete == ["03-incr", "02-full", "01-full"]  # an incremental before its base
    assert set(plan.keep) == {"04-full", "05-incr"}
    assert "needed by kept backup 05-incr" in plan.reasons["04-full"]
    within = RetentionPolicy(keep_within_days=30)
    only_old = plan_retention([StoredBackup("x", now - 90 * day)], within, now)
    assert only_old.delete == [] and only_old.keep == ["x"]  # never the newest one
    assert plan_retention(backups, None, now).delete == []


def test_retention_after_a_backup_deletes_expired_backups_from_storage(
    database_url: str, make_ctx, tmp_path: Path
) -> None:
    ctx = make_ctx(database_url)
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(os.urandom(100))
    doc = config_doc(src, tmp_path / "dest", "0 0 1 1 *", retentionDays=7)
    config_id = add_config(ctx, doc)
    config = get_config(ctx, config_id)
    document = config_service.document_of(config)
    storage = LocalStorage(tmp_path / "dest")
    repo = Repository(storage, "", slugify(config.name))
    ids = [run_backup(document, storage, slug=slugify(config.name)).backup_id for _ in range(3)]
    # Age the two oldest backups by rewriting their commit markers.
    for backup_id, age in zip(ids[:2], (30, 10), strict=True):
        marker = tmp_path / "dest" / slugify(config.name) / backup_id / "backup.json"
        redate_marker(marker, completedAt=(utcnow() - timedelta(days=age)).isoformat())
    preview = retention.preview(ctx, document, slugify(config.name))
    assert [d.backup_id for d in preview.delete] == [ids[1], ids[0]]
    assert [k.backup_id for k in preview.keep] == [ids[2]]
    result = retention.apply(ctx, ctx.db.session, config_id, document, slugify(config.name))
    assert [d["backupId"] for d in result["retention"]["deleted"]] == [ids[1], ids[0]]
    assert repo.ids() == [ids[2]]
    assert not (tmp_path / "dest" / slugify(config.name) / ids[0]).exists()


def test_retention_waits_its_turn_while_a_backup_of_the_config_holds_the_lock(
    database_url: str, make_ctx, tmp_path: Path
) -> None:
    from backapp.engine.lock import RepoLock

    ctx = make_ctx(database_url)
    src = tmp_path / "src"
    src.mkdir()
    doc = config_doc(src, tmp_path / "dest", "0 0 1 1 *", retentionDays=7)
    config_id = add_config(ctx, doc)
    config = get_config(ctx, config_id)
    document = config_service.document_of(config)
    storage = LocalStorage(tmp_path / "dest")
    repo = Repository(storage, "", slugify(config.name))
    ids = [run_backup(document, storage, slug=slugify(config.name)).backup_id for _ in range(2)]
    marker = tmp_path / "dest" / slugify(config.name) / ids[0] / "backup.json"
    redate_marker(marker, completedAt=(utcnow() - timedelta(days=30)).isoformat())
    with RepoLock(repo, "backup", "20991231T000000.000Z-000000"):  # a backup is running
        result = retention.apply(ctx, ctx.db.session, config_id, document, slugify(config.name))
    assert "locked by another run" in result["retention"]["error"]
    assert repo.ids() == ids  # nothing deleted under a running backup
    after = retention.apply(ctx, ctx.db.session, config_id, document, slugify(config.name))
    assert [d["backupId"] for d in after["retention"]["deleted"]] == [ids[0]]
