"""What a CLI command imports: a backup from a config file needs the engine, not the
server's database layer (SQLAlchemy, Alembic), notifications (apprise) or the web app
(FastAPI). Each of those costs memory (tens of MiB) and start-up time in every run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli.conftest import write_config

WEB = {"fastapi", "starlette", "uvicorn", "jinja2"}
DATABASE_AND_NOTIFY = {"sqlalchemy", "alembic", "apprise"}
# The services a --config-file command may load: services.identity gives the file its
# identity (identity_of_file), without the database. Retention, hooks, doctor, the stored
# configs and the server's context are imported only by the commands that use them.
SERVICES_OF_A_FILE = {"backapp.services", "backapp.services.identity"}
SERVER = ("backapp.app", "backapp.api", "backapp.web", "backapp.scheduler")
COMMANDS = ["backup run", "backups list", "restore"]


def _backapp(cwd: Path, *args: str) -> tuple[str, set[str]]:
    """Given a folder and arguments, run ``backapp ARGS`` there; return its stdout and the
    modules it imported (from PYTHONPROFILEIMPORTTIME's report)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("BACKUP_ENCRYPTION_KEY", "AWS_S3_ENDPOINT", "DATABASE_URL")
    }
    env["PYTHONPROFILEIMPORTTIME"] = "1"
    run = subprocess.run(
        [sys.executable, "-m", "backapp", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    imported = {
        line.rsplit("|", 1)[1].strip()
        for line in run.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }
    return run.stdout, imported


def _top(modules: set[str]) -> set[str]:
    return {m.split(".")[0] for m in modules}


@pytest.fixture(scope="module")
def imports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, set[str]]:
    """Back up, list and restore a small tree from a config file (no hooks, no retention);
    return what each command imported."""
    tmp = tmp_path_factory.mktemp("imports")
    (tmp / "src").mkdir()
    (tmp / "src" / "a.txt").write_text("alpha\n")
    cfg = str(
        write_config(tmp / "cfg.json", [tmp / "src"], {"type": "local", "path": str(tmp / "dest")})
    )
    found: dict[str, set[str]] = {}
    for name, args in {
        "backup run": ["backup", "run", "--config-file", cfg, "--json"],
        "backups list": ["backups", "list", "--config-file", cfg, "--json"],
        "restore": ["restore", "--config-file", cfg, "--target", str(tmp / "out"), "--json"],
    }.items():
        stdout, found[name] = _backapp(tmp, *args)
        json.loads(stdout)
    return found


def test_the_import_report_is_read(imports: dict[str, set[str]]) -> None:
    assert {"backapp.cli.main", "backapp.engine.backup"} <= imports["backup run"]
    assert "backapp.engine.restore" in imports["restore"]


@pytest.mark.parametrize("command", COMMANDS)
def test_a_config_file_command_imports_no_web_app_and_no_server_module(
    imports: dict[str, set[str]], command: str
) -> None:
    loaded = imports[command]
    assert _top(loaded) & WEB == set()
    assert {m for m in loaded if m.startswith(SERVER)} == set()
    assert {m for m in loaded if m.startswith("backapp.services")} <= SERVICES_OF_A_FILE


@pytest.mark.parametrize("command", COMMANDS)
def test_a_config_file_command_imports_no_database_layer_or_apprise(
    imports: dict[str, set[str]], command: str
) -> None:
    assert _top(imports[command]) & DATABASE_AND_NOTIFY == set()


def test_the_cli_itself_imports_no_database_web_app_or_notifications(tmp_path: Path) -> None:
    _, loaded = _backapp(tmp_path, "--version")
    assert _top(loaded) & (WEB | DATABASE_AND_NOTIFY) == set()
    assert {m for m in loaded if m.startswith(("backapp.services", "backapp.db", *SERVER))} == set()
