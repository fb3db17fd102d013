"""A request is one transaction; reads take no write lock, writes take it up front."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, text

from backapp.db import ApiToken
from tests.api.conftest import Api, config_doc, local_destination

READS = ["/api/backups/configs", "/api/backups/logs", "/api/backups/stats", "/api/auth/me"]


@contextmanager
def transactions(api: Api) -> Iterator[list[str]]:
    """Given the API, yield the list that gathers how each transaction begins while inside:
    "BEGIN" (a reader), "BEGIN IMMEDIATE" (a SQLite writer) or "begin" (PostgreSQL)."""
    engine = api.ctx.db.engine
    begun: list[str] = []
    sqlite = engine.dialect.name == "sqlite"

    def on_begin(conn: Any) -> None:
        if not sqlite:
            begun.append("begin")

    def on_statement(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.startswith("BEGIN"):
            begun.append(statement)

    event.listen(engine, "begin", on_begin)
    event.listen(engine, "before_cursor_execute", on_statement)
    try:
        yield begun
    finally:
        event.remove(engine, "begin", on_begin)
        event.remove(engine, "before_cursor_execute", on_statement)


def test_a_read_only_request_is_one_transaction_without_the_write_lock(
    api: Api, tmp_path: Path
) -> None:
    api.create_config(config_doc([tmp_path], local_destination(tmp_path / "dest")))
    assert api.get("/api/backups/configs").status_code == 200  # the token's use is recorded
    for url in READS:
        with transactions(api) as begun:
            assert api.get(url).status_code == 200
        assert begun in (["BEGIN"], ["begin"]), f"GET {url}: {begun}"


def test_a_token_use_is_recorded_by_a_short_write_once_in_a_while(api: Api) -> None:
    with transactions(api) as first:
        assert api.get("/api/backups/configs").status_code == 200
    with transactions(api) as second:
        assert api.get("/api/backups/configs").status_code == 200
    with api.ctx.db.session() as session:
        used = [row.last_used_at for row in session.query(ApiToken)]
    assert used and all(used)
    assert len(first) == 2  # the request's reader, and the write of the token's use
    if api.ctx.db.engine.dialect.name == "sqlite":
        assert first == ["BEGIN", "BEGIN IMMEDIATE"]
    assert len(second) == 1


def test_a_write_request_takes_the_write_lock_when_its_route_begins(
    api: Api, tmp_path: Path
) -> None:
    assert api.get("/api/auth/me").status_code == 200
    with transactions(api) as begun:
        api.create_config(config_doc([tmp_path], local_destination(tmp_path / "dest")))
    if api.ctx.db.engine.dialect.name == "sqlite":
        # authentication reads without the lock; the route reads then writes, as a writer
        assert begun == ["BEGIN", "BEGIN IMMEDIATE"]
    else:
        assert len(begun) == 2


@contextmanager
def write_lock_held(api: Api) -> Iterator[None]:
    """Given the API, hold a write transaction open on another connection while inside:
    SQLite's write lock, or on PostgreSQL an uncommitted update of the rows GETs read."""
    with api.ctx.db.engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql("COMMIT")  # SQLAlchemy began (and wrote nothing): now lock
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        conn.execute(text("UPDATE configs SET name = name"))
        conn.execute(text("UPDATE api_tokens SET name = name"))
        try:
            yield
        finally:
            conn.rollback()


def test_a_get_answers_promptly_while_another_connection_holds_the_write_lock(
    api: Api, tmp_path: Path
) -> None:
    api.create_config(config_doc([tmp_path], local_destination(tmp_path / "dest")))
    assert api.get("/api/auth/me").status_code == 200  # the token's use is recorded
    with write_lock_held(api):
        for url in READS:
            started = time.monotonic()
            response = api.get(url)
            took = time.monotonic() - started
            assert response.status_code == 200, response.text
            assert took < 2.0, f"GET {url} took {took:.1f} s behind the write lock"


def test_reads_and_writes_side_by_side_never_fail_with_database_is_locked(
    api: Api, tmp_path: Path
) -> None:
    config = api.create_config(config_doc([tmp_path], local_destination(tmp_path / "dest")))
    assert api.get("/api/auth/me").status_code == 200
    stop = threading.Event()
    failures: list[str] = []

    def read() -> None:
        client = Api(api.app, api.ctx, api.token)
        while not stop.is_set():
            for url in READS:
                response = client.get(url)
                if response.status_code != 200:
                    failures.append(f"GET {url}: {response.status_code} {response.text}")

    def write() -> None:
        # A read-then-write route (the config is read, then changed), as a backup's progress
        # and the scheduler write next to the API all day.
        client = Api(api.app, api.ctx, api.token)
        n = 0
        while not stop.is_set():
            n += 1
            response = client.patch(f"/api/backups/configs/{config['id']}", json={"name": f"c{n}"})
            if response.status_code != 200:
                failures.append(f"write: {response.status_code} {response.text}")

    threads = [threading.Thread(target=read) for _ in range(3)]
    threads += [threading.Thread(target=write) for _ in range(2)]
    for t in threads:
        t.start()
    time.sleep(3)
    stop.set()
    for t in threads:
        t.join(timeout=30)
    assert not failures, failures[:5]


@pytest.fixture(autouse=True)
def _fresh_token_claims(monkeypatch: pytest.MonkeyPatch) -> None:
    # Token uses are claimed per process; each test starts as a new process would.
    from backapp.services import users

    monkeypatch.setattr(users, "_claims", {}, raising=False)


def test_many_more_readers_than_connections_and_threads_never_deadlock(api: Api) -> None:
    # Each GET holds a connection from authentication to its route; with two worker threads
    # and more clients than the pool has connections, requests that waited for a
    # connection inside a thread would starve the ones holding them of threads.
    import http.client

    import anyio.to_thread
    import uvicorn

    from tests.conftest import free_port

    async def two_threads(scope: Any, receive: Any, send: Any) -> None:
        anyio.to_thread.current_default_thread_limiter().total_tokens = 2
        await api.app(scope, receive, send)

    port = free_port()
    config = uvicorn.Config(two_threads, host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    serving = threading.Thread(target=server.run, daemon=True)
    serving.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    failures: list[str] = []
    answered: list[int] = []

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        for url in READS:
            conn.request("GET", url, headers={"Authorization": f"Bearer {api.token}"})
            reply = conn.getresponse()
            reply.read()
            (answered if reply.status == 200 else failures).append(reply.status)
        conn.close()

    clients = [threading.Thread(target=client) for _ in range(48)]
    try:
        for t in clients:
            t.start()
        for t in clients:
            t.join(timeout=90)
        assert not any(t.is_alive() for t in clients), "requests hung"
    finally:
        server.should_exit = True
        serving.join(timeout=30)
    assert not failures and len(answered) == 48 * len(READS)
