"""The specification's curl examples, run with curl against a real ``backapp serve``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from mypy_boto3_s3 import S3Client

from tests.api.conftest import bearer
from tests.conftest import MOTO_REGION, free_port

ADMIN_PASSWORD = "serve-admin-password"


@dataclass
class LiveServer:
    """A running ``backapp serve`` and an admin token for it."""

    url: str
    token: str
    log: Path

    def curl(self, *args: str) -> Any:
        """Given curl arguments (the spec's, less the URL host), run curl with the token."""
        result = subprocess.run(
            ["curl", "-sS", "--fail-with-body", "-H", f"Authorization: Bearer {self.token}", *args],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert result.returncode == 0, (args, result.stdout, result.stderr)
        return json.loads(result.stdout)

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=bearer(self.token), timeout=10)


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture
def live_server(database_url: str, tmp_path: Path, moto_endpoint: str) -> Iterator[LiveServer]:
    """Start ``backapp serve`` on a free port and the test database; stop it afterwards."""
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("BACKUP_ENCRYPTION_KEY", "AWS_S3_ENDPOINT", "BACKAPP_NOTIFY_URLS")
    }
    env.update(
        DATABASE_URL=database_url,
        BACKAPP_ADMIN_PASSWORD=ADMIN_PASSWORD,
        BACKAPP_DATA_DIR=str(tmp_path / "data"),
        BACKAPP_TICK_INTERVAL="0.2",
    )
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "backapp", "serve", "--host", "127.0.0.1", "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=tmp_path,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, f"serve exited:\n{log.read_text()}"
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"serve did not start:\n{log.read_text()}"
            time.sleep(0.1)
        created = subprocess.run(
            [sys.executable, "-m", "backapp", "token", "create", "--user", "admin"],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=60,
            check=False,
        )
        assert created.returncode == 0, created.stderr
        yield LiveServer(url, created.stdout.strip(), log)
    finally:
        _stop(process)


def _wait_for(server: LiveServer, run_id: str, timeout: float = 30) -> dict[str, Any]:
    with server.client() as client:
        deadline = time.monotonic() + timeout
        while True:
            run = client.get(f"/api/backups/logs/{run_id}").json()
            if run["status"] not in ("queued", "running"):
                return dict(run)
            assert time.monotonic() < deadline, (
                f"run still {run['status']}:\n{server.log.read_text()}"
            )
            time.sleep(0.1)


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_the_specifications_curl_examples_work_against_backapp_serve(
    live_server: LiveServer, tmp_path: Path, moto_endpoint: str, s3_bucket: str, s3_client: S3Client
) -> None:
    source = tmp_path / "data-test"
    (source / "sub").mkdir(parents=True)
    (source / "a.txt").write_text("alpha\n" * 1000)
    (source / "sub" / "b.bin").write_bytes(os.urandom(50_000))
    api = live_server.url
    with httpx.Client(base_url=api, timeout=10) as anonymous:
        assert anonymous.get("/api/backups/configs").status_code == 401
        login = anonymous.post(
            "/api/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD}
        )
        assert login.status_code == 200, "the first admin has BACKAPP_ADMIN_PASSWORD"
    assert ADMIN_PASSWORD not in live_server.log.read_text()

    # Create backup config (the spec's document; the bucket is on moto's S3 server).
    document = {
        "name": "Test Backup",
        "enabled": True,
        "sources": [{"path": str(source)}],
        "destination": {"bucket": s3_bucket, "region": MOTO_REGION, "endpoint": moto_endpoint},
        "schedule": {"cronExpression": "0 2 * * *", "timezone": "UTC"},
        "options": {"type": "full", "compression": True, "encryption": False, "retentionDays": 30},
    }
    config = live_server.curl(
        "-X", "POST", f"{api}/api/backups/configs",
        "-H", "Content-Type: application/json",
        "-d", json.dumps(document),
    )  # fmt: skip
    assert str(uuid.UUID(config["id"])) == config["id"]
    for field in ("name", "enabled", "sources", "destination", "schedule", "options"):
        assert field in config
    assert config["schedule"] == {"cronExpression": "0 2 * * *", "timezone": "UTC"}
    assert config["options"]["retentionDays"] == 30
    assert config["options"]["compressionLevel"] == 6

    # Trigger backup
    queued = live_server.curl(
        "-X", "POST", f"{api}/api/backups/execute",
        "-H", "Content-Type: application/json",
        "-d", json.dumps({"configId": config["id"]}),
    )  # fmt: skip
    assert queued["status"] == "queued"
    assert queued["configId"] == config["id"]

    run = _wait_for(live_server, queued["id"])
    assert run["status"] == "completed", run["error"]
    assert run["filesProcessed"] == 2
    assert run["totalBytes"] == 6000 + 50_000
    assert run["bytesTransferred"] > 50_000
    assert run["durationSeconds"] is not None
    assert run["backupId"]
    keys = [o["Key"] for o in s3_client.list_objects_v2(Bucket=s3_bucket)["Contents"]]
    assert f"{config['slug']}/{run['backupId']}/backup.json" in keys

    # A run that cannot reach its storage fails with a readable error and an alert.
    closed = {**document["destination"], "endpoint": f"http://127.0.0.1:{free_port()}"}
    with live_server.client() as client:
        broken = client.post(
            "/api/backups/configs", json={**document, "name": "Unreachable", "destination": closed}
        ).json()
        failing = client.post("/api/backups/execute", json={"configId": broken["id"]}).json()
    failed = _wait_for(live_server, failing["id"])
    assert failed["status"] == "failed"
    assert "Failed to connect to S3 bucket" in failed["error"]
    assert failed["backupId"] is None

    # Check logs
    logs = live_server.curl(f"{api}/api/backups/logs?limit=10")
    assert [r["id"] for r in logs] == [failed["id"], run["id"]]
    assert logs[1]["filesProcessed"] == 2

    alerts = live_server.curl(f"{api}/api/alerts")
    assert [a["runId"] for a in alerts] == [failed["id"]]
    assert "Failed to connect to S3 bucket" in alerts[0]["message"]
    assert alerts[0]["configName"] == "Unreachable"
