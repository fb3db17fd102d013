"""Fixtures shared by the whole suite: moto's standalone S3 server, SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
import pytest
from mypy_boto3_s3 import S3Client

MOTO_REGION = "us-east-1"


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_http(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"moto server exited early:\n{log.read_text(errors='replace')}")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except urllib.error.HTTPError:
            return  # any HTTP answer means the server is up
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"moto server did not answer at {url}:\n{log.read_text(errors='replace')}")


@pytest.fixture(scope="session")
def moto_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Start moto's S3 server for the session, set test credentials, yield its URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path_factory.mktemp("moto") / "server.log"
    # The log goes to a file: a pipe nobody reads would fill up and stall the server.
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_for_http(url, process, log)
        with pytest.MonkeyPatch.context() as env:
            for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
                env.delenv(name, raising=False)
            env.setenv("AWS_ACCESS_KEY_ID", "testing")
            env.setenv("AWS_SECRET_ACCESS_KEY", "testing")
            env.setenv("AWS_DEFAULT_REGION", MOTO_REGION)
            env.setenv("AWS_REGION", MOTO_REGION)
            yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def s3_client(moto_endpoint: str) -> S3Client:
    """Return a plain boto3 client on the moto server, to set up and inspect buckets."""
    return boto3.client("s3", endpoint_url=moto_endpoint, region_name=MOTO_REGION)


@pytest.fixture
def s3_bucket(s3_client: S3Client) -> str:
    """Create a fresh, uniquely named bucket on the moto server and return its name."""
    name = f"test-{uuid.uuid4().hex[:20]}"
    s3_client.create_bucket(Bucket=name)
    return name


# -- databases: every database test runs on SQLite and on PostgreSQL -------------------

PG_ADMIN_URL = os.environ.get("BACKAPP_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def _pg_schema_url(schema: str) -> str:
    base = PG_ADMIN_URL.replace("postgresql://", "postgresql+psycopg://", 1)
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}options=-csearch_path%3D{schema}"


@contextmanager
def _pg_schema() -> Iterator[str]:
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield _pg_schema_url(schema)
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database: a SQLite file, or a new schema in the PostgreSQL at 5432.

    PostgreSQL runs here and in CI: if it is unreachable the test fails (never skips).
    """
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/backapp.db"
        return
    with _pg_schema() as url:
        yield url


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh schema in the PostgreSQL at 5432 (for what only PostgreSQL supports)."""
    with _pg_schema() as url:
        yield url


@pytest.fixture
def make_ctx(tmp_path: Path) -> Iterator[Any]:
    """Return a factory of migrated AppContexts for a database URL (settings overridable)."""
    from backapp.app import build_context
    from backapp.settings import Settings

    made = []

    def make(database_url: str, **overrides: Any) -> Any:
        values: dict[str, Any] = {
            "database_url": database_url,
            "data_dir": tmp_path / "data",
            "backup_encryption_key": base64.b64encode(b"k" * 32).decode(),
            "tick_interval": 0.2,
        }
        values.update(overrides)
        ctx = build_context(Settings(_env_file=None, **values))
        ctx.db.upgrade()
        made.append(ctx)
        return ctx

    yield make
    for ctx in made:
        ctx.db.dispose()
