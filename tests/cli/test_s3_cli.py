"""The CLI against an S3 endpoint (moto's standalone server over HTTP)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import boto3

from tests.cli.conftest import CliRunner, write_config
from tests.conftest import free_port
from tests.helpers.trees import restored_root, snapshot


def _source(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    (src / "a" / "b").mkdir(parents=True)
    (src / "a" / "b" / "big.bin").write_bytes(os.urandom(12 * 1024 * 1024))
    (src / "small.txt").write_text("small\n")
    os.symlink("small.txt", src / "link")
    return src


def test_backup_to_s3_and_restore_from_it(
    cli: CliRunner, tmp_path: Path, moto_endpoint: str, s3_bucket: str, encryption_key: str
) -> None:
    src = _source(tmp_path)
    dest = {"type": "s3", "bucket": s3_bucket, "region": "us-east-1", "prefix": "nightly"}
    cfg = write_config(tmp_path / "cfg.json", [src], dest, encryption=True, compressionLevel=1)
    env = {"BACKUP_ENCRYPTION_KEY": encryption_key, "AWS_S3_ENDPOINT": moto_endpoint}
    run = cli("backup", "run", "-c", str(cfg), "--json", env=env)
    assert run.returncode == 0, run.stderr
    backup_id = json.loads(run.stdout)["backupId"]
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=s3_bucket)["Contents"])
    # Format 2: the marker in the backup's folder; the data and manifest as blocks in two
    # packs (data, manifest) and their index, all in the config's folder.
    assert [
        k for k in keys if not k.startswith(("nightly/cli-test/packs/", "nightly/cli-test/index/"))
    ] == [f"nightly/cli-test/{backup_id}/backup.json"]
    assert sum("/packs/" in k for k in keys) == 2 and sum("/index/" in k for k in keys) == 1
    assert s3.list_multipart_uploads(Bucket=s3_bucket).get("Uploads") is None
    restored = cli("restore", "-c", str(cfg), "-t", str(tmp_path / "out"), env=env)
    assert restored.returncode == 0, restored.stderr
    assert snapshot(restored_root(tmp_path / "out", src)) == snapshot(src)
    verified = cli("verify", "-c", str(cfg), "--full", env=env)
    assert verified.returncode == 0, verified.stderr


def test_unreachable_endpoint_fails_with_exit_1_and_a_clear_message(
    cli: CliRunner, tmp_path: Path, moto_endpoint: str
) -> None:
    src = _source(tmp_path)
    closed = f"http://127.0.0.1:{free_port()}"
    dest = {"type": "s3", "bucket": "nowhere", "region": "us-east-1", "endpoint": closed}
    cfg = write_config(tmp_path / "cfg.json", [src], dest)
    run = cli("backup", "run", "-c", str(cfg), timeout=180)
    assert run.returncode == 1
    assert "Failed to connect to S3 bucket 'nowhere'" in run.stderr
    assert "Traceback" not in run.stderr


def test_missing_bucket_fails_with_exit_1(
    cli: CliRunner, tmp_path: Path, moto_endpoint: str
) -> None:
    src = _source(tmp_path)
    dest = {"type": "s3", "bucket": "no-such-bucket", "region": "us-east-1"}
    cfg = write_config(tmp_path / "cfg.json", [src], dest)
    run = cli("backup", "run", "-c", str(cfg), env={"AWS_S3_ENDPOINT": moto_endpoint})
    assert run.returncode == 1
    assert "does not exist" in run.stderr
