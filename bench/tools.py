"""The two backup programs under test, driven through their command lines."""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from measure import BenchError, Measurement, run_quiet, timed
from results import NotAvailableError


class Restic:
    """Given a repository ("/path" or "s3:http://…/bucket"), run restic against it."""

    def __init__(self, repo: str, *, cache: Path, env: dict[str, str], timeout: float) -> None:
        self.repo = repo
        self.env = {**env, "RESTIC_PASSWORD": "x", "RESTIC_REPOSITORY": repo}
        self._base = ["restic", "--quiet", "--cache-dir", str(cache)]
        self.timeout = timeout

    def init(self) -> None:
        """Create the repository (untimed)."""
        run_quiet([*self._base, "init"], env=self.env, timeout=self.timeout)

    def backup(self, source: Path) -> Measurement:
        """Given a folder, back it up and return the cost."""
        return timed([*self._base, "backup", str(source)], env=self.env, timeout=self.timeout)

    def restore(self, target: Path) -> Measurement:
        """Given an empty folder, restore the latest snapshot into it and return the cost."""
        cmd = [*self._base, "restore", "latest", "--target", str(target)]
        return timed(cmd, env=self.env, timeout=self.timeout)

    def check_read_data(self) -> Measurement:
        """Read and check every pack of the repository; return the cost."""
        return timed([*self._base, "check", "--read-data"], env=self.env, timeout=self.timeout)


class Backapp:
    """Given the ``backapp`` executable and a folder for configs, run the real CLI."""

    def __init__(self, exe: Path, configs: Path, *, env: dict[str, str], timeout: float) -> None:
        self.exe = str(exe)
        self.configs = configs
        key = base64.b64encode(secrets.token_bytes(32)).decode()  # as `openssl rand -base64 32`
        self.env = {**env, "BACKUP_ENCRYPTION_KEY": key}
        self.timeout = timeout
        configs.mkdir(parents=True, exist_ok=True)

    def with_env(self, extra: dict[str, str]) -> Backapp:
        """Given more environment variables, return a Backapp that also sets them."""
        other = Backapp(Path(self.exe), self.configs, env=self.env, timeout=self.timeout)
        other.env = {**self.env, **extra}  # the same encryption key
        return other

    def config(
        self,
        name: str,
        source: Path,
        destination: dict[str, Any],
        *,
        kind: str = "full",
        algorithm: str = "gzip",
        level: int = 6,
    ) -> Path:
        """Given a name, a source and a destination, write a JSON config; return its path."""
        doc = {
            "name": name,
            "enabled": True,
            "sources": [{"path": str(source)}],
            "destination": destination,
            "schedule": {"cronExpression": "0 3 * * *", "timezone": "UTC"},
            "options": {
                "type": kind,
                "compression": True,
                "compressionLevel": level,
                "compressionAlgorithm": algorithm,
                "encryption": True,
            },
        }
        path = self.configs / f"{name}-{kind}.json"
        path.write_text(json.dumps(doc, indent=2), encoding="utf-8")
        return path

    def warm_up(self, folder: Path) -> None:
        """Given a scratch folder, back up and restore a tiny tree once, untimed.

        This fills the bytecode cache, so no timed run pays for compiling modules.
        """
        source = folder / "source"
        source.mkdir(parents=True, exist_ok=True)
        (source / "hello.txt").write_text("hello\n", encoding="utf-8")
        dest = {"type": "local", "path": str(folder / "repo")}
        config = self.config("bench-warm-up", source, dest)
        run_quiet([self.exe, "backup", "run", "-c", str(config), "--json"], env=self.env)
        restore = [self.exe, "restore", "-c", str(config), "--target", str(folder / "restore")]
        run_quiet([*restore, "--json"], env=self.env)
        shutil.rmtree(folder)

    def backup(self, config: Path) -> Measurement:
        """Given a config file, run ``backup run --json``; return the cost and its summary."""
        cmd = [self.exe, "backup", "run", "-c", str(config), "--json"]
        m = timed(cmd, env=self.env, cwd=self.configs, timeout=self.timeout)
        m.extra = _json_tail(m.stdout)
        return m

    def kill_at(self, config: Path, folder: Path, stored: int) -> int:
        """Given a config, its destination folder and a byte count, start a backup and
        SIGKILL it once the folder holds that many bytes; return how many it held."""
        cmd = [self.exe, "backup", "run", "-c", str(config), "--json"]
        process = subprocess.Popen(
            cmd,
            env=self.env,
            cwd=self.configs,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + self.timeout
        held = 0
        while process.poll() is None and time.monotonic() < deadline:
            held = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
            if held >= stored:
                break
            time.sleep(0.05)
        process.kill()
        process.wait()
        return held

    def restore(self, config: Path, target: Path) -> Measurement:
        """Given a config and an empty folder, restore the latest backup; return the cost."""
        cmd = [self.exe, "restore", "-c", str(config), "--backup", "latest"]
        cmd += ["--target", str(target), "--json"]
        m = timed(cmd, env=self.env, cwd=self.configs, timeout=self.timeout)
        m.extra = _json_tail(m.stdout)
        return m

    def verify(self, config: Path) -> Measurement:
        """Given a config, run a full verify of the latest backup. Raise NotAvailableError."""
        try:
            run_quiet([self.exe, "verify", "--help"], env=self.env, cwd=self.configs, timeout=60)
        except BenchError:
            raise NotAvailableError("not implemented (`backapp verify --help` fails)") from None
        cmd = [self.exe, "verify", "--backup", "latest", "--full", "-c", str(config)]
        return timed(cmd, env=self.env, cwd=self.configs, timeout=self.timeout)


def _json_tail(stdout: str) -> dict[str, Any]:
    for line in reversed(stdout.strip().splitlines()):
        if line.startswith("{"):
            try:
                doc = json.loads(line)
            except json.JSONDecodeError:
                continue
            return doc if isinstance(doc, dict) else {}
    return {}


def fresh_dir(path: Path) -> Path:
    """Given a path, return it as a new empty folder."""
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def free_gib(path: Path) -> float:
    """Given a path, return the free space of its filesystem in GiB."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize / 2**30
