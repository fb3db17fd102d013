"""Closed-loop load on the API: N clients, each sending its next GET as soon as the last
one answered, over a kept-alive connection, for a while; latencies and errors counted.

    .venv/bin/python bench/apiload.py --database sqlite --clients 50 --seconds 60
    .venv/bin/python bench/apiload.py --database postgresql --seconds 10

starts a `backapp serve` with a backup running (as `make bench` does) and prints the
figures, overall and per endpoint. The clients use http.client, not httpx: on a two-core
machine the load generator shares the CPU with the server, and the lighter it is the more
of the measurement is the server.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from apiserver import ApiServer, BackupKeeper, make_source, postgres_schema
from measure import busy_cpu_seconds

PATHS = (
    "/api/backups/configs",
    "/api/backups/logs?limit=20",
    "/api/backups/stats",
    "/api/alerts",
    "/api/backups/logs/{run}",
)
WARM_UP_SECONDS = 3.0


@dataclass
class LoadResult:
    """What one load produced: counts, rate and latency percentiles (milliseconds)."""

    clients: int
    seconds: float
    requests: int
    errors: int
    rps: float
    p50: float
    p90: float
    p99: float
    max: float
    error_samples: list[str] = field(default_factory=list)
    by_path: dict[str, dict[str, float]] = field(default_factory=dict)
    server_cpu: float = 0.0  # CPU seconds of the server during the load
    client_cpu: float = 0.0  # CPU seconds of this process (the clients) during the load
    other_load: float = 0.0  # cores used by unrelated processes meanwhile

    def to_json(self) -> dict[str, Any]:
        """Return the result as a JSON-ready dict."""
        return asdict(self)


def percentile(values: list[float], fraction: float) -> float:
    """Given sorted values and a fraction (0.99), return that percentile (nearest rank)."""
    if not values:
        return 0.0
    rank = min(len(values), max(1, math.ceil(fraction * len(values)))) - 1
    return values[rank]


class _Client(threading.Thread):
    def __init__(self, host: str, port: int, token: str, paths: list[str], offset: int):
        super().__init__(daemon=True)
        self.host, self.port = host, port
        self.headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        self.paths = paths
        self.offset = offset
        self.start_at = 0.0
        self.stop_at = 0.0
        self.samples: list[tuple[str, float]] = []  # (path, seconds) of answered requests
        self.errors: list[str] = []

    def run(self) -> None:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        i = self.offset
        while True:
            now = time.perf_counter()
            if now >= self.stop_at:
                break
            path = self.paths[i % len(self.paths)]
            i += 1
            try:
                conn.request("GET", path, headers=self.headers)
                reply = conn.getresponse()
                body = reply.read()
            except (OSError, http.client.HTTPException) as exc:
                if now >= self.start_at:
                    self.errors.append(f"GET {path}: {type(exc).__name__}: {exc}")
                conn.close()
                conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
                continue
            took = time.perf_counter() - now
            if now < self.start_at:
                continue  # warming up: connections open, caches fill
            if reply.status != 200:
                self.errors.append(f"GET {path}: HTTP {reply.status} {body[:200]!r}")
            else:
                self.samples.append((path, took))
        conn.close()


def run_load(
    base: str, token: str, *, clients: int, seconds: float, paths: list[str]
) -> LoadResult:
    """Given the server's base URL, a token and the paths to cycle through, keep ``clients``
    requests in flight for ``seconds`` (after a short warm-up); return the figures."""
    host, port = base.removeprefix("http://").split(":")
    workers = [_Client(host, int(port), token, paths, i) for i in range(clients)]
    begin = time.perf_counter()
    for w in workers:
        w.start_at = begin + WARM_UP_SECONDS
        w.stop_at = w.start_at + seconds
        w.start()
    time.sleep(max(0.0, begin + WARM_UP_SECONDS - time.perf_counter()))
    cpu, busy, started = time.process_time(), busy_cpu_seconds(), time.perf_counter()
    for w in workers:
        w.join(timeout=seconds + 60)
    elapsed = time.perf_counter() - started
    cpu, busy = time.process_time() - cpu, busy_cpu_seconds() - busy
    samples = [s for w in workers for s in w.samples]
    errors = [e for w in workers for e in w.errors]
    result = summarise(samples, errors, clients=clients, seconds=seconds)
    result.client_cpu = cpu
    result.other_load = busy / elapsed if elapsed > 0 else 0.0  # the server is deducted later
    return result


def summarise(
    samples: list[tuple[str, float]], errors: list[str], *, clients: int, seconds: float
) -> LoadResult:
    """Given (path, seconds) samples and error texts, return the LoadResult."""
    ms = sorted(t * 1000 for _, t in samples)
    by_path: dict[str, dict[str, float]] = {}
    for path in sorted({p for p, _ in samples}):
        mine = sorted(t * 1000 for p, t in samples if p == path)
        by_path[path] = {
            "requests": len(mine),
            "p50": percentile(mine, 0.5),
            "p99": percentile(mine, 0.99),
        }
    return LoadResult(
        clients=clients,
        seconds=seconds,
        requests=len(ms) + len(errors),
        errors=len(errors),
        rps=(len(ms) + len(errors)) / seconds if seconds else 0.0,
        p50=percentile(ms, 0.5),
        p90=percentile(ms, 0.9),
        p99=percentile(ms, 0.99),
        max=ms[-1] if ms else 0.0,
        error_samples=sorted(set(errors))[:5],
        by_path=by_path,
    )


def load_with_backup(
    exe: Path, database_url: str, folder: Path, env: dict[str, str], *, clients: int, seconds: float
) -> LoadResult:
    """Given ``backapp``, a database and a scratch folder, serve it, keep a backup running
    and put the API under load; return the figures."""
    source = make_source(folder.parent / "api-source", total_mib=64)
    with ApiServer(exe, database_url, folder, env) as server:
        keeper = BackupKeeper(server, source, folder / "repo", seconds + WARM_UP_SECONDS)
        run_id = keeper.start()
        paths = [p.format(run=run_id) for p in PATHS]
        server_cpu = server.cpu_seconds()
        try:
            result = run_load(
                server.base, server.token, clients=clients, seconds=seconds, paths=paths
            )
        finally:
            keeper.stop()
        result.server_cpu = server.cpu_seconds() - server_cpu
        elapsed = seconds or 1.0
        result.other_load = max(
            0.0, result.other_load - (result.server_cpu + result.client_cpu) / elapsed
        )
        if keeper.not_running:
            result.error_samples.append(f"no backup was running for ~{keeper.not_running:.0f} s")
    return result


def main(argv: list[str] | None = None) -> int:
    """Run one load from the command line and print its figures as JSON."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--work", type=Path, default=None, help="scratch folder (default: temporary)")
    args = ap.parse_args(argv)
    project = Path(__file__).resolve().parent.parent
    exe = project / ".venv" / "bin" / "backapp"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    with tempfile.TemporaryDirectory(prefix="bench-api-", dir=args.work) as tmp:
        folder = Path(tmp) / "server"
        if args.database == "sqlite":
            result = load_with_backup(
                exe,
                f"sqlite:///{tmp}/backapp.db",
                folder,
                env,
                clients=args.clients,
                seconds=args.seconds,
            )
        else:
            with postgres_schema() as url:
                result = load_with_backup(
                    exe, url, folder, env, clients=args.clients, seconds=args.seconds
                )
    sys.stdout.write(json.dumps(result.to_json(), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
