"""Logs: BACKAPP_LOG_FORMAT=json writes one JSON object per line, BACKAPP_LOG_LEVEL picks
the level, and no secret ever reaches a log line, for commands and the scheduler alike."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from backapp.cli.logs import JsonFormatter, mask, secret_values
from backapp.logcontext import ContextFilter, log_context
from backapp.services import configs as config_service
from backapp.services import runs as run_service
from backapp.services.context import AppContext
from tests.cli.conftest import CliRunner, write_config


def json_lines(stderr: str) -> list[dict[str, Any]]:
    """Given a process's stderr, return its log lines (those that are JSON objects)."""
    return [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]


def test_json_logs_of_a_backup_are_one_object_per_line_and_never_show_the_key(
    cli: CliRunner, tmp_path: Path, encryption_key: str
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "file.txt").write_text("hello\n")
    cfg = write_config(
        tmp_path / "cfg.json",
        [src],
        {"type": "local", "path": str(tmp_path / "dest")},
        encryption=True,
    )
    env = {
        "BACKUP_ENCRYPTION_KEY": encryption_key,
        "BACKAPP_LOG_FORMAT": "json",
        "BACKAPP_LOG_LEVEL": "debug",
    }

    run = cli("backup", "run", "-c", str(cfg), env=env)

    assert run.returncode == 0, run.stderr
    lines = json_lines(run.stderr)
    assert lines, run.stderr
    for line in lines:
        assert {"time", "level", "logger", "message"} <= set(line)
        assert line["logger"].startswith("backapp")
    assert any(line["level"] == "DEBUG" for line in lines) or any(
        line["level"] == "INFO" for line in lines
    )
    assert encryption_key not in run.stderr + run.stdout


def test_a_bad_log_setting_is_exit_2_naming_it(cli: CliRunner) -> None:
    bad = cli("backups", "list", env={"BACKAPP_LOG_LEVEL": "chatty"})
    assert bad.returncode == 2
    assert "BACKAPP_LOG_LEVEL" in bad.stderr and "not a log level" in bad.stderr


def test_the_scheduler_logs_json_with_the_run_id_on_the_lines_of_a_run(
    make_ctx: Callable[..., AppContext], tmp_path: Path, encryption_key: str
) -> None:
    url = f"sqlite:///{tmp_path}/backapp.db"
    ctx = make_ctx(url)
    src = tmp_path / "src"
    src.mkdir()
    (src / "file.txt").write_text("hello\n")
    document = json.loads(
        write_config(
            tmp_path / "cfg.json", [src], {"type": "local", "path": str(tmp_path / "dest")}
        ).read_text()
    )
    with ctx.db.session() as session:
        config = config_service.create(session, document)
        run_id = run_service.enqueue(session, config).id
    env = {
        k: v for k, v in os.environ.items() if k not in ("BACKUP_ENCRYPTION_KEY", "DATABASE_URL")
    }
    env.update(
        DATABASE_URL=url,
        BACKUP_ENCRYPTION_KEY=encryption_key,
        BACKAPP_LOG_FORMAT="json",
        BACKAPP_TICK_INTERVAL="0.2",
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "backapp", "scheduler"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with ctx.db.session() as session:
                if run_service.get(session, run_id).status not in ("queued", "running"):
                    break
            time.sleep(0.2)
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=30)
    lines = json_lines(stderr)
    of_the_run = [line for line in lines if line.get("run_id") == run_id]
    assert of_the_run, stderr
    assert all(line["config"] == "CLI Test" and line["worker"] for line in of_the_run)
    assert all(line["level"] in ("INFO", "WARNING", "ERROR") for line in lines)  # INFO default
    assert any("scheduler" in line["message"] and "started" in line["message"] for line in lines)
    assert encryption_key not in stderr


def test_secrets_of_the_environment_and_of_files_are_masked(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("file-secret-value\n")
    env = {
        "BACKUP_ENCRYPTION_KEY": "a2V5LWtleS1rZXk=",
        "BACKAPP_METRICS_TOKEN_FILE": str(token_file),
        "AWS_SECRET_ACCESS_KEY": "aws-secret",
        "BACKAPP_NOTIFY_URLS": "mailto://u:pw@example.com, json://hook.example/abc123",
        "DATABASE_URL": "postgresql://app:db-password@db/app",
        "BACKAPP_LOG_LEVEL": "INFO",  # not a secret
    }
    secrets = secret_values(env)

    text = (
        "key a2V5LWtleS1rZXk= file file-secret-value aws aws-secret db db-password "
        "hook json://hook.example/abc123 level INFO"
    )
    assert mask(text, secrets) == "key *** file *** aws *** db *** hook *** level INFO"


def test_a_json_record_carries_its_context_and_extras_masked() -> None:
    formatter = JsonFormatter(["sekrit"])
    record = logging.LogRecord("backapp.x", logging.WARNING, "f", 1, "told %s", ("sekrit",), None)
    record.config = "photos sekrit"
    with log_context(run_id="r-1", config=None):
        ContextFilter().filter(record)

    doc = json.loads(formatter.format(record))

    assert doc["message"] == "told ***"
    assert doc["run_id"] == "r-1"
    assert doc["config"] == "photos ***"
    assert (doc["level"], doc["logger"]) == ("WARNING", "backapp.x")
    assert doc["time"].endswith("+00:00")
