"""Hooks (options.hooks): argv commands around a backup, their output in the run's log."""

from __future__ import annotations

import http.server
import json
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

import pytest

from backapp.services.context import AppContext
from tests.api.conftest import Api, config_doc, local_destination, running_worker

SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def _problems(response: Any) -> dict[str, str]:
    return {p["field"]: p["message"] for p in response.json()["problems"]}


def _with_hooks(source: Path, dest: Path, hooks: dict[str, Any]) -> dict[str, Any]:
    return config_doc([source], local_destination(dest), hooks=hooks)


@SQLITE_ONLY
def test_hook_commands_are_checked_and_each_problem_names_its_field(
    api: Api, source: Path, dest: Path
) -> None:
    hooks = {
        "before": [["pg_dump", 3], "pg_dump -f /srv/db.sql app", []],
        "after": [{"argv": [""], "optinal": True}],
        "onError": [["true"]] * 11,
        "timeoutSeconds": 0,
    }
    response = api.post("/api/backups/configs", json=_with_hooks(source, dest, hooks))
    assert response.status_code == 422, response.text
    problems = _problems(response)
    assert problems["options.hooks.before[0][1]"] == "Input should be a valid string"
    assert "must be an argv list such as" in problems["options.hooks.before[1]"]
    assert "must name a program" in problems["options.hooks.before[2]"]
    assert "must not be blank" in problems["options.hooks.after[0].argv"]
    assert "options.hooks.after[0].optinal" in problems
    assert "at most 10" in problems["options.hooks.onError"]
    assert "greater than or equal to 1" in problems["options.hooks.timeoutSeconds"]

    created = api.create_config(_with_hooks(source, dest, {"before": [["true"]]}))
    response = api.patch(
        f"/api/backups/configs/{created['id']}",
        json={"options": {"hooks": {"after": [{"argv": ["true"], "timeoutSeconds": -1}]}}},
    )
    assert response.status_code == 422, response.text
    assert "options.hooks.after[0].timeoutSeconds" in _problems(response)


@SQLITE_ONLY
def test_only_an_admin_sets_hooks(api: Api, operator: Api, source: Path, dest: Path) -> None:
    document = _with_hooks(source, dest, {"before": [["true"]]})
    assert operator.post("/api/backups/configs", json=document).status_code == 403
    created = api.create_config(config_doc([source], local_destination(dest)))
    url = f"/api/backups/configs/{created['id']}"
    patch = {"options": {"hooks": {"before": [["touch", "/tmp/owned"]]}}}
    assert operator.patch(url, json=patch).status_code == 403
    assert "hooks" not in api.get(url).json()["options"]
    assert api.patch(url, json=patch).status_code == 200
    assert api.get(url).json()["options"]["hooks"]["before"] == [["touch", "/tmp/owned"]]


def test_a_failing_before_hook_fails_the_run_with_its_output_and_runs_on_error(
    api: Api, worker: Any, source: Path, dest: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "on-error.txt"
    hooks = {
        "before": [
            {"argv": ["sh", "-c", "echo optional-said; exit 7"], "optional": True},
            ["sh", "-c", "echo dumping app; echo 'pg_dump: error: connection refused' >&2; exit 2"],
            ["touch", str(tmp_path / "never")],
        ],
        "onError": [["sh", "-c", f'echo "$BACKAPP_STATUS: $BACKAPP_ERROR" > {marker}']],
    }
    created = api.create_config(_with_hooks(source, dest, hooks))
    run = api.wait_for_run(api.execute(created["id"])["id"])

    assert run["status"] == "failed"
    assert run["error"].startswith("before hook 2 (sh) failed")
    assert "dumping app" not in run["error"]  # its arguments stay out of errors and alerts
    assert "failed (exit status 2):\npg_dump: error: connection refused" in run["error"]
    log = run["details"]["hooks"]
    assert [(h["phase"], h["exitCode"], h["ok"]) for h in log] == [
        ("before", 7, False),
        ("before", 2, False),
        ("onError", 0, True),
    ]
    assert log[1]["stdout"] == "dumping app\n"
    assert log[1]["stderr"] == "pg_dump: error: connection refused\n"
    assert run["details"]["warnings"] == [
        "before hook 1 (sh) failed (exit status 7), optional: the run went on"
    ]
    assert not (tmp_path / "never").exists()  # the commands after a failed one do not run
    assert marker.read_text().startswith("failed: before hook 2 (sh) failed")
    assert not list(dest.rglob("backup.json"))  # nothing was backed up
    alerts = api.get("/api/alerts").json()
    assert any("pg_dump: error: connection refused" in a["message"] for a in alerts)


@SQLITE_ONLY
def test_hooks_get_the_run_in_their_environment_and_none_of_backapps_secrets(
    api: Api, worker: Any, source: Path, dest: Path, tmp_path: Path, monkeypatch: Any
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-secret-value-123")
    monkeypatch.setenv("HC_PING_URL", "https://hc.example/ping/abc")  # the worker's own
    dump = 'import json, os; print(json.dumps(dict(os.environ))); print("aws-secret-value-123")'
    hooks = {
        "before": [["python3", "-c", dump]],
        "after": [["python3", "-c", dump], ["sh", "-c", "exit 5"]],
    }
    created = api.create_config(_with_hooks(source, dest, hooks))
    run = api.wait_for_run(api.execute(created["id"])["id"])

    assert run["status"] == "completed", run
    before, after, failed = run["details"]["hooks"]
    env = json.loads(before["stdout"].splitlines()[0])
    assert env["BACKAPP_HOOK"] == "before"
    assert env["BACKAPP_CONFIG_NAME"] == "API Test"
    assert env["BACKAPP_CONFIG_ID"] == created["id"]
    assert env["BACKAPP_RUN_ID"] == run["id"]
    assert env["BACKAPP_STATUS"] == "running"
    assert env["BACKAPP_BACKUP_ID"] == run["backupId"]  # known before the backup starts
    assert env["BACKAPP_TRIGGER"] == "manual"
    assert env["HC_PING_URL"] == "https://hc.example/ping/abc"
    for secret in ("BACKUP_ENCRYPTION_KEY", "DATABASE_URL", "AWS_SECRET_ACCESS_KEY"):
        assert secret not in env
    assert before["stdout"].splitlines()[1] == "[secret]"  # printed anyway: masked
    env = json.loads(after["stdout"].splitlines()[0])
    assert (env["BACKAPP_HOOK"], env["BACKAPP_STATUS"]) == ("after", "completed")
    assert env["BACKAPP_BACKUP_ID"] == run["backupId"]
    assert int(env["BACKAPP_FILES_PROCESSED"]) == run["filesProcessed"]
    assert (failed["exitCode"], failed["ok"]) == (5, False)
    assert run["details"]["warnings"] == ["after hook 2 (sh) failed (exit status 5)"]


@SQLITE_ONLY
def test_a_hook_is_stopped_at_its_timeout_and_its_output_is_bounded(
    api: Api, worker: Any, source: Path, dest: Path
) -> None:
    hooks = {
        "before": [
            {"argv": ["python3", "-c", "print('x' * 100000 + 'END')"], "optional": True},
            ["sh", "-c", "echo started; sleep 60"],
        ],
        "timeoutSeconds": 1,
    }
    created = api.create_config(_with_hooks(source, dest, hooks))
    run = api.wait_for_run(api.execute(created["id"])["id"])

    assert run["status"] == "failed"
    loud, slow = run["details"]["hooks"]
    assert loud["ok"] and loud["truncated"] and loud["stdout"].endswith("xEND\n")
    assert len(loud["stdout"]) == 4096
    assert slow["error"] == "timed out after 1 s, stopped"
    assert slow["durationSeconds"] < 10
    assert "failed (timed out after 1 s, stopped):\nstarted" in run["error"]


@SQLITE_ONLY
def test_hooks_off_on_the_server_runs_none_and_the_run_says_so(
    make_ctx: Callable[..., AppContext], database_url: str, source: Path, dest: Path, tmp_path: Path
) -> None:
    from backapp.app import create_app
    from tests.api.conftest import ADMIN_PASSWORD, add_user

    ctx = make_ctx(database_url, shutdown_grace=0, hooks=False)
    api = Api(create_app(ctx), ctx, add_user(ctx, "admin", ADMIN_PASSWORD, "admin"))
    hooks = {"before": [["touch", str(tmp_path / "ran")]], "after": [["false"]]}
    created = api.create_config(_with_hooks(source, dest, hooks))
    with running_worker(ctx):
        run = api.wait_for_run(api.execute(created["id"])["id"])
    assert run["status"] == "completed"
    assert not (tmp_path / "ran").exists()
    assert run["details"]["warnings"] == [
        "hooks are off on this server (BACKAPP_HOOKS=off): not run (1 before, 1 after, 0 onError)"
    ]
    assert "hooks" not in run["details"]


@SQLITE_ONLY
def test_a_cancelled_run_stops_its_before_hook_and_tells_on_error(
    api: Api, worker: Any, source: Path, dest: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "told.txt"
    hooks = {
        "before": [["sh", "-c", "echo waiting; sleep 60"]],
        "onError": [["sh", "-c", f'echo "$BACKAPP_STATUS" > {marker}']],
    }
    created = api.create_config(_with_hooks(source, dest, hooks))
    run_id = api.execute(created["id"])["id"]
    api.wait_for_run(run_id, ("running",), until=lambda r: "before hook" in str(r["progress"]))
    started = time.monotonic()
    assert api.post(f"/api/backups/logs/{run_id}/cancel").status_code == 202
    run = api.wait_for_run(run_id, timeout=15)
    assert time.monotonic() - started < 10
    assert run["status"] == "cancelled"
    before, on_error = run["details"]["hooks"]
    assert before["error"] == "cancelled with its run, stopped"
    assert before["stdout"] == "waiting\n"
    assert on_error["ok"]
    assert marker.read_text() == "cancelled\n"


class _PingReceiver(http.server.BaseHTTPRequestHandler):
    """A healthchecks.io stand-in: records each ping (method, path, body)."""

    pings: ClassVar[list[tuple[str, str, str]]] = []

    def _record(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        self.pings.append((self.command, self.path, body))
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"OK")

    do_GET = do_POST = _record

    def log_message(self, *args: Any) -> None:
        pass


def _doc_hooks(section: str) -> dict[str, Any]:
    """Given a heading of docs/HOOKS.md, return the first JSON example under it."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "HOOKS.md").read_text()
    after = text.split(f"## {section}\n", 1)[1]
    block = after.split("```json\n", 1)[1].split("```", 1)[0]
    return dict(json.loads(block)["hooks"])


@SQLITE_ONLY
def test_the_documented_healthchecks_pings_report_start_success_and_failure(
    api: Api, worker: Any, source: Path, dest: Path, tmp_path: Path, monkeypatch: Any
) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _PingReceiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _PingReceiver.pings = []
    try:
        monkeypatch.setenv("HC_PING_URL", f"http://127.0.0.1:{server.server_port}/ping/abc")
        hooks = _doc_hooks("A healthchecks.io-style ping")
        created = api.create_config(_with_hooks(source, dest, hooks))
        good = api.wait_for_run(api.execute(created["id"])["id"])
        assert good["status"] == "completed", good
        missing = {"sources": [{"path": str(tmp_path / "gone")}]}
        assert api.patch(f"/api/backups/configs/{created['id']}", json=missing).status_code == 200
        bad = api.wait_for_run(api.execute(created["id"])["id"])
        assert bad["status"] == "failed"
    finally:
        server.shutdown()
    assert [(m, p) for m, p, _ in _PingReceiver.pings] == [
        ("GET", f"/ping/abc/start?rid={good['id']}"),
        ("GET", f"/ping/abc?rid={good['id']}"),
        ("GET", f"/ping/abc/start?rid={bad['id']}"),
        ("POST", f"/ping/abc/fail?rid={bad['id']}"),
    ]
    assert "does not exist" in _PingReceiver.pings[-1][2]  # the error, for the alert email


@SQLITE_ONLY
def test_the_documented_pg_dump_hook_dumps_a_database_that_pg_restore_brings_back(
    api: Api, worker: Any, dest: Path, tmp_path: Path, monkeypatch: Any
) -> None:
    import psycopg

    from tests.conftest import PG_ADMIN_URL

    url = urlsplit(PG_ADMIN_URL)
    for name, value in (("PGHOST", url.hostname), ("PGPORT", url.port), ("PGUSER", url.username)):
        monkeypatch.setenv(name, str(value or ""))  # the worker's environment reaches hooks
    database = url.path.lstrip("/")
    schema = f"hooks_{uuid.uuid4().hex[:12]}"
    dumps = tmp_path / "pg"
    dumps.mkdir()
    documented = _doc_hooks("A PostgreSQL dump before each backup")["before"][0]
    assert documented[:3] == ["pg_dump", "--format=custom", "--file=/var/backups/pg/app.dump"]
    # The documented command, with this test's folder and database, confined to its schema.
    argv = [*documented[:2], f"--file={dumps}/app.dump", f"--schema={schema}", database]
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
        conn.execute(f'CREATE TABLE "{schema}".orders (id int PRIMARY KEY, item text)')
        conn.execute(f"INSERT INTO \"{schema}\".orders VALUES (1, 'hammer'), (2, 'nails')")
    try:
        document = config_doc([dumps], local_destination(dest), encryption=True)
        document["options"]["hooks"] = {"before": [argv]}
        created = api.create_config(document)
        run = api.wait_for_run(api.execute(created["id"])["id"])
        assert run["status"] == "completed", run
        assert run["details"]["hooks"][0]["ok"]
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')  # the database is lost

        target = tmp_path / "restored"
        response = api.post(
            "/api/backups/restore", json={"configId": created["id"], "target": str(target)}
        )
        assert api.wait_for_run(response.json()["id"])["status"] == "completed"
        dump = target / str(dumps).lstrip("/") / "app.dump"
        subprocess.run(["pg_restore", f"--dbname={database}", str(dump)], check=True, timeout=60)
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            rows = conn.execute(f'SELECT id, item FROM "{schema}".orders ORDER BY id').fetchall()
        assert rows == [(1, "hammer"), (2, "nails")]
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@SQLITE_ONLY
def test_a_scheduled_run_runs_the_hooks_too(
    api: Api, worker: Any, source: Path, dest: Path, tmp_path: Path
) -> None:
    seen = tmp_path / "trigger.txt"
    document = _with_hooks(
        source, dest, {"before": [["sh", "-c", f'echo "$BACKAPP_TRIGGER" >> {seen}']]}
    )
    document["schedule"] = {"cronExpression": "* * * * * *", "timezone": "UTC"}  # every second
    created = api.create_config(document)
    deadline = time.monotonic() + 15
    while not api.get("/api/backups/logs", params={"status": "completed"}).json():
        assert time.monotonic() < deadline, "no scheduled run completed"
        time.sleep(0.1)
    url = f"/api/backups/configs/{created['id']}"
    assert api.patch(url, json={"enabled": False}).status_code == 200
    run = api.get("/api/backups/logs", params={"status": "completed"}).json()[-1]
    assert run["trigger"] == "scheduled"
    assert run["details"]["hooks"][0]["ok"]
    assert seen.read_text().splitlines()[0] == "scheduled"
