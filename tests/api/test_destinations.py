"""Destination checks and the backups that exist in storage, on local folders and moto's S3."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from mypy_boto3_s3 import S3Client

from backapp.app import create_app
from backapp.services.context import AppContext
from tests.api.conftest import ADMIN_PASSWORD, Api, add_user, config_doc, local_destination
from tests.conftest import MOTO_REGION, free_port

TEST_URL = "/api/backups/destinations/test"


def s3_destination(bucket: str, endpoint: str, **extra: Any) -> dict[str, Any]:
    """Given a bucket and an endpoint, return an S3 destination document."""
    return {"bucket": bucket, "region": MOTO_REGION, "endpoint": endpoint, **extra}


def check(api: Api, destination: dict[str, Any]) -> dict[str, Any]:
    response = api.post(TEST_URL, json=destination)
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_a_writable_local_folder_is_ok_and_left_clean(api: Api, dest: Path) -> None:
    result = check(api, local_destination(dest))

    assert result["ok"] is True
    assert "reachable and writable" in result["message"]
    assert result["location"] == str(dest)
    assert list(dest.iterdir()) == []


def test_a_local_path_that_is_a_file_is_not_ok(api: Api, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")

    result = check(api, local_destination(blocker))

    assert result["ok"] is False
    assert result["message"]


def test_an_existing_moto_bucket_is_ok_and_left_clean(
    api: Api, moto_endpoint: str, s3_bucket: str, s3_client: S3Client
) -> None:
    result = check(api, s3_destination(s3_bucket, moto_endpoint))

    assert result["ok"] is True, result["message"]
    assert result["location"] == f"s3://{s3_bucket} at {moto_endpoint}"
    assert s3_client.list_objects_v2(Bucket=s3_bucket).get("KeyCount") == 0


def test_the_aws_s3_endpoint_setting_serves_destinations_without_an_endpoint(
    make_ctx: Any, database_url: str, moto_endpoint: str, s3_bucket: str
) -> None:
    ctx: AppContext = make_ctx(database_url, aws_s3_endpoint=moto_endpoint)
    api = Api(create_app(ctx), ctx, add_user(ctx, "admin", ADMIN_PASSWORD, "admin"))

    result = check(api, {"bucket": s3_bucket, "region": MOTO_REGION})

    assert result["ok"] is True, result["message"]


def test_a_missing_bucket_is_reported_as_not_existing(api: Api, moto_endpoint: str) -> None:
    result = check(api, s3_destination("no-such-bucket-here", moto_endpoint))

    assert result["ok"] is False
    message = result["message"].lower()
    assert "no-such-bucket-here" in message
    assert "does not exist" in message or "not found" in message


def test_an_endpoint_nobody_listens_on_fails_to_connect(api: Api, moto_endpoint: str) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"

    result = check(api, s3_destination("my-bucket", endpoint))

    assert result["ok"] is False
    assert "Failed to connect to S3 bucket" in result["message"]


def test_missing_aws_credentials_are_reported_as_such(
    api: Api, moto_endpoint: str, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/config")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")

    result = check(api, s3_destination(s3_bucket, moto_endpoint))

    assert result["ok"] is False
    assert "AWS credentials not configured" in result["message"]


def test_a_destination_document_is_validated_like_a_configs(api: Api) -> None:
    response = api.post(TEST_URL, json={"bucket": "Bad_Bucket", "region": "us-east-1"})
    assert response.status_code == 422
    assert [p["field"] for p in response.json()["problems"]] == ["bucket"]

    response = api.post(TEST_URL, json={"type": "local"})
    assert response.status_code == 422
    assert [p["field"] for p in response.json()["problems"]] == ["path"]

    response = api.post(TEST_URL, json={"type": "ftp", "path": "/x"})
    assert response.status_code == 422
    assert "unknown type 'ftp'" in response.json()["error"]


def test_a_viewer_cannot_probe_destinations(viewer: Api, dest: Path) -> None:
    assert viewer.post(TEST_URL, json=local_destination(dest)).status_code == 403


def test_stored_backups_of_a_config_are_listed_newest_first(
    api: Api, worker: Any, source: Path, dest: Path
) -> None:
    config = api.create_config(config_doc([source], local_destination(dest)))
    url = f"/api/backups/configs/{config['id']}/backups"
    assert api.get(url).json() == []

    runs = []
    for _ in range(2):
        runs.append(api.wait_for_run(api.execute(config["id"])["id"]))
    assert [r["status"] for r in runs] == ["completed", "completed"]

    backups = api.get(url).json()

    assert [b["backupId"] for b in backups] == [runs[1]["backupId"], runs[0]["backupId"]]
    newest = backups[0]
    assert newest["configSlug"] == config["slug"]
    assert newest["configName"] == "API Test"
    assert newest["encrypted"] is False
    assert newest["stats"]["files"] == 3
    assert newest["sources"] == [str(source)]


def test_stored_backups_on_s3_are_listed_after_an_encrypted_run(
    api: Api, worker: Any, source: Path, moto_endpoint: str, s3_bucket: str, s3_client: S3Client
) -> None:
    config = api.create_config(
        config_doc(
            [source], s3_destination(s3_bucket, moto_endpoint, prefix="nightly"), encryption=True
        )
    )

    run = api.wait_for_run(api.execute(config["id"])["id"])
    assert run["status"] == "completed", run["error"]

    backups = api.get(f"/api/backups/configs/{config['id']}/backups").json()
    assert [b["backupId"] for b in backups] == [run["backupId"]]
    assert backups[0]["encrypted"] is True
    keys = [o["Key"] for o in s3_client.list_objects_v2(Bucket=s3_bucket)["Contents"]]
    assert f"nightly/{config['slug']}/{run['backupId']}/backup.json" in keys
