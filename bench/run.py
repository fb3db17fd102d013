"""`make bench`: measure BackApp against reference tools and write bench/RESULTS.md.

    .venv/bin/python bench/run.py                 # 1 GiB corpus, ×4 scaling (~15 min)
    .venv/bin/python bench/run.py --quick         # 256 MiB corpus, 1 GiB scaling
    .venv/bin/python bench/run.py --million       # also the 1,000,000-file scenario
    .venv/bin/python bench/run.py --only api      # only the listed phases (here the API load)
    .venv/bin/python bench/apiload.py --seconds 20  # one API load, printed (one database)

`make bench BENCH_QUICK=1` is --quick; BENCH_ARGS="..." passes more options.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from apirows import api_rows
from corpus import tool_version
from report import render
from results import Results
from scale import million_rows, scaling_rows
from scenarios import Scenarios, Settings

BENCH = Path(__file__).resolve().parent
PROJECT = BENCH.parent
MILLION = 1_000_000
# Rough cost of the optional phases, from runs on a 2-core machine, to respect the budget.
SECONDS_PER_MILLION_FILES = 150.0
CORPUS_SECONDS_PER_GIB = 16.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Given the command line, return the options (environment variables give defaults)."""
    quick = os.environ.get("BENCH_QUICK", "") not in ("", "0")
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", default=quick, help="256M corpus, 1G scaling")
    ap.add_argument("--size", help="corpus size (default 1G, quick 256M)")
    ap.add_argument("--scale-size", help="size of the ×4 corpus (default 4G, quick 1G)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument(
        "--million",
        nargs="?",
        type=int,
        const=MILLION,
        default=MILLION if os.environ.get("BENCH_MILLION", "") not in ("", "0") else 0,
        help="also back up N empty files (default N: 1,000,000)",
    )
    ap.add_argument("--no-s3", dest="s3", action="store_false", help="skip the S3 rows")
    ap.add_argument("--no-scaling", dest="scaling", action="store_false", help="skip ×4")
    ap.add_argument("--no-api", dest="api", action="store_false", help="skip the API load")
    ap.add_argument("--only", help="run only these phases (comma-separated, e.g. api)")
    ap.add_argument(
        "--api-seconds", type=float, help="seconds of API load per database (60, quick 15)"
    )
    # ~15 min on 2 cores with the week and the API load: scaling runs if it fits in what is left
    ap.add_argument("--budget", type=float, default=1500.0, help="seconds for the whole run")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds per command")
    ap.add_argument("--work", type=Path, default=BENCH / "work", help="scratch folder")
    ap.add_argument("--output", type=Path, default=BENCH / "RESULTS.md")
    ap.add_argument("--keep", action="store_true", help="keep repositories and copies")
    args = ap.parse_args(argv)
    args.size = args.size or ("256M" if args.quick else "1G")
    args.scale_size = args.scale_size or ("1G" if args.quick else "4G")
    args.api_seconds = args.api_seconds or (15.0 if args.quick else 60.0)
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; return the exit status (0 even when targets are missed)."""
    args = parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    settings = Settings(
        project=PROJECT,
        work=args.work.resolve(),
        size=args.size,
        scale_size=args.scale_size,
        seed=args.seed,
        timeout=args.timeout,
        budget=args.budget,
        s3=args.s3,
        scaling=args.scaling,
        million=args.million,
        api_seconds=args.api_seconds if args.api else 0.0,
    )
    results = Results()
    sc = Scenarios(settings, results)
    print(f"bench: corpus {args.size}, scaling {args.scale_size}, work {settings.work}", flush=True)
    only = set(args.only.split(",")) if args.only else None
    try:
        run_phases(sc, results, settings, only)
    except KeyboardInterrupt:
        results.facts.setdefault("notes", []).append("Interrupted: the results are partial.")
    finally:
        if not args.keep:
            sc.cleanup()
        write_outputs(results, settings, args)
    return 0


def run_phases(
    sc: Scenarios, results: Results, settings: Settings, only: set[str] | None = None
) -> None:
    """Given the scenarios, run each phase (or those in ``only``); a failing phase is noted
    and the next one runs."""
    phases: list[tuple[str, Callable[[], None]]] = [
        ("prepare", sc.prepare),
        ("references", sc.references),
        ("restic-local", sc.restic_local_rows),
        ("backapp-local", sc.backapp_local_rows),
        ("incremental", sc.incremental_rows),
        ("week", sc.week_rows),
        ("resume", sc.resume_rows),
    ]
    if settings.s3:
        phases.append(("s3", sc.s3_rows))
    if settings.api_seconds:
        phases.append(("api", lambda: api_rows(sc, settings.api_seconds)))
    if settings.scaling:
        phases.append(("scaling", lambda: _within_budget(sc, "scaling", _scaling_cost(sc))))
    if settings.million:
        phases.append(("million", lambda: million_rows(sc, settings.million)))
    for name, fn in phases:
        if only is not None and name not in only:
            continue
        results.facts.setdefault("phase_started", {})[name] = results.elapsed()
        print(f"[{results.elapsed():6.0f}s] phase {name}", flush=True)
        try:
            fn()
        except Exception as exc:
            results.facts.setdefault("phase_errors", {})[name] = f"{type(exc).__name__}: {exc}"
            print(f"phase {name} failed: {exc}", flush=True)
            if name == "prepare":
                return


def _scaling_cost(sc: Scenarios) -> float:
    full = sc.r.get("ba_full_zstd")
    per_run = full.wall if full else 60.0
    missing = not (sc.s.work / f"corpus-{sc.s.scale_size}-s{sc.s.seed}.done").exists()
    gib = _gib(sc.s.scale_size)
    return per_run * 5 + (CORPUS_SECONDS_PER_GIB * gib if missing else 0) + 5 * gib


def _within_budget(sc: Scenarios, name: str, cost: float) -> None:
    left = sc.s.budget - sc.r.elapsed()
    if cost > left:
        note = f"skipped: needs ~{cost:.0f} s, {left:.0f} s left of the {sc.s.budget:.0f} s budget"
        sc.r.facts[f"{name}_note"] = note
        return
    scaling_rows(sc)


def _gib(size: str) -> float:
    unit = {"K": 2**-20, "M": 2**-10, "G": 1.0}.get(size[-1:].upper(), 2**-30)
    return float(size.rstrip("KMGkmg") or 0) * unit


def write_outputs(results: Results, settings: Settings, args: argparse.Namespace) -> None:
    """Given the results, write RESULTS.md and a raw results.json in the work folder."""
    header = machine_header(results, settings, args)
    args.output.write_text(render(results, header), encoding="utf-8")
    raw = {
        "header": header,
        "facts": results.facts,
        "rows": {k: asdict(r) for k, r in results.rows.items()},
    }
    (settings.work / "results.json").write_text(
        json.dumps(raw, indent=2, default=str), encoding="utf-8"
    )
    print(f"bench: wrote {args.output} after {header['duration']}", flush=True)


def machine_header(
    results: Results, settings: Settings, args: argparse.Namespace
) -> dict[str, Any]:
    """Given the run, return date, machine, tool versions and mode for the report."""
    venv_python = str(PROJECT / ".venv" / "bin" / "python")
    elapsed = results.elapsed()
    duration = _minutes(elapsed)
    mode = "quick (--quick)" if args.quick else "default"
    million_started = results.facts.get("phase_started", {}).get("million")
    if settings.million:
        mode += f", plus the optional {settings.million:,}-file scenario (--million)"
        if million_started is not None:
            duration += f" ({_minutes(million_started)} without the --million scenario)"
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "duration": duration,
        "mode": mode,
        "uname": _uname(),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory": _memory(),
        "size": settings.size,
        "seed": settings.seed,
        "versions": {
            "BackApp": tool_version([str(PROJECT / ".venv" / "bin" / "backapp"), "--version"]),
            "Python": tool_version([venv_python, "--version"]),
            "restic": tool_version(["restic", "version"]),
            "tar": tool_version(["tar", "--version"]),
            "gzip": tool_version(["gzip", "--version"]),
            "pigz": tool_version(["pigz", "--version"]),
            "zstd": tool_version(["zstd", "--version"]),
            "openssl": tool_version(["openssl", "version"]),
            "moto": tool_version([venv_python, "-c", "import moto; print(moto.__version__)"]),
        },
    }


def _minutes(seconds: float) -> str:
    return f"{int(seconds // 60)} min {seconds % 60:.0f} s"


def _uname() -> str:
    try:
        return subprocess.run(
            ["uname", "-a"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return " ".join(platform.uname())


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory() -> str:
    try:
        for line in Path("/proc/meminfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 2**20:.1f} GiB"
    except OSError:
        pass
    return "unknown"


if __name__ == "__main__":
    sys.exit(main())
