"""Run one command under ``/usr/bin/time -v`` and return what it cost."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TIME_BIN = "/usr/bin/time"
DEFAULT_TIMEOUT = 600.0
# The machine is shared: before timing, wait (a bounded while) for other processes to calm.
QUIET_CORES = 0.25
QUIET_MAX_WAIT = 8.0
QUIET_TOTAL_WAIT = 90.0
_CLK_TCK = os.sysconf("SC_CLK_TCK")

# Processes the bench started whose CPU is part of what is measured (the moto server).
HELPERS: set[int] = set()
_waited = 0.0


class BenchError(Exception):
    """A measured command failed, timed out or gave output we could not read."""


@dataclass
class Measurement:
    """Wall time, CPU (user+sys) and peak RSS of one command, plus what it stored."""

    wall: float
    cpu: float
    rss_kib: int
    stored: int | None = None
    stdout: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    other_load: float = 0.0  # CPU cores used by unrelated processes during the run
    helper_cpu: float = 0.0  # CPU seconds of bench helpers (the moto server) during the run

    @property
    def rss_mib(self) -> float:
        """Return the peak resident set size in MiB."""
        return self.rss_kib / 1024


_WALL_RE = re.compile(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)")
_FIELDS = {
    "user": re.compile(r"User time \(seconds\): ([\d.]+)"),
    "sys": re.compile(r"System time \(seconds\): ([\d.]+)"),
    "rss": re.compile(r"Maximum resident set size \(kbytes\): (\d+)"),
}


def parse_time_report(text: str) -> tuple[float, float, int]:
    """Given the text of ``time -v``, return (wall seconds, CPU seconds, peak RSS KiB)."""
    wall_match = _WALL_RE.search(text)
    values = {name: rx.search(text) for name, rx in _FIELDS.items()}
    if wall_match is None or any(m is None for m in values.values()):
        raise BenchError(f"cannot read the time -v report: {text[-500:]!r}")
    seconds = 0.0
    for part in wall_match.group(1).split(":"):
        seconds = seconds * 60 + float(part)
    user = float(values["user"].group(1))  # type: ignore[union-attr]
    sys_ = float(values["sys"].group(1))  # type: ignore[union-attr]
    rss = int(values["rss"].group(1))  # type: ignore[union-attr]
    return seconds, user + sys_, rss


def run_quiet(
    cmd: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> str:
    """Given a command, run it untimed and return its stdout. Raise BenchError on failure."""
    proc = _run(list(cmd), env=env, cwd=cwd, timeout=timeout)
    if proc.returncode != 0:
        raise BenchError(_failure(cmd, proc.returncode, proc.stderr))
    return proc.stdout


def timed(
    cmd: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> Measurement:
    """Given a command, run it under ``time -v`` and return its Measurement.

    Dirty pages left by earlier steps are flushed first, so one run's writeback is
    not billed to the next. Raise BenchError if the command fails or times out.
    """
    os.sync()
    wait_for_quiet()
    with tempfile.NamedTemporaryFile("r", prefix="bench-time-", suffix=".txt") as report:
        full = [TIME_BIN, "-v", "-o", report.name, *cmd]
        busy, helpers = busy_cpu_seconds(), helper_cpu_seconds()
        started = time.monotonic()
        proc = _run(full, env=env, cwd=cwd, timeout=timeout)
        elapsed = time.monotonic() - started
        busy, helpers = busy_cpu_seconds() - busy, helper_cpu_seconds() - helpers
        text = Path(report.name).read_text(encoding="utf-8", errors="replace")
    if proc.returncode != 0:
        raise BenchError(_failure(cmd, proc.returncode, proc.stderr or proc.stdout))
    try:
        wall, cpu, rss = parse_time_report(text)
    except BenchError:
        wall, cpu, rss = elapsed, 0.0, 0
    other = max(0.0, busy - cpu - helpers) / elapsed if elapsed > 0 else 0.0
    return Measurement(
        wall=wall, cpu=cpu, rss_kib=rss, stdout=proc.stdout, other_load=other, helper_cpu=helpers
    )


def busy_cpu_seconds() -> float:
    """Return the CPU seconds all processors have spent busy since boot (from /proc/stat)."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            ticks = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return 0.0
    # user + nice + system + irq + softirq: not idle, iowait, steal or guest (inside user)
    return sum(ticks[i] for i in (0, 1, 2, 5, 6) if i < len(ticks)) / _CLK_TCK


def helper_cpu_seconds() -> float:
    """Return the CPU seconds used so far by the helper processes in HELPERS."""
    total = 0.0
    for pid in list(HELPERS):
        try:
            with open(f"/proc/{pid}/stat", encoding="ascii") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        total += (int(fields[11]) + int(fields[12])) / _CLK_TCK  # utime + stime
    return total


def wait_for_quiet() -> float:
    """Wait until other processes use < QUIET_CORES, within the wait limits; return the load."""
    global _waited
    started = time.monotonic()
    load = 0.0
    while True:
        busy, helpers = busy_cpu_seconds(), helper_cpu_seconds()
        time.sleep(0.25)
        load = max(0.0, busy_cpu_seconds() - busy - (helper_cpu_seconds() - helpers)) / 0.25
        spent = time.monotonic() - started
        if load < QUIET_CORES or spent > QUIET_MAX_WAIT or _waited + spent > QUIET_TOTAL_WAIT:
            _waited += spent
            return load


def shell(pipeline: str) -> list[str]:
    """Given a shell pipeline, return the argv that runs it with ``pipefail``."""
    return ["bash", "-o", "pipefail", "-c", pipeline]


def _run(
    cmd: list[str], *, env: Mapping[str, str] | None, cwd: Path | None, timeout: float
) -> subprocess.CompletedProcess[str]:
    # A new session lets a timeout kill the whole pipeline, not just its first process.
    proc = subprocess.Popen(
        cmd,
        env=dict(env) if env is not None else None,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise BenchError(f"timed out after {timeout:.0f} s: {' '.join(cmd)}") from None
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def _failure(cmd: Sequence[str], code: int, stderr: str) -> str:
    tail = " ".join(stderr.strip().splitlines()[-3:])[-400:]
    return f"exit {code} from {Path(cmd[0]).name}: {tail or '(no output)'}"


def tree_bytes(path: Path) -> int:
    """Given a folder (or file), return the apparent size of the files in it."""
    if path.is_file():
        return path.stat().st_size
    total = 0
    seen: set[tuple[int, int]] = set()
    for root, _dirs, files in os.walk(path):
        for name in files:
            st = os.lstat(os.path.join(root, name))
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
    return total
