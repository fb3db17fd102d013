"""A real `backapp scheduler` tells people: a failing scheduled backup sends an email (a
config's target) and calls a webhook (BACKAPP_NOTIFY_URLS) within seconds; the next success
sends "recovered" and resolves the alerts; a config with maxAgeHours and no backup raises a
"missed" alert and notification."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from backapp.db import utcnow
from backapp.services import alerts as alert_service
from backapp.services import configs as config_service
from tests.helpers.sinks import smtp_sink, wait_until, webhook_sink
from tests.scheduler.conftest import add_config, config_doc, runs_of

BASE_URL = "https://backup.example.com"


def _alerts(ctx: Any) -> list[Any]:
    with ctx.db.session() as session:
        found = alert_service.list_alerts(session, limit=1000)
        session.expunge_all()
    return found


def test_failures_recoveries_and_missed_backups_reach_email_and_a_webhook(
    database_url: str, make_ctx: Any, start_scheduler: Any, tmp_path: Path
) -> None:
    ctx = make_ctx(database_url)
    source = tmp_path / "photos"  # missing: the backups fail until it exists
    with smtp_sink() as smtp, webhook_sink() as hook:
        broken = config_doc(source, tmp_path / "dest", "* * * * * *")
        broken["name"] = "Photos"
        broken["options"]["notify"] = {"urls": [smtp.url]}
        broken_id = add_config(ctx, broken)
        stale = config_doc(tmp_path / "other", tmp_path / "dest", "0 0 1 1 *", maxAgeHours=1)
        stale["name"] = "Stale"
        stale["options"]["notify"] = {"urls": [smtp.url], "on": ["missed"]}
        with ctx.db.session() as session:  # created two hours ago, never backed up
            stale_id = config_service.create(session, stale, now=utcnow() - timedelta(hours=2)).id
        env = {"BACKAPP_NOTIFY_URLS": hook.url, "BACKAPP_BASE_URL": BASE_URL}
        proc = start_scheduler(database_url, **env)

        first = wait_until(
            lambda: next((r for r in runs_of(ctx, broken_id) if r.status == "failed"), None),
            20,
            "a failed scheduled backup",
        )
        failed_at = time.monotonic()
        wait_until(lambda: any("Photos" in t for t in smtp.texts()), 10, "the failure email")
        wait_until(lambda: any("Photos" in json.dumps(r) for r in hook.received), 10, "the call")
        assert time.monotonic() - failed_at < 10
        mail = next(t for t in smtp.texts() if "Photos" in t and "failed" in t)
        assert "Backup of 'Photos' failed" in mail.splitlines()[0]
        assert f"{source} does not exist" in mail
        assert f"{BASE_URL}/backups/logs/{first.id}" in mail
        assert "\nHost: " in mail and "\nWhen: " in mail  # one fact a line, in e-mail too
        call = next(r for r in hook.received if "Photos" in r["title"])
        assert call["type"] == "failure" and f"{BASE_URL}/backups/logs/" in call["message"]

        # The stale config raised its missed alert at the scheduler's first look.
        wait_until(lambda: any("Stale" in t for t in smtp.texts()), 10, "the missed email")
        missed = next(t for t in smtp.texts() if "Stale" in t)
        assert "'Stale' missed a backup" in missed.splitlines()[0]
        assert "No backup of 'Stale' completed in the last 1 h" in missed
        assert any("Stale" in r["title"] and r["type"] == "warning" for r in hook.received)

        # The folder appears: the next scheduled backup completes and says "recovered".
        source.mkdir()
        (source / "a.jpg").write_bytes(b"jpeg" * 100)
        done = wait_until(
            lambda: next((r for r in runs_of(ctx, broken_id) if r.status == "completed"), None),
            20,
            "a completed scheduled backup",
        )
        wait_until(lambda: any("recovered" in t for t in smtp.texts()), 10, "the recovered email")
        wait_until(lambda: any("recovered" in r["title"] for r in hook.received), 10, "the call")
        assert proc.terminate() == 0

    recovered = next(t for t in smtp.texts() if "recovered" in t)
    assert "Backup of 'Photos' recovered" in recovered.splitlines()[0]
    assert f"{BASE_URL}/backups/logs/{done.id}" in recovered
    assert f"\nBackup: {done.backup_id} (full), 1 files, 400 B read" in recovered
    photo_alerts = [a for a in _alerts(ctx) if a.config_id == broken_id]
    failed_runs = [r for r in runs_of(ctx, broken_id) if r.status == "failed"]
    # One alert and one failure message per failed run; every one resolved by the success.
    assert len(photo_alerts) == len(failed_runs) >= 1
    assert all(a.resolved_by_run_id == done.id and a.resolved_at for a in photo_alerts)
    failure_mails = [t for t in smtp.texts() if "Backup of 'Photos' failed" in t.splitlines()[0]]
    assert 1 <= len(failure_mails) <= len(failed_runs)
    assert len({t for t in failure_mails}) == len(failure_mails)  # never the same one twice
    (stale_alert,) = [a for a in _alerts(ctx) if a.config_id == stale_id]
    assert stale_alert.kind == "backup_overdue" and stale_alert.resolved_at is None
    # The secret of the SMTP URL appears nowhere: not in the stored document, nor the log.
    assert "s3cret-pw" not in proc.output()
    with ctx.db.session() as session:
        document = config_service.get(session, broken_id).document
    assert "s3cret-pw" not in json.dumps(document)
    assert len([t for t in smtp.texts() if "Stale" in t]) == 1  # missed: once
