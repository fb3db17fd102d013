"""Fixtures of the API tests: the app on a fresh database, callers of each role, a worker."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from backapp.app import create_app
from backapp.scheduler.main import SchedulerService
from backapp.services import users
from backapp.services.context import AppContext

ADMIN_PASSWORD = "admin-password-1"
VIEWER_PASSWORD = "viewer-password-1"
FINISHED = ("completed", "failed", "cancelled", "skipped")


def config_doc(
    sources: list[Path] | list[str], destination: dict[str, Any], **options: Any
) -> dict[str, Any]:
    """Given sources, a destination document and option overrides, return a config document."""
    opts: dict[str, Any] = {"type": "full", "compression": True, "encryption": False}
    opts.update(options)
    return {
        "name": "API Test",
        "enabled": True,
        "sources": [{"path": str(s)} for s in sources],
        "destination": destination,
        "schedule": {"cronExpression": "0 2 * * *", "timezone": "UTC"},
        "options": opts,
    }


def local_destination(path: Path) -> dict[str, Any]:
    """Given a folder, return a local destination document."""
    return {"type": "local", "path": str(path)}


def bearer(token: str) -> dict[str, str]:
    """Given an API token, return the Authorization header carrying it."""
    return {"Authorization": f"Bearer {token}"}


class Api:
    """A TestClient on the app that sends one user's token, with helpers for common steps."""

    def __init__(self, app: FastAPI, ctx: AppContext, token: str) -> None:
        self.app = app
        self.ctx = ctx
        self.token = token
        self.client = TestClient(app, headers=bearer(token))

    def get(self, url: str, **kwargs: Any) -> Any:
        return self.client.get(url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> Any:
        return self.client.post(url, **kwargs)

    def patch(self, url: str, **kwargs: Any) -> Any:
        return self.client.patch(url, **kwargs)

    def delete(self, url: str, **kwargs: Any) -> Any:
        return self.client.delete(url, **kwargs)

    def create_config(self, document: dict[str, Any]) -> dict[str, Any]:
        """Given a config document, create it and return the stored config."""
        response = self.post("/api/backups/configs", json=document)
        assert response.status_code == 201, response.text
        return dict(response.json())

    def execute(self, config_id: str) -> dict[str, Any]:
        """Given a config id, queue a backup and return the queued run."""
        response = self.post("/api/backups/execute", json={"configId": config_id})
        assert response.status_code == 202, response.text
        return dict(response.json())

    def run(self, run_id: str) -> dict[str, Any]:
        """Given a run id, return its log entry."""
        response = self.get(f"/api/backups/logs/{run_id}")
        assert response.status_code == 200, response.text
        return dict(response.json())

    def wait_for_run(
        self,
        run_id: str,
        statuses: tuple[str, ...] = FINISHED,
        timeout: float = 30,
        until: Callable[[dict[str, Any]], bool] | None = None,
    ) -> dict[str, Any]:
        """Given a run id, poll its log entry until its status is one of ``statuses``."""
        deadline = time.monotonic() + timeout
        while True:
            run = self.run(run_id)
            if run["status"] in statuses and (until is None or until(run)):
                return run
            if time.monotonic() > deadline:
                raise AssertionError(f"run {run_id} did not reach {statuses}: {run}")
            time.sleep(0.05)


def add_user(ctx: AppContext, username: str, password: str, role: str) -> str:
    """Given a new user's name, password and role, create them; return a token of theirs."""
    with ctx.db.session() as session:
        users.create_user(session, username, password, role)
        token, _ = users.create_token(session, username, "tests")
    return token


@pytest.fixture
def ctx(make_ctx: Callable[..., AppContext], database_url: str) -> AppContext:
    """A migrated AppContext on a fresh database (SQLite and PostgreSQL)."""
    return make_ctx(database_url, shutdown_grace=0)


@pytest.fixture
def app(ctx: AppContext) -> FastAPI:
    return create_app(ctx)


@pytest.fixture
def api(app: FastAPI, ctx: AppContext) -> Api:
    """The API as the admin sees it (bearer token)."""
    return Api(app, ctx, add_user(ctx, "admin", ADMIN_PASSWORD, "admin"))


@pytest.fixture
def viewer(app: FastAPI, ctx: AppContext) -> Api:
    """The API as a read-only viewer sees it (bearer token)."""
    return Api(app, ctx, add_user(ctx, "viewer", VIEWER_PASSWORD, "viewer"))


@pytest.fixture
def operator(app: FastAPI, ctx: AppContext) -> Api:
    """The API as an operator sees it: runs, restores and reads backed-up files."""
    return Api(app, ctx, add_user(ctx, "operator", VIEWER_PASSWORD, "operator"))


@pytest.fixture
def anonymous(app: FastAPI) -> TestClient:
    """A client that sends no credentials."""
    return TestClient(app)


@contextmanager
def running_worker(ctx: AppContext) -> Iterator[SchedulerService]:
    """Given a context, run a scheduler + worker in a background thread while inside."""
    service = SchedulerService(ctx, worker_id="api-tests")
    stop = threading.Event()
    thread = threading.Thread(target=service.run, args=(stop,), name="test-scheduler")
    thread.start()
    try:
        yield service
    finally:
        stop.set()
        thread.join(timeout=30)
        service.shutdown()
        assert not thread.is_alive(), "the scheduler thread did not stop"


@pytest.fixture
def worker(ctx: AppContext) -> Iterator[SchedulerService]:
    """A scheduler + worker ticking in a background thread for the test's duration."""
    with running_worker(ctx) as service:
        yield service


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """A small source folder: a few files in two directories."""
    root = tmp_path / "source"
    (root / "docs").mkdir(parents=True)
    (root / "docs" / "readme.txt").write_text("hello backups\n" * 100)
    (root / "docs" / "notes.md").write_text("# notes\n")
    (root / "blob.bin").write_bytes(bytes(range(256)) * 64)
    return root


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    """An empty folder to back up into."""
    path = tmp_path / "dest"
    path.mkdir()
    return path
