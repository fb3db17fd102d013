"""Fault proxies on 127.0.0.1: an HTTP/1.1 proxy in front of the S3 server that applies
faults to the requests it matches, and a TCP proxy in front of PostgreSQL that can cut
every connection for a while.

    proxy = HttpFaultProxy(upstream_port).start()
    proxy.add(lambda r: r.method == "PUT" and r.path.endswith("/backup.json"), "reset_after")

Actions: ``reset_before`` (close the client's connection, the server never sees the
request), ``reset_after`` (the server acts, its reply is lost), ``stall`` (hold the request
``seconds``, then close), ``status`` (answer ``status`` with an S3 error document, e.g.
503 SlowDown or 501 NotImplemented, without forwarding; a HEAD gets the head alone),
``cut_body`` (forward, then send the reply's head and half its body — ``fraction`` of it
if given — and close), ``short_body`` (the reply cut in half with a Content-Length that
says so: only a checksum can tell).

``seen`` lists every request as ``"METHOD target"``; ``count(match)`` counts those a
predicate matches, ``Rule.hits`` those a rule answered.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from tests.conftest import free_port


@dataclass
class Request:
    method: str
    target: str
    headers: dict[str, str]
    head: bytes
    body: bytes

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    @property
    def query(self) -> str:
        return self.target.split("?", 1)[1] if "?" in self.target else ""


@dataclass
class Rule:
    match: Callable[[Request], bool]
    action: str
    times: int | None = None  # None: every match
    seconds: float = 0.0
    status: int = 503
    code: str = "SlowDown"
    fraction: float = 0.5  # of the reply body that cut_body and short_body let through
    hits: int = 0


class _Stream:
    def __init__(self, sock: socket.socket, on_data: Callable[[int], None] | None = None) -> None:
        self.sock = sock
        self.buffer = b""
        self.on_data = on_data

    def _fill(self) -> bool:
        data = self.sock.recv(65536)
        if not data:
            return False
        if self.on_data is not None:
            self.on_data(len(data))
        self.buffer += data
        return True

    def read_until(self, marker: bytes) -> bytes | None:
        while marker not in self.buffer:
            if not self._fill():
                return None
        head, _, self.buffer = self.buffer.partition(marker)
        return head + marker

    def read_exact(self, n: int) -> bytes:
        while len(self.buffer) < n:
            if not self._fill():
                raise ConnectionError("closed mid-body")
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def read_chunked(self) -> bytes:
        out = b""
        while True:
            line = self.read_until(b"\r\n")
            if line is None:
                raise ConnectionError("closed mid-chunk")
            out += line
            size = int(line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while True:  # trailers, then an empty line
                    trailer = self.read_until(b"\r\n")
                    if trailer is None:
                        raise ConnectionError("closed in trailers")
                    out += trailer
                    if trailer == b"\r\n":
                        return out
            out += self.read_exact(size + 2)


def _headers(head: bytes) -> tuple[str, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    return lines[0], headers


def _read_body(stream: _Stream, headers: dict[str, str], *, no_body: bool = False) -> bytes:
    if no_body:
        return b""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return stream.read_chunked()
    return stream.read_exact(int(headers.get("content-length", "0") or 0))


@dataclass
class HttpFaultProxy:
    upstream_port: int
    upstream_host: str = "127.0.0.1"
    rules: list[Rule] = field(default_factory=list)
    received: list[tuple[float, int]] = field(default_factory=list)  # (when, bytes) from clients
    seen: list[str] = field(default_factory=list)
    _stopping: threading.Event = field(default_factory=threading.Event)

    def start(self) -> HttpFaultProxy:
        self.port = free_port()
        self._server = socket.create_server(("127.0.0.1", self.port))
        self._server.settimeout(0.2)
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def add(self, match: Callable[[Request], bool], action: str, **options: object) -> Rule:
        rule = Rule(match, action, **options)  # type: ignore[arg-type]
        self.rules.append(rule)
        return rule

    def clear(self) -> None:
        self.rules.clear()

    def per_second(self) -> list[int]:
        """Return the bytes received from clients in each second since the first byte."""
        if not self.received:
            return []
        first = self.received[0][0]
        windows: list[int] = []
        for when, n in self.received:
            index = int(when - first)
            windows += [0] * (index + 1 - len(windows))
            windows[index] += n
        return windows

    def stop(self) -> None:
        self._stopping.set()
        self._server.close()

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _rule_for(self, request: Request) -> Rule | None:
        for rule in self.rules:
            if rule.match(request) and (rule.times is None or rule.hits < rule.times):
                rule.hits += 1
                return rule
        return None

    def _serve(self, client: socket.socket) -> None:
        upstream: socket.socket | None = None
        down = _Stream(client, lambda n: self.received.append((time.monotonic(), n)))
        try:
            while True:
                head = down.read_until(b"\r\n\r\n")
                if head is None:
                    return
                start, headers = _headers(head)
                method, target = start.split(" ")[:2]
                if headers.get("expect", "").lower() == "100-continue":
                    client.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")  # the body, please
                    head = b"\r\n".join(
                        line
                        for line in head.split(b"\r\n")
                        if not line.lower().startswith(b"expect:")
                    )
                body = _read_body(down, headers)
                request = Request(method, target, headers, head, body)
                self.seen.append(f"{method} {target}")
                rule = self._rule_for(request)
                action = rule.action if rule else "forward"
                if action == "reset_before":
                    return
                if action == "stall":
                    assert rule is not None
                    self._stopping.wait(rule.seconds)
                    return
                if action == "status":
                    assert rule is not None
                    self._answer(client, rule.status, rule.code, head_only=method == "HEAD")
                    continue
                if upstream is None:
                    upstream = socket.create_connection((self.upstream_host, self.upstream_port))
                    up = _Stream(upstream)
                upstream.sendall(head + body)
                reply_head = up.read_until(b"\r\n\r\n")
                if reply_head is None:
                    return
                status_line, reply_headers = _headers(reply_head)
                status = int(status_line.split(" ")[1])
                no_body = method == "HEAD" or status in (204, 304) or 100 <= status < 200
                reply_body = _read_body(up, reply_headers, no_body=no_body)
                if action == "reset_after":
                    return
                kept = int(len(reply_body) * rule.fraction) if rule else 0
                if action == "cut_body" and len(reply_body) > 1:
                    client.sendall(reply_head + reply_body[:kept])
                    return
                if action == "short_body" and len(reply_body) > 1:
                    half = reply_body[:kept]
                    old = f"content-length: {len(reply_body)}".encode()
                    patched = reply_head.replace(old, f"content-length: {len(half)}".encode())
                    patched = patched.replace(
                        old.replace(b"content-length", b"Content-Length"),
                        f"Content-Length: {len(half)}".encode(),
                    )
                    client.sendall(patched + half)
                    continue
                client.sendall(reply_head + reply_body)
        except (ConnectionError, OSError, ValueError, IndexError):
            return
        finally:
            with contextlib.suppress(OSError):
                client.close()
            if upstream is not None:
                with contextlib.suppress(OSError):
                    upstream.close()

    def count(self, match: Callable[[Request], bool]) -> int:
        """Return how many requests seen so far ``match`` (on method and target only)."""
        return sum(match(_seen_request(line)) for line in self.seen)

    @staticmethod
    def _answer(client: socket.socket, status: int, code: str, *, head_only: bool = False) -> None:
        body = (
            f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
            f"<Message>injected by the fault proxy</Message></Error>"
        ).encode()
        # A reply to HEAD has no body: one sent anyway would be read as the next reply.
        client.sendall(
            f"HTTP/1.1 {status} {code}\r\nContent-Type: application/xml\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode()
            + (b"" if head_only else body)
        )


def _seen_request(line: str) -> Request:
    method, _, target = line.partition(" ")
    return Request(method, target, {}, b"", b"")


@dataclass
class TcpCutProxy:
    """A byte relay to a TCP server (PostgreSQL) that ``cut()`` breaks: every connection
    is closed and new ones are refused until ``restore()``."""

    upstream_port: int
    upstream_host: str = "127.0.0.1"
    _cut: threading.Event = field(default_factory=threading.Event)
    _live: list[socket.socket] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> TcpCutProxy:
        self.port = free_port()
        self._server = socket.create_server(("127.0.0.1", self.port))
        self._server.settimeout(0.2)
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def cut(self) -> None:
        self._cut.set()
        with self._lock:
            for sock in self._live:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    sock.close()
            self._live.clear()

    def restore(self) -> None:
        self._cut.clear()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self._cut.is_set():
                client.close()
                continue
            try:
                upstream = socket.create_connection((self.upstream_host, self.upstream_port))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._live += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (a, b):
                with contextlib.suppress(OSError):
                    sock.close()
