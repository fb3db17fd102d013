"""A moto S3 server in its own process, started fresh for each S3 scenario."""

from __future__ import annotations

import atexit
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

from measure import HELPERS, BenchError

S3_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}

_LIVE: set[subprocess.Popen[bytes]] = set()


def _stop_all() -> None:
    for proc in list(_LIVE):
        _terminate(proc)


atexit.register(_stop_all)


def _terminate(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    _LIVE.discard(proc)
    HELPERS.discard(proc.pid)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class MotoServer:
    """Given a log file, run ``python -m moto.server`` on a free port while in a with block.

    moto keeps objects in memory, so each scenario gets a new server.
    """

    def __init__(self, log: Path) -> None:
        self.port = _free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._log = log
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> MotoServer:
        cmd = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]
        with self._log.open("ab") as log:
            self._proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        _LIVE.add(self._proc)
        HELPERS.add(self._proc.pid)
        self._wait_ready()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._proc is not None:
            _terminate(self._proc)

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise BenchError(f"moto server exited with {self._proc.returncode}")
            try:
                with urllib.request.urlopen(self.endpoint + "/", timeout=2):
                    return
            except (urllib.error.URLError, OSError):
                time.sleep(0.2)
        raise BenchError("moto server did not answer within 30 s")

    def _client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def create_bucket(self, bucket: str) -> None:
        """Given a bucket name, create it."""
        self._client().create_bucket(Bucket=bucket)

    def bucket_bytes(self, bucket: str) -> int:
        """Given a bucket name, return the total size of its objects."""
        total = 0
        paginator = self._client().get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket):
            total += sum(obj["Size"] for obj in page.get("Contents", []))
        return total

    def rss_mib(self) -> float:
        """Return the server's current resident set size in MiB (0 if unknown)."""
        if self._proc is None:
            return 0.0
        try:
            status = Path(f"/proc/{self._proc.pid}/status").read_text(encoding="utf-8")
        except OSError:
            return 0.0
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0
