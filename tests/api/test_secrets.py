"""Secrets (the encryption key, AWS secret keys) never leave the process environment."""

from __future__ import annotations

import base64
import logging
import os
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect, text

from backapp.app import create_app
from backapp.services.context import AppContext
from tests.api.conftest import ADMIN_PASSWORD, Api, add_user, config_doc, running_worker
from tests.conftest import MOTO_REGION, free_port


def _record_text(record: logging.LogRecord) -> str:
    parts = [record.getMessage(), str(record.args)]
    if record.exc_info:
        parts.append(logging.Formatter().formatException(record.exc_info))
    return "\n".join(parts)


def test_no_api_response_log_record_or_database_row_contains_a_secret(
    make_ctx: Any,
    database_url: str,
    moto_endpoint: str,
    s3_bucket: str,
    source: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    raw_key = os.urandom(32)
    encryption_key = base64.b64encode(raw_key).decode()
    aws_secret = "Sekr1t" + base64.b32encode(os.urandom(20)).decode()
    monkeypatch.setenv("BACKUP_ENCRYPTION_KEY", encryption_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", aws_secret)
    secrets = [encryption_key, raw_key.hex(), aws_secret]
    caplog.set_level(logging.DEBUG)

    ctx: AppContext = make_ctx(database_url, backup_encryption_key=encryption_key)
    assert ctx.settings.backup_encryption_key is not None
    app = create_app(ctx)
    api = Api(app, ctx, add_user(ctx, "admin", ADMIN_PASSWORD, "admin"))
    destination = {"bucket": s3_bucket, "region": MOTO_REGION, "endpoint": moto_endpoint}
    closed = {**destination, "endpoint": f"http://127.0.0.1:{free_port()}"}
    good = api.create_config({**config_doc([source], destination, encryption=True), "name": "Good"})
    bad = api.create_config({**config_doc([source], closed, encryption=True), "name": "Bad"})

    with running_worker(ctx):
        runs = [api.wait_for_run(api.execute(c["id"])["id"]) for c in (good, bad)]
    assert [r["status"] for r in runs] == ["completed", "failed"], runs

    responses = [
        api.get("/api/backups/configs"),
        api.get(f"/api/backups/configs/{good['id']}"),
        api.get(f"/api/backups/configs/{good['id']}/backups"),
        api.get("/api/backups/logs"),
        api.get(f"/api/backups/logs/{runs[1]['id']}"),
        api.get("/api/backups/stats"),
        api.get("/api/alerts", params={"status": "all"}),
        api.post("/api/backups/destinations/test", json=destination),
        api.post("/api/backups/destinations/test", json={**destination, "bucket": "nope-nope"}),
        api.get("/api/auth/me"),
        api.get("/api/openapi.json"),
    ]
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
    assert "Failed to connect to S3 bucket" in responses[4].text
    assert responses[6].json(), "the failed run raised an alert"
    for response in responses:
        for secret in secrets:
            assert secret not in response.text, response.request.url

    logged = [_record_text(r) for r in caplog.records]
    assert logged, "the runs logged something"
    for line in logged:
        for secret in secrets:
            assert secret not in line

    with ctx.db.session() as session:
        tables = inspect(session.connection()).get_table_names()
        dump = " ".join(
            str(row) for table in tables for row in session.execute(text(f"SELECT * FROM {table}"))
        )
    for secret in secrets:
        assert secret not in dump
