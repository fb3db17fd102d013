"""Statistics for the dashboard and ``GET /api/backups/stats``."""

from __future__ import annotations

from typing import Any

from backapp.db import Session
from backapp.db.repositories import alerts as alert_repo
from backapp.db.repositories import configs as config_repo
from backapp.db.repositories import runs as run_repo
from backapp.services import runs as run_service


def compute(session: Session) -> dict[str, Any]:
    """Return totals, success rate, bytes and the last run per config and overall."""
    total_configs, active_configs = config_repo.counts(session)
    totals = run_repo.totals(session)
    finished = totals["completed"] + totals["failed"]
    last_runs = run_repo.last_runs_per_config(session)
    last_json = run_service.many_to_json(session, last_runs)
    overall = max(last_json, key=lambda r: r["queuedAt"] or "", default=None)
    configs = config_repo.list_configs(session)
    upcoming = [c.next_run_at for c in configs if c.enabled and c.next_run_at]
    return {
        "totalConfigs": total_configs,
        "activeConfigs": active_configs,
        "totalBackups": totals["runs"],
        "completedBackups": totals["completed"],
        "failedBackups": totals["failed"],
        "cancelledBackups": totals["cancelled"],
        "skippedBackups": totals["skipped"],
        "activeRuns": totals["active"],
        "successRate": round(totals["completed"] / finished * 100, 1) if finished else None,
        "totalBytesStored": totals["stored"],
        "bytesTransferred": totals["transferred"],
        "openAlerts": alert_repo.count_open(session),
        "lastRun": overall,
        "lastRunPerConfig": {r["configId"]: r for r in last_json},
        "nextRunAt": min(upcoming).isoformat() if upcoming else None,
    }
