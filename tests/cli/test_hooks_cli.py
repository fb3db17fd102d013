"""`backapp backup run` runs the config's hooks as the worker does, and prints what they did."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli.conftest import CliRunner, write_config


def test_backup_run_runs_the_hooks_of_a_config_file_and_prints_them(
    cli: CliRunner, tmp_path: Path
) -> None:
    source = tmp_path / "src"
    source.mkdir()
    (source / "a.txt").write_text("alpha\n")
    seen = tmp_path / "seen.txt"
    variables = "$BACKAPP_HOOK $BACKAPP_TRIGGER $BACKAPP_CONFIG_NAME $BACKAPP_BACKUP_ID"
    hooks = {
        "before": [
            ["sh", "-c", f'echo "{variables}" >> {seen}; echo dumped > {source}/db.sql'],
            {"argv": ["sh", "-c", "echo flaky >&2; exit 4"], "optional": True},
        ],
        "after": [["sh", "-c", f'echo "{variables} $BACKAPP_STATUS" >> {seen}']],
    }
    dest = {"type": "local", "path": str(tmp_path / "dest")}
    cfg = write_config(tmp_path / "cfg.json", [source], dest, hooks=hooks)

    done = cli("backup", "run", "--config-file", str(cfg), "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["filesProcessed"] == 2  # the dump the before hook wrote is in the backup
    before, after = seen.read_text().splitlines()
    assert before == f"before cli CLI Test {result['backupId']}"
    assert after == f"after cli CLI Test {result['backupId']} completed"
    assert [h["phase"] for h in result["hooks"]] == ["before", "before", "after"]
    assert result["warnings"] == [
        "before hook 2 (sh) failed (exit status 4), optional: the run went on"
    ]
    line = next(x for x in done.stderr.splitlines() if x.startswith("before hook 2 (sh)"))
    assert line.startswith("before hook 2 (sh): exit status 4 (")
    assert line.endswith("s): sh -c 'echo flaky >&2; exit 4'")
    assert "  | flaky" in done.stderr

    hooks["before"] = [["sh", "-c", "echo 'pg_dump: error: no such database' >&2; exit 1"]]
    hooks["onError"] = [["sh", "-c", f'echo "$BACKAPP_STATUS: $BACKAPP_ERROR" >> {seen}']]
    cfg = write_config(tmp_path / "cfg.json", [source], dest, hooks=hooks)
    failed = cli("backup", "run", "--config-file", str(cfg))
    assert failed.returncode == 1
    assert "failed (exit status 1):\npg_dump: error: no such database" in failed.stderr
    assert "\nfailed: before hook 1 (sh) failed" in seen.read_text()  # BACKAPP_ERROR

    off = cli("backup", "run", "--config-file", str(cfg), env={"BACKAPP_HOOKS": "off"})
    assert off.returncode == 0, off.stderr
    assert "hooks are off on this server (BACKAPP_HOOKS=off)" in off.stderr
