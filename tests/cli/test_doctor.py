"""``backapp doctor`` through the real command: settings, database, key and destinations
(a local folder and moto's S3 server), each problem in the README's Troubleshooting words."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import sqlite3
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from mypy_boto3_s3 import S3Client

from backapp.domain.config import parse_config
from backapp.engine.format.crypto import MasterKey
from backapp.services import configs as config_service
from backapp.services import doctor
from backapp.services.context import AppContext
from backapp.services.identity import StoredConfig
from backapp.settings import Settings
from tests.conftest import free_port
from tests.helpers.cli import run_backapp

README = Path(__file__).resolve().parents[2] / "README.md"


def _key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def _document(name: str, destination: dict[str, Any], *, encryption: bool) -> dict[str, Any]:
    return {
        "name": name,
        "enabled": True,
        "sources": [{"path": "/etc/hostname"}],
        "destination": destination,
        "schedule": {"cronExpression": "0 2 * * *", "timezone": "UTC"},
        "options": {"type": "full", "compression": True, "encryption": encryption},
    }


class Server:
    """A SQLite database with configs, and the doctor command run against it."""

    def __init__(self, ctx: AppContext, folder: Path, url: str) -> None:
        self.ctx = ctx
        self.folder = folder
        self.url = url

    def add(self, name: str, destination: dict[str, Any], *, encryption: bool = False) -> None:
        with self.ctx.db.session() as session:
            config_service.create(session, _document(name, destination, encryption=encryption))

    def run(self, *args: str, key: str | None = None) -> Any:
        env = {"DATABASE_URL": self.url}
        if key is not None:
            env["BACKUP_ENCRYPTION_KEY"] = key
        return run_backapp(self.folder, *args, env=env, timeout=60)


@pytest.fixture
def server(make_ctx: Callable[..., AppContext], tmp_path: Path) -> Server:
    url = f"sqlite:///{tmp_path}/backapp.db"
    return Server(make_ctx(url), tmp_path, url)


@pytest.fixture
def source(tmp_path: Path) -> Path:
    root = tmp_path / "source"
    root.mkdir()
    (root / "notes.txt").write_text("remember the milk\n")
    return root


def _local_backup(server: Server, source: Path, key: str) -> Path:
    dest = server.folder / "dest"
    document = _document("Local", {"type": "local", "path": str(dest)}, encryption=True)
    document["sources"] = [{"path": str(source)}]
    with server.ctx.db.session() as session:
        config_service.create(session, document)
    made = server.run("backup", "run", "--config", "Local", key=key)
    assert made.returncode == 0, made.stderr
    return dest


def test_doctor_is_content_with_a_local_folder_and_s3_and_names_a_wrong_or_missing_key(
    server: Server, source: Path, moto_endpoint: str, s3_bucket: str, s3_client: S3Client
) -> None:
    key = _key()
    dest = _local_backup(server, source, key)
    bucket = {
        "type": "s3",
        "region": "us-east-1",
        "bucket": s3_bucket,
        "endpoint": moto_endpoint,
        "prefix": "team",
    }
    server.add("Bucket", bucket)

    result = server.run("doctor", key=key)
    wrong = server.run("doctor", key=_key())
    missing = server.run("doctor")

    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "PROBLEM" not in out
    assert "schema current" in out
    assert re.search(r"config 'Local' → .*dest: reachable; a probe was written, read and", out)
    assert "the key opens the newest backup" in out
    assert f"config 'Bucket' → s3://{s3_bucket} at {moto_endpoint}: reachable" in out
    assert "no backups yet" in out
    assert "All is well." in out
    assert key not in out + result.stderr
    # The probes are gone again.
    assert not list(dest.glob(".backapp-doctor-*"))
    assert s3_client.list_objects_v2(Bucket=s3_bucket).get("KeyCount") == 0
    assert wrong.returncode == 1, wrong.stdout
    assert "was encrypted with a different key: BACKUP_ENCRYPTION_KEY is not the key" in (
        wrong.stdout
    )
    assert 'see README.md, Troubleshooting: "encrypted with a different key"' in wrong.stdout
    assert missing.returncode == 1, missing.stdout
    assert "encryption is enabled but BACKUP_ENCRYPTION_KEY is not set" in missing.stdout
    assert "1 problem(s) found." in missing.stdout  # once per config, not again for its backup


def test_doctor_reports_an_unreachable_endpoint_at_once_in_the_troubleshooting_words(
    server: Server, tmp_path: Path
) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    server.add(
        "Offsite", {"type": "s3", "region": "us-east-1", "bucket": "nowhere", "endpoint": closed}
    )
    server.add("Here", {"type": "local", "path": str(tmp_path / "here")})

    began = time.monotonic()
    result = server.run("doctor", "--json")
    elapsed = time.monotonic() - began

    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["ok"] is False
    problems = [f for f in report["findings"] if f["status"] == "problem"]
    assert len(problems) == 1, problems
    assert problems[0]["subject"] == f"config 'Offsite' → s3://nowhere at {closed}"
    assert problems[0]["message"].startswith(
        f"Failed to connect to S3 bucket 'nowhere' at {closed}"
    )
    assert problems[0]["topic"] == "Failed to connect to S3 bucket"
    assert elapsed < 20  # no retries: a person is waiting


def test_doctor_reports_an_old_schema_a_missing_database_and_bad_usage(
    server: Server, tmp_path: Path
) -> None:
    unknown = server.run("doctor", "--config", "No such config")
    with sqlite3.connect(tmp_path / "backapp.db") as db:
        db.execute("UPDATE alembic_version SET version_num = '0001'")

    old = server.run("doctor")
    nowhere = run_backapp(
        tmp_path, "doctor", env={"DATABASE_URL": f"sqlite:///{tmp_path}/none/backapp.db"}
    )

    assert old.returncode == 1
    assert "The database schema is out of date (revision 0001" in old.stdout
    assert "run `backapp db upgrade`" in old.stdout
    assert nowhere.returncode == 1
    assert "The database file does not exist" in nowhere.stdout
    assert not (tmp_path / "none").exists()  # doctor creates nothing
    assert unknown.returncode == 2
    assert "no backup configuration has the id or name 'No such config'" in unknown.stdout


def test_doctor_checks_a_config_file_without_any_database(
    tmp_path: Path, moto_endpoint: str, s3_bucket: str
) -> None:
    document = _document(
        "Files",
        {"type": "s3", "region": "us-east-1", "bucket": s3_bucket, "endpoint": moto_endpoint},
        encryption=False,
    )
    (tmp_path / "files.json").write_text(json.dumps(document))

    result = run_backapp(tmp_path, "doctor", "--config-file", "files.json")

    assert result.returncode == 0, result.stdout + result.stderr
    assert f"config 'Files' → s3://{s3_bucket} at {moto_endpoint}: reachable" in result.stdout
    assert "database" not in result.stdout
    assert not (tmp_path / "data").exists()


def test_a_clock_ten_minutes_off_is_clock_skew(
    make_ctx: Callable[..., AppContext], tmp_path: Path
) -> None:
    ctx = make_ctx(f"sqlite:///{tmp_path}/backapp.db")
    document = _document("Local", {"type": "local", "path": str(tmp_path / "d")}, encryption=False)
    with ctx.db.session() as session:
        identity = config_service.identity_of(config_service.create(session, document))

    def slow() -> datetime:
        return datetime.now(UTC) - timedelta(minutes=10)

    findings = doctor.check_config(ctx.settings, identity, None, clock=slow)

    skew = [f for f in findings if f.topic == doctor.T_SKEW]
    assert len(skew) == 1, findings
    assert skew[0].message.startswith("Clock skew: this machine's clock is 600 s behind")


def test_every_problem_doctor_names_is_explained_in_the_readme_troubleshooting() -> None:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Troubleshooting") :]
    end = section.find("\n## ", 1)
    section = section if end < 0 else section[:end]

    missing = [topic for topic in doctor.TOPICS if f'"{topic}' not in section]

    assert not missing, missing


def test_the_key_check_reads_format_1_backups_too(tmp_path: Path) -> None:
    fixture = Path(__file__).parents[1] / "fixtures" / "format1"
    store = shutil.copytree(fixture / "store", tmp_path / "store")
    right = json.loads((fixture / "expected.json").read_text())["key"]
    document = _document("Sealed", {"type": "local", "path": str(store)}, encryption=True)
    identity = StoredConfig(None, "sealed", parse_config(document))
    settings = Settings(_env_file=None)

    opened = doctor.check_config(settings, identity, MasterKey.from_base64(right))
    refused = doctor.check_config(settings, identity, MasterKey.from_base64(_key()))

    assert [f.status for f in opened] == ["ok", "ok"], opened
    assert "the key opens the newest backup 20261201T161328.838Z-8e68de" in opened[1].message
    assert [f.topic for f in refused if f.problem] == [doctor.T_WRONG_KEY], refused
