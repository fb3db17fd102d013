"""Alerts reach people: each alert is notified once, failures are retried, URLs never leak."""

from __future__ import annotations

import json
import threading
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
