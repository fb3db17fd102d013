"""Rows of the results table, how a row is measured safely, and the targets."""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from measure import Measurement

RSS_LIMIT_MIB = 100.0
SCALING_RSS_GROWTH_LIMIT = 0.10
_MIN_STORED_FOR_RATIO = 2**20
NOISY_CORES = 0.15  # outside load that makes a row's wall time suspect
RETRY_LOAD = 0.3  # outside load that makes a repeatable row worth a second attempt
RETRY_BUDGET = 150.0  # seconds of second attempts per run
API_P99_LIMIT_MS = 300.0


class NotAvailableError(Exception):
    """The scenario cannot run here (a command does not exist yet, no disk space, …)."""


@dataclass
class Row:
    """One line of the results table: a measured command, or why it has no figures."""

    key: str
    label: str
    measurement: Measurement | None = None
    error: str | None = None
    skipped: str | None = None
    notes: list[str] = field(default_factory=list)
    ref: str | None = None
    target: float | None = None  # on wall time, as a multiple of the reference's
    stored_target: float | None = None  # on bytes stored, as a multiple of the reference's

    @property
    def ok(self) -> bool:
        """Return whether the row has figures."""
        return self.measurement is not None


@dataclass
class Target:
    """One goal of the checklist and whether this run met it."""

    text: str
    met: bool | None  # None: could not be judged (a row failed or was skipped)
    detail: str


class Results:
    """Given nothing, collect rows in measuring order; each scenario's failure stays local."""

    def __init__(self) -> None:
        self.rows: dict[str, Row] = {}
        self.started = time.monotonic()
        self.facts: dict[str, Any] = {}
        self.retry_spent = 0.0

    def elapsed(self) -> float:
        """Return seconds since the run started."""
        return time.monotonic() - self.started

    def measure(
        self,
        key: str,
        label: str,
        fn: Callable[[], Measurement],
        *,
        ref: str | None = None,
        target: float | None = None,
        stored_target: float | None = None,
        repeatable: bool = False,
    ) -> Row:
        """Given a key, a label and a function that measures, run it and record the row.

        Any exception becomes the row's error text instead of stopping the run. A
        repeatable measurement disturbed by other processes is taken once more, within
        RETRY_BUDGET seconds per run, and the attempt with less outside load is kept.
        """
        row = Row(key=key, label=label, ref=ref, target=target, stored_target=stored_target)
        self.rows[key] = row
        try:
            row.measurement = fn()
            if repeatable and self._worth_retry(row.measurement):
                print(f"  noisy ({row.measurement.other_load:.1f} cores); once more", flush=True)
                again = fn()
                self.retry_spent += again.wall
                first_load = row.measurement.other_load
                if again.other_load < first_load:
                    row.measurement = again
                row.notes.append(
                    f"2 attempts (other load {first_load:.1f} / {again.other_load:.1f} cores); "
                    "kept the quieter"
                )
        except NotAvailableError as exc:
            row.skipped = str(exc)
        except Exception as exc:
            row.error = f"{type(exc).__name__}: {exc}"
            traceback.print_exc()
        self._log(row)
        return row

    def _worth_retry(self, m: Measurement) -> bool:
        return m.other_load >= RETRY_LOAD and self.retry_spent + m.wall <= RETRY_BUDGET

    def skip(self, key: str, label: str, reason: str, *, ref: str | None = None) -> Row:
        """Given a key, a label and a reason, record a row that was not run."""
        row = Row(key=key, label=label, skipped=reason, ref=ref)
        self.rows[key] = row
        self._log(row)
        return row

    def get(self, key: str) -> Measurement | None:
        """Given a row key, return its measurement if it has one."""
        row = self.rows.get(key)
        return row.measurement if row else None

    def ratio(self, key: str, attr: str = "wall") -> float | None:
        """Given a row key, return its figure divided by its reference's, if both exist."""
        row = self.rows.get(key)
        if row is None or row.ref is None or row.measurement is None:
            return None
        ref = self.get(row.ref)
        if ref is None:
            return None
        mine, theirs = _figure(row.measurement, attr), _figure(ref, attr)
        if mine is None or not theirs or (attr == "stored" and theirs < _MIN_STORED_FOR_RATIO):
            return None  # a ratio to a few hundred bytes says nothing
        return mine / theirs

    def _log(self, row: Row) -> None:
        m = row.measurement
        if m is not None:
            stored = "" if m.stored is None else f", stored {m.stored / 2**20:.1f} MiB"
            text = f"wall {m.wall:.2f} s, CPU {m.cpu:.2f} s, RSS {m.rss_mib:.0f} MiB{stored}"
            if m.other_load >= NOISY_CORES:
                text += f" (other load {m.other_load:.1f} cores)"
        else:
            text = f"ERROR {row.error}" if row.error else f"skipped: {row.skipped}"
        print(f"[{self.elapsed():6.0f}s] {row.label}: {text}", flush=True)


def _figure(m: Measurement, attr: str) -> float | None:
    if attr == "stored":
        return None if m.stored is None else float(m.stored)
    if attr == "rss":
        return m.rss_mib
    return float(getattr(m, attr))


def evaluate_targets(results: Results) -> list[Target]:
    """Given the results, return the checklist of targets with met / missed / unknown."""
    targets = []
    for row in results.rows.values():
        ref = results.rows.get(row.ref or "")
        ref_label = ref.label if ref else row.ref
        why = row.error or row.skipped or (ref and (ref.error or ref.skipped)) or "no figures"
        if row.target is not None:
            text = f"{row.label}: wall ≤ {row.target:g}× {ref_label}"
            ratio = results.ratio(row.key)
            if ratio is None:
                targets.append(Target(text, None, f"not judged ({why})"))
            else:
                detail = f"{ratio:.2f}×" + _noise_warning(row, results.get(row.ref or ""))
                targets.append(Target(text, ratio <= row.target, detail))
        if row.stored_target is not None:
            text = f"{row.label}: stored ≤ {row.stored_target:g}× {ref_label}"
            ratio = results.ratio(row.key, "stored")
            if ratio is None:
                targets.append(Target(text, None, f"not judged ({why})"))
            else:
                detail = f"{ratio:.3g}× ({_stored_mib(row)} vs {_stored_mib(ref)} MiB)"
                targets.append(Target(text, ratio <= row.stored_target, detail))
    for key in results.facts.get("full_backup_rows", []):
        row = results.rows.get(key)
        if row is None:
            continue
        text = f"{row.label}: peak RSS ≤ {RSS_LIMIT_MIB:g} MiB"
        if row.measurement is None:
            targets.append(Target(text, None, "not judged (no figures)"))
        else:
            rss = row.measurement.rss_mib
            targets.append(Target(text, rss <= RSS_LIMIT_MIB, f"{rss:.0f} MiB"))
    for key, check in results.facts.get("restore_checks", {}).items():
        if not key.startswith("ba_"):
            continue  # the reference's own restores are checked too, shown in the table
        label = results.rows[key].label if key in results.rows else key
        targets.append(Target(f"{label}: restored tree equals the source", check[0], check[1]))
    targets += _api_targets(results)
    growth = results.facts.get("scaling_rss_growth")
    text = f"Scaling ×1 → ×4: peak RSS growth < {SCALING_RSS_GROWTH_LIMIT:.0%}"
    if growth is None:
        targets.append(Target(text, None, results.facts.get("scaling_note", "not run")))
    else:
        targets.append(Target(text, growth < SCALING_RSS_GROWTH_LIMIT, f"{growth:+.1%}"))
    return targets


def _stored_mib(row: Row | None) -> str:
    m = row.measurement if row else None
    return "?" if m is None or m.stored is None else f"{m.stored / 2**20:.1f}"


def _api_targets(results: Results) -> list[Target]:
    targets = []
    for load in results.facts.get("api_load", {}).values():
        label = load["label"]
        errors_text = f"{label}: zero errors"
        p99_text = f"{label}: p99 ≤ {API_P99_LIMIT_MS:g} ms"
        if "error" in load:
            why = f"not judged ({load['error']})"
            targets += [Target(errors_text, None, why), Target(p99_text, None, why)]
            continue
        noise = load.get("other_load", 0.0)
        warning = f" ⚠ other processes used ~{noise:.1f} cores meanwhile" if noise >= 0.5 else ""
        samples = "; ".join(load.get("error_samples", []))
        errors = f"{load['errors']} of {load['requests']:,} requests" + (
            f" ({samples})" if samples else ""
        )
        targets.append(Target(errors_text, load["errors"] == 0, errors))
        p99 = load["p99"]
        targets.append(Target(p99_text, p99 <= API_P99_LIMIT_MS, f"{p99:.0f} ms{warning}"))
    return targets


def _noise_warning(row: Row, ref: Measurement | None) -> str:
    mine = row.measurement.other_load if row.measurement else 0.0
    theirs = ref.other_load if ref else 0.0
    if max(mine, theirs) < NOISY_CORES:
        return ""
    if theirs > mine:
        return f" ⚠ the reference ran with {theirs:.1f} cores of outside load: ratio flattered"
    return f" ⚠ BackApp ran with {mine:.1f} cores of outside load: ratio inflated"
