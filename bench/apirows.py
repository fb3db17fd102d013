"""The API under load: 50 clients against a real `backapp serve` while a backup runs, on
SQLite and on PostgreSQL; figures go to RESULTS.md's "API under load" table and targets."""

from __future__ import annotations

import traceback
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

from apiload import load_with_backup
from apiserver import postgres_schema
from measure import wait_for_quiet
from scenarios import Scenarios

API_CLIENTS = 50
API_P99_MS = 300.0


@contextmanager
def _sqlite(sc: Scenarios, key: str) -> Iterator[str]:
    yield f"sqlite:///{sc.folder(f'api-{key}')}/backapp.db"


def api_rows(sc: Scenarios, seconds: float) -> None:
    """Given the scenarios and a duration, load the API on each database into the facts."""
    databases: list[tuple[str, str, Callable[[], AbstractContextManager[str]]]] = [
        ("sqlite", "API on SQLite", lambda: _sqlite(sc, "sqlite")),
        ("postgresql", "API on PostgreSQL", postgres_schema),
    ]
    found: dict[str, dict[str, Any]] = sc.r.facts.setdefault("api_load", {})
    for key, label, database in databases:
        text = f"{label}, {API_CLIENTS} clients, {seconds:g} s, a backup running"
        row: dict[str, Any] = {"label": text}
        found[key] = row
        try:
            wait_for_quiet()
            with database() as url:
                result = load_with_backup(
                    Path(sc.backapp.exe),
                    url,
                    sc.folder(f"api-{key}") / "server",
                    sc.backapp.env,
                    clients=API_CLIENTS,
                    seconds=seconds,
                )
            row.update(result.to_json())
            print(
                f"[{sc.r.elapsed():6.0f}s] {text}: {result.rps:.0f} requests/s, "
                f"p50 {result.p50:.0f} ms, p99 {result.p99:.0f} ms, {result.errors} errors",
                flush=True,
            )
        except Exception as exc:
            row["error"] = f"{type(exc).__name__}: {exc}"
            traceback.print_exc()
            print(f"[{sc.r.elapsed():6.0f}s] {text}: ERROR {row['error']}", flush=True)
