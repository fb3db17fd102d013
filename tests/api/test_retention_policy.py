"""Keep-N retention end to end: a config with keepDaily and keepLast, its preview in the
API, and ``backapp forget`` doing what the preview said (and nothing with --dry-run)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from backapp.domain.config import parse_config
from backapp.engine.backup import run_backup
from backapp.engine.format.layout import is_backup_id
from backapp.storage.local import LocalStorage
from tests.api.conftest import Api, config_doc, local_destination
from tests.helpers.cli import run_backapp
from tests.helpers.hostile import redate_marker

# When each backup completed (UTC); the config counts days in Berlin (UTC+1 in November).
COMPLETED = [
    "2026-11-20T10:00:00+00:00",
    "2026-11-27T10:00:00+00:00",
    "2026-11-28T09:00:00+00:00",
    "2026-11-28T21:00:00+00:00",  # 22:00 in Berlin: the 28th's newest
    "2026-11-28T23:30:00+00:00",  # 00:30 on the 29th in Berlin
]


def _cli(tmp_path: Path, database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return run_backapp(tmp_path, *args, env={"DATABASE_URL": database_url})


def _backups(
    config: dict[str, Any], dest: Path, completed: list[str], format_version: int = 2
) -> list[str]:
    """Given a stored config, make one backup per time and date its marker so; return the ids."""
    document = parse_config(config)
    ids = []
    for when in completed:
        backup_id = run_backup(
            document, LocalStorage(dest), slug=config["slug"], format_version=format_version
        ).backup_id
        redate_marker(
            dest / config["slug"] / backup_id / "backup.json", createdAt=when, completedAt=when
        )
        ids.append(backup_id)
    return ids


def _berlin(document: dict[str, Any]) -> dict[str, Any]:
    return {**document, "schedule": {"cronExpression": "0 2 * * *", "timezone": "Europe/Berlin"}}


def test_the_preview_names_the_rules_that_keep_each_backup(
    api: Api, source: Path, dest: Path
) -> None:
    document = config_doc(
        [source], local_destination(dest), retention={"keepDaily": 2, "keepLast": 1}
    )
    config = api.create_config(_berlin(document))
    assert config["options"]["retention"]["keepDaily"] == 2
    ids = _backups(config, dest, COMPLETED)

    preview = api.get(f"/api/backups/configs/{config['id']}/retention-preview")

    assert preview.status_code == 200, preview.text
    body = preview.json()
    assert body["policy"]["keepDaily"] == 2 and body["policy"]["keepLast"] == 1
    assert body["timezone"] == "Europe/Berlin" and body["retentionDays"] is None
    reasons = {b["backupId"]: b["reason"] for b in body["keep"]}
    assert reasons == {
        ids[4]: "newest backup (always kept); last #1; daily #1 (2026-11-29)",
        ids[3]: "kept by daily #2 (2026-11-28)",
    }
    assert [b["backupId"] for b in body["delete"]] == [ids[2], ids[1], ids[0]]
    assert body["delete"][0]["reason"].startswith("kept by no rule (last 1, daily 2; completed")


def test_a_disagreeing_retention_days_is_refused_with_the_field(
    api: Api, source: Path, dest: Path
) -> None:
    document = config_doc(
        [source], local_destination(dest), retentionDays=30, retention={"keepWithinDays": 7}
    )
    refused = api.post("/api/backups/configs", json=document)
    assert refused.status_code == 422
    assert "retentionDays (30) and retention.keepWithinDays (7) disagree" in refused.text
    bad = config_doc([source], local_destination(dest), retention={"keepDaily": 0})
    refused = api.post("/api/backups/configs", json=bad)
    assert refused.status_code == 422 and "options.retention.keepDaily" in refused.text


def test_forget_dry_run_deletes_nothing_and_forget_deletes_what_the_preview_said(
    api: Api, database_url: str, tmp_path: Path, source: Path, dest: Path
) -> None:
    document = config_doc([source], local_destination(dest), retention={"keepDaily": 2})
    config = api.create_config(_berlin(document))
    ids = _backups(config, dest, COMPLETED)
    preview = api.get(f"/api/backups/configs/{config['id']}/retention-preview").json()
    expected = [b["backupId"] for b in preview["delete"]]
    assert expected == [ids[2], ids[1], ids[0]]

    dry = _cli(tmp_path, database_url, "forget", "--config", config["id"], "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    planned = json.loads(dry.stdout)
    assert planned["dryRun"] is True
    assert [b["backupId"] for b in planned["delete"]] == expected
    assert all((dest / config["slug"] / b / "backup.json").exists() for b in ids)
    text = _cli(tmp_path, database_url, "forget", "--config", config["id"], "-n")
    assert "3 backup(s) would be deleted, 2 kept" in text.stdout
    assert f"keep    {ids[3]}  kept by daily #2 (2026-11-28)" in text.stdout

    done = _cli(tmp_path, database_url, "forget", "--config", config["id"], "--json")

    assert done.returncode == 0, done.stderr
    assert [d["backupId"] for d in json.loads(done.stdout)["deleted"]] == expected
    assert sorted(p.name for p in (dest / config["slug"]).iterdir() if is_backup_id(p.name)) == [
        ids[3],
        ids[4],
    ]


def test_forget_one_backup_is_refused_while_a_kept_incremental_requires_it(
    api: Api, database_url: str, tmp_path: Path, source: Path, dest: Path
) -> None:
    config = api.create_config(config_doc([source], local_destination(dest), type="incremental"))
    full, incremental = _backups(config, dest, COMPLETED[:2], format_version=1)  # a chain
    as_file = tmp_path / "config.json"
    as_file.write_text(json.dumps(api.get(f"/api/backups/configs/{config['id']}").json()))

    refused = _cli(tmp_path, database_url, "forget", "--config", config["id"], "--backup", full)

    assert refused.returncode == 2
    assert f"backup {full} is not forgotten: {incremental} still requires it" in refused.stderr
    assert (dest / config["slug"] / full / "backup.json").exists()
    dry = _cli(tmp_path, database_url, "forget", "-c", str(as_file), "-b", incremental, "-n")
    assert dry.returncode == 0, dry.stderr
    assert (dest / config["slug"] / incremental / "backup.json").exists()
    gone = _cli(tmp_path, database_url, "forget", "-c", str(as_file), "-b", incremental, "--json")
    assert gone.returncode == 0, gone.stderr
    assert json.loads(gone.stdout) == {"dryRun": False, "forgotten": incremental}
    assert not (dest / config["slug"] / incremental).exists()
    then = _cli(tmp_path, database_url, "forget", "--config", config["id"], "--backup", full)
    assert then.returncode == 0, then.stderr
    assert not (dest / config["slug"] / full).exists()


def test_a_scheduled_run_applies_the_keep_rules_after_its_backup(
    api: Api, worker: object, database_url: str, tmp_path: Path, source: Path, dest: Path
) -> None:
    config = api.create_config(
        config_doc([source], local_destination(dest), retention={"keepLast": 2})
    )
    ids = _backups(config, dest, COMPLETED[:3])

    run = api.wait_for_run(api.execute(config["id"])["id"])

    assert run["status"] == "completed", run
    retention = run["details"]["retention"]
    assert [d["backupId"] for d in retention["deleted"]] == [ids[1], ids[0]]
    assert retention["deleted"][0]["reason"].startswith("kept by no rule (last 2; completed")
    left = sorted(p.name for p in (dest / config["slug"]).iterdir() if is_backup_id(p.name))
    assert left == sorted([ids[2], run["backupId"]])
    assert retention["prune"]["backups"] == 2  # and prune kept only what those two name
    # Forgetting the run's backup by hand marks the run, as retention does.
    forgot = _cli(tmp_path, database_url, "forget", "--config", config["id"], "-b", run["backupId"])
    assert forgot.returncode == 0, forgot.stderr
    assert api.run(run["id"])["backupDeleted"] is True
