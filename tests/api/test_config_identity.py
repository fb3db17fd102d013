"""A config's identity (id, folder, document) is the server's, wherever the config is run:
the CLI with a file exported from the API, the CLI naming a config the server knows, and
the server itself find the same backups, before and after a rename; a config file that
would silently fork a chain is refused with the slug to add."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from backapp.engine.format.layout import is_backup_id
from tests.api.conftest import Api, config_doc, local_destination
from tests.helpers.cli import run_backapp
from tests.helpers.hostile import redate_marker


def _cli(tmp_path: Path, database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return run_backapp(tmp_path, *args, env={"DATABASE_URL": database_url})


def _folders(dest: Path) -> dict[str, int]:
    """Given a local destination, return each config folder's number of backups."""
    return {
        d.name: sum(1 for b in d.iterdir() if (b / "backup.json").exists())
        for d in dest.iterdir()
        if d.is_dir()
    }


def _export(api: Api, config_id: str, path: Path) -> Path:
    path.write_text(json.dumps(api.get(f"/api/backups/configs/{config_id}").json()))
    return path


def test_a_config_exported_from_the_api_runs_from_the_cli_into_the_servers_folder(
    api: Api, database_url: str, tmp_path: Path, source: Path, dest: Path
) -> None:
    first = api.create_config(config_doc([source], local_destination(dest)))
    second = api.create_config(config_doc([source], local_destination(dest)))
    assert (first["slug"], second["slug"]) == ("api-test", "api-test-2")  # the same name
    exported = _export(api, second["id"], tmp_path / "second.json")

    ran = _cli(tmp_path, database_url, "backup", "run", "-c", str(exported), "--json")

    assert ran.returncode == 0, ran.stderr
    assert _folders(dest) == {"api-test-2": 1}  # not the first config's folder
    stored = api.get(f"/api/backups/configs/{second['id']}/backups").json()
    assert [b["backupId"] for b in stored] == [json.loads(ran.stdout)["backupId"]]
    assert api.get(f"/api/backups/configs/{first['id']}/backups").json() == []


def test_a_renamed_config_still_finds_its_backups_from_the_cli_and_the_server(
    api: Api, database_url: str, tmp_path: Path, source: Path, dest: Path
) -> None:
    config = api.create_config(config_doc([source], local_destination(dest), type="incremental"))
    first = _cli(tmp_path, database_url, "backup", "run", "--config", "API Test", "--json")
    assert first.returncode == 0, first.stderr
    renamed = api.patch(f"/api/backups/configs/{config['id']}", json={"name": "Docs at home"})
    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["slug"] == "api-test"

    by_name = _cli(tmp_path, database_url, "backup", "run", "--config", "Docs at home", "--json")
    assert by_name.returncode == 0, by_name.stderr
    assert json.loads(by_name.stdout)["type"] == "incremental"  # on the first: the same chain
    (source / "docs" / "new.txt").write_text("new\n")
    exported = _export(api, config["id"], tmp_path / "renamed.json")
    by_file = _cli(tmp_path, database_url, "backup", "run", "-c", str(exported), "--json")
    assert by_file.returncode == 0, by_file.stderr
    assert json.loads(by_file.stdout)["parent"] == json.loads(by_name.stdout)["backupId"]

    assert _folders(dest) == {"api-test": 3}
    stored = api.get(f"/api/backups/configs/{config['id']}/backups").json()
    assert len(stored) == 3
    by_id = _cli(tmp_path, database_url, "backups", "list", "--config", config["id"], "--json")
    assert len(json.loads(by_id.stdout)["backups"]) == 3


def _file(path: Path, document: dict[str, Any]) -> Path:
    path.write_text(json.dumps(document))
    return path


def test_a_config_file_without_a_slug_never_forks_a_chain_silently(
    database_url: str, tmp_path: Path, source: Path, dest: Path
) -> None:
    nightly = {**config_doc([source], local_destination(dest)), "name": "Nightly"}
    first = _cli(tmp_path, database_url, "backup", "run", "-c", str(_file(tmp_path / "a", nightly)))
    assert first.returncode == 0, first.stderr

    # Renamed in the file: its backups are in 'nightly', not in a new folder.
    renamed = _file(tmp_path / "b", {**nightly, "name": "Nightly docs"})
    forked = _cli(tmp_path, database_url, "backup", "run", "-c", str(renamed))
    assert forked.returncode == 2, forked.stderr
    assert "'nightly'" in forked.stderr and '"slug": "nightly"' in forked.stderr
    assert "Traceback" not in forked.stderr
    # The same folder name for another config's name ('Nightly!' makes 'nightly' too).
    other = tmp_path / "elsewhere"
    other.mkdir()
    clash = _file(
        tmp_path / "c", {**nightly, "name": "Nightly!", "sources": [{"path": str(other)}]}
    )
    clashed = _cli(tmp_path, database_url, "backup", "run", "-c", str(clash))
    assert clashed.returncode == 2
    assert "another config ('Nightly')" in clashed.stderr
    assert _folders(dest) == {"nightly": 1}

    # With the slug the message names, the renamed config goes on with its chain.
    kept = _file(tmp_path / "d", {**nightly, "name": "Nightly docs", "slug": "nightly"})
    again = _cli(tmp_path, database_url, "backup", "run", "-c", str(kept))
    assert again.returncode == 0, again.stderr
    assert _folders(dest) == {"nightly": 2}


def test_the_cli_applies_retention_as_a_scheduled_run_does(
    api: Api, database_url: str, tmp_path: Path, source: Path, dest: Path
) -> None:
    config = api.create_config(config_doc([source], local_destination(dest), retentionDays=1))
    ran = _cli(tmp_path, database_url, "backup", "run", "--config", config["id"])
    assert ran.returncode == 0, ran.stderr
    first_id = next(p.name for p in (dest / "api-test").iterdir() if is_backup_id(p.name))
    # Age the first backup by a year (its marker's dates are what retention reads).
    redate_marker(
        dest / "api-test" / first_id / "backup.json",
        createdAt="2020-01-01T00:00:00+00:00",
        completedAt="2020-01-01T00:00:00+00:00",
    )

    again = _cli(tmp_path, database_url, "backup", "run", "--config", config["id"], "--json")

    assert again.returncode == 0, again.stderr
    outcome = json.loads(again.stdout)["retention"]
    assert [d["backupId"] for d in outcome["deleted"]] == [first_id]
    assert not (dest / "api-test" / first_id).exists()
    assert _folders(dest) == {"api-test": 1}
    document = config_doc([source], local_destination(dest), retentionDays=1)
    from_file = _file(tmp_path / "f", {**document, "slug": "api-test"})
    text = _cli(tmp_path, database_url, "backup", "run", "-c", str(from_file))
    assert text.returncode == 0, text.stderr
    assert "retention: 0 expired backup(s) deleted, 2 kept" in text.stdout


def test_the_cli_needs_one_way_to_name_its_config(
    database_url: str, tmp_path: Path, source: Path, dest: Path
) -> None:
    neither = _cli(tmp_path, database_url, "backup", "run")
    assert neither.returncode == 2
    assert "--config-file FILE or --config NAME|ID" in neither.stderr
    unknown = _cli(tmp_path, database_url, "backup", "run", "--config", "nope")
    assert unknown.returncode != 0
    assert "no backup configuration has the id or name 'nope'" in unknown.stderr
    assert "Traceback" not in unknown.stderr
