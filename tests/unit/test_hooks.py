"""Running one hook command: no shell, bounded output, secrets kept out, nothing hangs."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from backapp.domain.config import HookCommand
from backapp.services.hooks import hook_environment, run_command, secrets_of
from backapp.settings import Settings


def test_a_command_runs_without_a_shell() -> None:
    result = run_command(
        "before", HookCommand(argv=["echo", "$HOME", "*", "|", "x"]), env=os.environ, timeout=10
    )
    assert (result.exit_code, result.stdout) == (0, "$HOME * | x\n")


def test_a_missing_program_and_a_signal_are_failures_that_say_why() -> None:
    missing = run_command("before", HookCommand(argv=["no-such-program-x"]), env={}, timeout=5)
    assert missing.error == "program not found: 'no-such-program-x' (not in PATH, or no such file)"
    killed = run_command(
        "after", HookCommand(argv=["sh", "-c", "kill -9 $$"]), env=os.environ, timeout=5
    )
    assert killed.error == "killed by signal 9"


def test_a_child_left_running_does_not_hold_the_run(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    started = time.monotonic()
    result = run_command(
        "before",
        HookCommand(argv=["sh", "-c", f"sleep 30 & echo $! > {pid_file}; echo done"]),
        env=os.environ,
        timeout=20,
    )
    os.kill(int(pid_file.read_text()), signal.SIGTERM)  # it holds the pipe open
    assert result.ok and result.stdout == "done\n"
    assert time.monotonic() - started < 5


def test_the_environment_has_no_backapp_secret_and_the_output_masks_them() -> None:
    parent = {
        "PATH": "/usr/bin",
        "PGHOST": "db",
        "BACKUP_ENCRYPTION_KEY": "k",
        "BACKUP_ENCRYPTION_KEY_FILE": "/run/secrets/key",
        "DATABASE_URL": "postgresql://u:p@h/d",
        "AWS_SECRET_ACCESS_KEY": "s",
        "AWS_ACCESS_KEY_ID": "id",
        "BACKAPP_ADMIN_PASSWORD": "pw",
        "BACKAPP_METRICS_TOKEN": "t",
    }
    env = hook_environment(parent, {"BACKAPP_RUN_ID": "r"})
    assert env == {
        "PATH": "/usr/bin",
        "PGHOST": "db",
        "AWS_ACCESS_KEY_ID": "id",
        "BACKAPP_RUN_ID": "r",
    }
    settings = Settings(
        _env_file=None,
        database_url="postgresql+psycopg://backapp:db-password-9@h/backapp",
        backup_encryption_key="a" * 44,
        admin_password="admin-password-1",
    )
    found = secrets_of(settings, {"AWS_SECRET_ACCESS_KEY": "aws-secret-1"})
    assert set(found) == {"a" * 44, "admin-password-1", "db-password-9", "aws-secret-1"}
