"""Alerts reach people: each alert is notified once, failures are retried, URLs never leak."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest

from backapp.notify import TransportError, build_notifier
from backapp.services import alerts
from tests.conftest import free_port


class _Hook(BaseHTTPRequestHandler):
    received: ClassVar[list[dict[str, Any]]] = []
    fail = False

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if _Hook.fail:
            self.send_response(500)
        else:
            _Hook.received.append(json.loads(body))
            self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[str]:
    _Hook.received = []
    _Hook.fail = False
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), _Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"json://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()


def test_each_alert_is_notified_exactly_once(database_url: str, make_ctx, webhook: str) -> None:
    ctx = make_ctx(database_url)
    notifier = build_notifier(webhook)
    assert notifier is not None
    with ctx.db.session() as session:
        alerts.raise_alert(session, "backup_failed", "Backup 'Photos' failed: disk full")
    assert alerts.dispatch_notifications(ctx, notifier) == 1
    assert alerts.dispatch_notifications(ctx, notifier) == 0
    assert len(_Hook.received) == 1
    assert _Hook.received[0]["message"] == "Backup 'Photos' failed: disk full"
    assert "backup failed" in _Hook.received[0]["title"]
    assert _Hook.received[0]["type"] == "failure"


def test_failed_deliveries_are_retried_then_given_up(
    database_url: str, make_ctx, webhook: str
) -> None:
    ctx = make_ctx(database_url)
    notifier = build_notifier(webhook)
    assert notifier is not None
    with ctx.db.session() as session:
        alert_id = alerts.raise_alert(session, "missed_run", "missed").id
    _Hook.fail = True
    for _ in range(alerts.MAX_NOTIFY_ATTEMPTS + 2):
        assert alerts.dispatch_notifications(ctx, notifier) == 0
    with ctx.db.session() as session:
        alert = alerts.list_alerts(session)[0]
        assert alert.id == alert_id
        assert alert.notify_attempts == alerts.MAX_NOTIFY_ATTEMPTS
        assert alert.notify_error
    _Hook.fail = False
    assert alerts.dispatch_notifications(ctx, notifier) == 0  # given up: no flood later
    assert _Hook.received == []


def test_invalid_notification_urls_are_refused_without_echoing_them() -> None:
    assert build_notifier("  ") is None
    with pytest.raises(TransportError) as caught:
        build_notifier("notascheme://user:hunter2@example")
    assert caught.value.permanent
    assert "hunter2" not in str(caught.value)


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
