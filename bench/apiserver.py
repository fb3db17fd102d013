"""A real `backapp serve` in its own process, with an API token and a backup kept running."""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

from measure import BenchError, run_quiet

ADMIN_PASSWORD = "bench-admin-password"
PG_URL = os.environ.get("BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")
_LIVE: set[subprocess.Popen[bytes]] = set()


def _stop_all() -> None:
    for proc in list(_LIVE):
        _terminate(proc)


atexit.register(_stop_all)


def _terminate(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)  # uvicorn shuts down cleanly on SIGINT
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    _LIVE.discard(proc)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def postgres_schema() -> Iterator[str]:
    """Yield the URL of a fresh schema in the PostgreSQL at BENCH_PG, dropped afterwards.

    Raise BenchError when PostgreSQL cannot be reached.
    """
    import psycopg

    schema = f"bench_{uuid.uuid4().hex[:12]}"
    try:
        with psycopg.connect(PG_URL, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
    except psycopg.Error as exc:
        raise BenchError(f"PostgreSQL at {PG_URL} is not reachable: {exc}") from exc
    sep = "&" if "?" in PG_URL else "?"
    try:
        yield f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(PG_URL, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


class ApiServer:
    """Given the ``backapp`` executable, a database URL and a folder, run ``backapp serve``
    (web, API, scheduler and worker in one process) on a free port while in a with block."""

    def __init__(self, exe: Path, database_url: str, folder: Path, env: dict[str, str]) -> None:
        self.exe = str(exe)
        self.folder = folder
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = {
            **env,
            "DATABASE_URL": database_url,
            "BACKAPP_DATA_DIR": str(folder / "data"),
            "BACKAPP_ADMIN_PASSWORD": ADMIN_PASSWORD,
        }
        self.log = folder / "server.log"
        self.token = ""
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        """Return the server's process id."""
        assert self._proc is not None
        return self._proc.pid

    def __enter__(self) -> ApiServer:
        self.folder.mkdir(parents=True, exist_ok=True)
        cmd = [self.exe, "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        with self.log.open("wb") as out:
            self._proc = subprocess.Popen(
                cmd,
                env=self.env,
                cwd=self.folder,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _LIVE.add(self._proc)
        try:
            self._wait_ready()
            out = run_quiet(
                [self.exe, "token", "create", "--user", "admin", "--name", "bench"],
                env=self.env,
                cwd=self.folder,
                timeout=60,
            )
            self.token = out.strip().splitlines()[-1]
        except BaseException:
            _terminate(self._proc)
            raise
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
        assert self._proc is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise BenchError(f"backapp serve exited early: {self._log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.base}/healthz", timeout=2):
                    return
            except OSError:
                time.sleep(0.2)
        raise BenchError(f"backapp serve did not answer at {self.base}: {self._log_tail()}")

    def _log_tail(self) -> str:
        text = self.log.read_text(encoding="utf-8", errors="replace")
        return " ".join(text.strip().splitlines()[-5:])[-600:]

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """Given a method, a path and a JSON body, call the API with the token; return the
        decoded reply. Raise BenchError on an HTTP error."""
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{self.base}{path}", data=data, method=method)
        request.add_header("Authorization", f"Bearer {self.token}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=30) as reply:
                raw = reply.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:300].decode(errors="replace")
            raise BenchError(f"{method} {path}: HTTP {exc.code} {detail}") from exc
        return json.loads(raw) if raw else None

    def cpu_seconds(self) -> float:
        """Return the CPU seconds (user + system, all threads) the server has used."""
        with open(f"/proc/{self.pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def make_source(folder: Path, total_mib: int, files: int = 512) -> Path:
    """Given a folder, fill it once with ``files`` files of random bytes, ``total_mib`` MiB."""
    marker = folder / ".done"
    if marker.exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    size = total_mib * 2**20 // files
    for i in range(files):
        (folder / f"sub{i % 16:02d}").mkdir(exist_ok=True)
        (folder / f"sub{i % 16:02d}" / f"file{i:04d}.bin").write_bytes(os.urandom(size))
    marker.write_text("ok\n", encoding="utf-8")
    return folder


class BackupKeeper:
    """Given a server, a source and a duration, keep one backup of the source running:
    its upload limit makes it last about that long, and a new one is queued if it ends.

    The backup writes its progress to the database every second, as any running backup.
    """

    def __init__(self, server: ApiServer, source: Path, destination: Path, seconds: float):
        self.server = server
        total = sum(p.stat().st_size for p in source.rglob("*.bin"))
        kbps = max(1, int(total / 1024 / (seconds * 1.3)))  # outlasts the load by a margin
        doc = {
            "name": "bench-api-load",
            "enabled": True,
            "sources": [{"path": str(source)}],
            "destination": {"type": "local", "path": str(destination)},
            "schedule": {"cronExpression": "0 3 * * *", "timezone": "UTC"},
            "options": {
                "type": "full",
                "compression": True,
                "compressionAlgorithm": "zstd",
                "compressionLevel": 3,
                "encryption": False,
                "bandwidth": kbps,
            },
        }
        self.config_id = str(server.call("POST", "/api/backups/configs", doc)["id"])
        self.run_ids: list[str] = []
        self.not_running = 0.0  # seconds of the load with no backup running
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="backup-keeper", daemon=True)

    def start(self) -> str:
        """Queue the first backup and wait until it runs; return its run id."""
        self._queue()
        deadline = time.monotonic() + 30
        while self._status() != "running":
            if time.monotonic() > deadline:
                raise BenchError("the backup did not start within 30 s")
            time.sleep(0.2)
        self._thread.start()
        return self.run_ids[-1]

    def stop(self) -> None:
        """Stop watching and cancel the backup."""
        self._stop.set()
        self._thread.join(timeout=10)
        with contextlib.suppress(BenchError):  # it had ended
            self.server.call("POST", f"/api/backups/logs/{self.run_ids[-1]}/cancel")

    def _queue(self) -> None:
        run = self.server.call("POST", "/api/backups/execute", {"configId": self.config_id})
        self.run_ids.append(str(run["id"]))

    def _status(self) -> str:
        run = self.server.call("GET", f"/api/backups/logs/{self.run_ids[-1]}")
        return str(run["status"])

    def _watch(self) -> None:
        while not self._stop.wait(1.0):
            status = self._status()
            if status not in ("queued", "running"):
                self.not_running += 1.0
                self._queue()
