from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from backapp.db import Config, Run
from backapp.services import configs as config_service
from backapp.services.context import AppContext

KEY = "a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2U="


def config_doc(
    source: Path, dest: dict[str, Any] | Path, cron: str, **options: Any
) -> dict[str, Any]:
    """Given a source folder, a destination and a cron expression, return a config document."""
    destination = dest if isinstance(dest, dict) else {"type": "local", "path": str(dest)}
    opts: dict[str, Any] = {"type": "full", "compression": True, "encryption": False}
    opts.update(options)
    return {
        "name": f"Sched {source.name}",
        "enabled": True,
        "sources": [{"path": str(source)}],
        "destination": destination,
        "schedule": {"cronExpression": cron, "timezone": "UTC"},
        "options": opts,
    }


def add_config(ctx: AppContext, document: dict[str, Any]) -> str:
    """Given a config document, store it and return its id."""
    with ctx.db.session() as session:
        return config_service.create(session, document).id


def runs_of(ctx: AppContext, config_id: str) -> list[Run]:
    """Given a config id, return its runs (oldest first), detached from the session."""
    from backapp.db.repositories import runs as run_repo

    with ctx.db.session() as session:
        found = run_repo.list_runs(session, config_id=config_id, limit=1000)
        session.expunge_all()
    return list(reversed(found))


def get_config(ctx: AppContext, config_id: str) -> Config:
    with ctx.db.session() as session:
        config = config_service.get(session, config_id)
        session.expunge_all()
        return config


def wait_for(predicate: Callable[[], Any], timeout: float, message: str) -> Any:
    """Given a condition, poll it until it returns something truthy; fail after timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout}s waiting for: {message}")


class SchedulerProcess:
    """A real `backapp scheduler` subprocess with its log in a file."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.log = log
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "backapp", "scheduler"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=log.parent,
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def terminate(self, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail(f"scheduler did not stop on SIGTERM:\n{self.output()}")

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()


@pytest.fixture
def start_scheduler(tmp_path: Path) -> Iterator[Callable[..., SchedulerProcess]]:
    started: list[SchedulerProcess] = []

    def start(database_url: str, **env: str) -> SchedulerProcess:
        full = {
            **{k: v for k, v in os.environ.items() if not k.startswith("BACKAPP_")},
            "DATABASE_URL": database_url,
            "BACKUP_ENCRYPTION_KEY": KEY,
            "BACKAPP_TICK_INTERVAL": "0.2",
            **env,
        }
        log = tmp_path / f"scheduler-{len(started)}.log"
        proc = SchedulerProcess(full, log)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.proc.poll() is None:
            proc.proc.kill()
            proc.proc.wait()
