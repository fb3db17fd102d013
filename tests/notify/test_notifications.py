"""Alerts reach people: each event is sent once to the targets that existed when it happened,
failures are retried with a pause, then given up; URLs never leak."""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest

from backapp.db import utcnow
from backapp.notify import TransportError, build_transport, check_url, mask_url, split_urls
from backapp.services import alerts, notifications, notify_targets
from backapp.services import configs as config_service
from tests.conftest import free_port
from tests.helpers.sinks import smtp_sink, wait_until, webhook_sink


def _config(ctx: Any, tmp_path: Any, **options: Any) -> str:
    from tests.api.conftest import config_doc, local_destination

    doc = config_doc([tmp_path / "src"], local_destination(tmp_path / "dest"), **options)
    with ctx.db.session() as session:
        return config_service.create(session, {**doc, "name": "Photos"}).id


def test_each_alert_is_sent_once_with_what_where_when_and_a_link(
    database_url: str, make_ctx: Any, tmp_path: Any
) -> None:
    ctx = make_ctx(database_url, base_url="https://backup.example.com/")
    with webhook_sink() as hook:
        since = utcnow()
        with ctx.db.session() as session:
            notify_targets.add_target(session, hook.url, label="ops")
        config_id = _config(ctx, tmp_path)
        with ctx.db.session() as session:
            alerts.raise_alert(
                session,
                "backup_failed",
                "Backup of 'Photos' failed: disk full",
                config_id=config_id,
                config_name="Photos",
                run_id="0b7c6c1e-0000-4000-8000-000000000001",
            )
        assert notifications.dispatch(ctx, since) == 1
        assert notifications.dispatch(ctx, since) == 0
        assert len(hook.received) == 1
        sent = hook.received[0]
    assert sent["title"] == "BackApp: Backup of 'Photos' failed"
    assert sent["type"] == "failure"
    body = sent["message"]
    assert body.startswith("Backup of 'Photos' failed: disk full")
    assert f"backs up to folder {tmp_path / 'dest'}" in body
    assert "Host: " in body and " UTC" in body
    run_page = "https://backup.example.com/backups/logs/0b7c6c1e-0000-4000-8000-000000000001"
    assert f"Run: {run_page}" in body


def test_a_target_is_told_only_of_alerts_raised_after_it_was_added(
    database_url: str, make_ctx: Any
) -> None:
    ctx = make_ctx(database_url)
    with webhook_sink() as hook:
        with ctx.db.session() as session:
            alerts.raise_alert(session, "backup_failed", "old failure")
        with ctx.db.session() as session:
            notify_targets.add_target(session, hook.url)
        with ctx.db.session() as session:
            alerts.raise_alert(session, "backup_failed", "new failure")
        notifications.dispatch(ctx, utcnow())
        assert [r["message"].split("\n")[0] for r in hook.received] == ["new failure"]


def test_the_environment_urls_are_not_told_of_events_from_before_they_were_read(
    database_url: str, make_ctx: Any
) -> None:
    with webhook_sink() as hook:
        ctx = make_ctx(database_url, notify_urls=hook.url)
        with ctx.db.session() as session:
            alerts.raise_alert(session, "backup_failed", "before the start")
        started = utcnow()
        with ctx.db.session() as session:
            alerts.raise_alert(session, "backup_failed", "after the start")
        notifications.dispatch(ctx, started)
        assert [r["message"].split("\n")[0] for r in hook.received] == ["after the start"]


def test_failed_deliveries_are_retried_with_a_pause_then_given_up(
    database_url: str, make_ctx: Any
) -> None:
    ctx = make_ctx(database_url)
    with webhook_sink() as hook:
        since = utcnow()
        with ctx.db.session() as session:
            notify_targets.add_target(session, hook.url)
            alerts.raise_alert(session, "missed_run", "missed")
        hook.fail = True
        now = utcnow()
        assert notifications.dispatch(ctx, since, now) == 0
        assert notifications.dispatch(ctx, since, now) == 0  # not yet: it waits before a retry
        for attempt in range(1, notifications.MAX_ATTEMPTS + 2):
            now += timedelta(seconds=notifications.RETRY_PAUSE * 3**attempt)
            assert notifications.dispatch(ctx, since, now) == 0
        hook.fail = False
        now += timedelta(days=1)
        assert notifications.dispatch(ctx, since, now) == 0  # given up: no flood later
        assert hook.received == []


def test_one_failing_target_does_not_resend_to_the_others_on_retry(
    database_url: str, make_ctx: Any
) -> None:
    ctx = make_ctx(database_url)
    with webhook_sink() as good, webhook_sink() as bad:
        since = utcnow()
        with ctx.db.session() as session:
            notify_targets.add_target(session, good.url)
            notify_targets.add_target(session, bad.url)
            alerts.raise_alert(session, "backup_failed", "once")
        bad.fail = True
        now = utcnow()
        assert notifications.dispatch(ctx, since, now) == 1
        bad.fail = False
        assert notifications.dispatch(ctx, since, now + timedelta(minutes=1)) == 1
        assert len(good.received) == 1
        assert len(bad.received) == 1


def test_an_email_reaches_the_smtp_server(database_url: str, make_ctx: Any) -> None:
    ctx = make_ctx(database_url)
    with smtp_sink() as smtp:
        since = utcnow()
        with ctx.db.session() as session:
            notify_targets.add_target(session, smtp.url)
            alerts.raise_alert(session, "backup_failed", "Backup of 'Photos' failed: boom")
        assert notifications.dispatch(ctx, since) == 1
        wait_until(lambda: smtp.mails, 5, "the mail")
        (text,) = smtp.texts()
    assert "backup failed" in text.splitlines()[0]
    assert "Backup of 'Photos' failed: boom" in text


def test_urls_are_masked_and_invalid_ones_refused_without_echoing_them() -> None:
    assert split_urls("  ") == []
    with pytest.raises(TransportError) as caught:
        build_transport("notascheme://user:hunter2@example")
    assert caught.value.permanent
    assert "hunter2" not in str(caught.value)
    with pytest.raises(TransportError) as caught:
        check_url("notascheme://user:hunter2@example")
    assert "hunter2" not in str(caught.value)
    masked = mask_url("mailto://bob:hunter2@mail.example.com?from=a@example.com&to=b@example.com")
    assert "hunter2" not in masked and masked.startswith("mailto://bob:****@mail.example.com")
    assert "s3cr3t" not in mask_url("json://127.0.0.1:8080/hook?token=s3cr3t")
    assert "TokenB" not in mask_url("slack://TokenA/TokenBBBBBBBBBBBBBB/TokenC/#chan")
    assert mask_url("bogus") == "(not an Apprise URL)"


def test_a_configs_notification_urls_are_stored_apart_and_shown_masked(
    database_url: str, make_ctx: Any, tmp_path: Any
) -> None:
    ctx = make_ctx(database_url)
    url = "json://user:hunter2@127.0.0.1:9/hook"
    config_id = _config(ctx, tmp_path, notify={"urls": [url], "on": ["failure", "success"]})
    with ctx.db.session() as session:
        config = config_service.get(session, config_id)
        stored = config.document["options"]["notify"]
        (target,) = [t for t in notify_targets.list_targets(session, ctx.settings)]
        added = target.added_at
    assert "hunter2" not in json.dumps(config.document)
    assert stored == {"urls": [mask_url(url)], "on": ["failure", "success"]}
    assert target.url == url and target.events == ("failure", "success")
    # Saving the masked form keeps the target (and when it was added); a new URL replaces it.
    with ctx.db.session() as session:
        config_service.update(session, config_id, {"name": "Photos 2"})
    with ctx.db.session() as session:
        (kept,) = notify_targets.list_targets(session, ctx.settings)
    assert (kept.id, kept.url, kept.added_at) == (target.id, url, added)
    with ctx.db.session() as session:
        config_service.update(
            session, config_id, {"options": {"notify": {"urls": ["json://127.0.0.1:9/other"]}}}
        )
    with ctx.db.session() as session:
        (other,) = notify_targets.list_targets(session, ctx.settings)
    assert other.id != target.id and other.url == "json://127.0.0.1:9/other"
    with ctx.db.session() as session:
        config_service.delete(session, config_id)
    with ctx.db.session() as session:
        assert notify_targets.list_targets(session, ctx.settings) == []


class _SlowHook(BaseHTTPRequestHandler):
    received: ClassVar[list[dict[str, Any]]] = []
    release = threading.Event()

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _SlowHook.release.wait(20)  # a webhook that hangs until the test lets it answer
        _SlowHook.received.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_a_hanging_webhook_never_delays_schedules_or_claims(
    database_url: str, make_ctx: Any, tmp_path: Any
) -> None:
    from backapp.app import create_app
    from tests.api.conftest import Api, add_user, config_doc, local_destination, running_worker

    _SlowHook.received = []
    _SlowHook.release = threading.Event()
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), _SlowHook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    hook = f"json://127.0.0.1:{server.server_address[1]}/hook"
    ctx = make_ctx(database_url, notify_urls=hook, shutdown_grace=0)
    api = Api(create_app(ctx), ctx, add_user(ctx, "admin", "admin-password-1", "admin"))
    source = tmp_path / "source"
    source.mkdir()
    (source / "a.txt").write_text("a\n")
    dest = local_destination(tmp_path / "dest")
    broken = api.create_config({**config_doc([tmp_path / "missing"], dest), "name": "Broken"})
    healthy = api.create_config({**config_doc([source], dest), "name": "Healthy"})
    try:
        with running_worker(ctx):
            failed = api.wait_for_run(api.execute(broken["id"])["id"])
            assert failed["status"] == "failed"  # an alert: its notification now hangs
            time.sleep(1.0)  # the sender is inside the webhook call
            started = time.monotonic()
            done = api.wait_for_run(api.execute(healthy["id"])["id"], timeout=30)
            claimed_in = time.monotonic() - started
            assert done["status"] == "completed"
            assert _SlowHook.received == []  # still hanging while the run was claimed and ran
            assert claimed_in < 10, f"the run waited {claimed_in:.1f}s behind a webhook"
            _SlowHook.release.set()
            deadline = time.monotonic() + 15
            while not _SlowHook.received and time.monotonic() < deadline:
                time.sleep(0.1)
        assert len(_SlowHook.received) == 1
        assert "Broken" in json.dumps(_SlowHook.received[0])
    finally:
        _SlowHook.release.set()
        server.shutdown()
