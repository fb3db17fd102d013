"""Local receivers of notifications: an SMTP server (aiosmtpd) and a JSON webhook."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from tests.conftest import free_port


@dataclass
class SmtpSink:
    """Mails received by a local SMTP server; ``url`` is the Apprise URL that sends there."""

    url: str = ""
    mails: list[Message] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.mails.append(message_from_bytes(envelope.content))
        return "250 OK"

    def texts(self) -> list[str]:
        """Return each mail as its subject and plain-text body."""
        out = []
        for mail in self.mails:
            parts = mail.walk() if mail.is_multipart() else [mail]
            body = "".join(
                str(p.get_payload(decode=True).decode(errors="replace"))  # type: ignore[union-attr]
                for p in parts
                if p.get_content_type() == "text/plain"
            )
            out.append(f"{mail['Subject']}\n{body}")
        return out


@dataclass
class WebhookSink:
    """JSON bodies posted to a local HTTP server; ``url`` is its Apprise json:// URL."""

    url: str = ""
    received: list[dict[str, Any]] = field(default_factory=list)
    fail: bool = False


@contextmanager
def smtp_sink(password: str = "s3cret-pw") -> Iterator[SmtpSink]:
    """Run an SMTP server on 127.0.0.1; yield its sink (the URL carries a password)."""
    sink = SmtpSink()
    port = free_port()

    def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, auth: Any) -> Any:
        ok = auth.login == b"backapp" and auth.password == password.encode()
        return AuthResult(success=ok)

    controller = Controller(
        sink,
        hostname="127.0.0.1",
        port=port,
        authenticator=authenticate,
        auth_require_tls=False,  # a local test server: no certificate
    )
    controller.start()
    sink.url = (
        f"mailto://backapp:{password}@127.0.0.1:{port}"
        "?from=backapp@example.com&to=ops@example.com&mode=insecure"
    )
    try:
        yield sink
    finally:
        controller.stop()


@contextmanager
def webhook_sink() -> Iterator[WebhookSink]:
    """Run a JSON webhook receiver on 127.0.0.1; yield its sink."""
    sink = WebhookSink()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if sink.fail:
                self.send_response(500)
            else:
                sink.received.append(json.loads(body))
                self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    sink.url = f"json://127.0.0.1:{server.server_address[1]}/hook?token=hook-t0ken"
    try:
        yield sink
    finally:
        server.shutdown()


def wait_until(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    """Given a condition, poll it until it holds; raise AssertionError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
