"""Statistics for the dashboard and ``GET /api/backups/stats``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from backapp.db import Session
from backapp.db.repositories import alerts as alert_repo
from backapp.db.repositories import configs as config_repo
from backapp.db.repositories import runs as run_repo
from backapp.services import runs as run_service
from backapp.services.runs import RunView


@dataclass(frozen=True)
class Stats:
    """Totals over every backup run, the last run per config and overall, the next one."""

    total_configs: int
    active_configs: int
    total_backups: int
    completed_backups: int
    failed_backups: int
    cancelled_backups: int
    skipped_backups: int
    active_runs: int
    success_rate: float | None  # percent of finished runs that completed, one decimal
    total_bytes_stored: int
    bytes_transferred: int
    open_alerts: int
    last_run: RunView | None
    last_run_per_config: dict[str, RunView]
    next_run_at: datetime | None


def compute(session: Session) -> Stats:
    """Return totals, success rate, bytes and the last run per config and overall."""
    total_configs, active_configs = config_repo.counts(session)
    totals = run_repo.totals(session)
    finished = totals["completed"] + totals["failed"]
    last_runs = run_service.views(session, run_repo.last_runs_per_config(session))
    overall = max(last_runs, key=lambda v: v.run.queued_at, default=None)
    configs = config_repo.list_configs(session)
    upcoming = [c.next_run_at for c in configs if c.enabled and c.next_run_at]
    return Stats(
        total_configs=total_configs,
        active_configs=active_configs,
        total_backups=totals["runs"],
        completed_backups=totals["completed"],
        failed_backups=totals["failed"],
        cancelled_backups=totals["cancelled"],
        skipped_backups=totals["skipped"],
        active_runs=totals["active"],
        success_rate=round(totals["completed"] / finished * 100, 1) if finished else None,
        total_bytes_stored=totals["stored"],
        bytes_transferred=totals["transferred"],
        open_alerts=alert_repo.count_open(session),
        last_run=overall,
        last_run_per_config={v.run.config_id: v for v in last_runs},
        next_run_at=min(upcoming) if upcoming else None,
    )
