"""The missed-backup alarm: a config with ``options.maxAgeHours`` whose newest completed
backup is older than that (or that has none since it was created) raises one "missed"
alert, which its next completed backup resolves. Built in: no outside service watches.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from backapp.db import utcnow
from backapp.db.repositories import configs as config_repo
from backapp.db.repositories import runs as run_repo
from backapp.services import alerts
from backapp.services import configs as config_service
from backapp.services.context import AppContext

logger = logging.getLogger(__name__)

KIND = "backup_overdue"


def check_overdue(ctx: AppContext, now: datetime | None = None) -> int:
    """Raise the "missed" alert of every enabled config whose newest completed backup is
    older than its ``options.maxAgeHours`` (once, until a backup completes); return how
    many were raised. Each decision is made on the locked config row, so several
    schedulers raise it once."""
    now = now or utcnow()
    with ctx.db.session() as session:
        watched = [
            c.id
            for c in config_repo.list_configs(session)
            if c.enabled and (c.document.get("options") or {}).get("maxAgeHours")
        ]
    raised = 0
    for config_id in watched:
        with ctx.db.session() as session:
            config = config_repo.get(session, config_id, for_update=True)
            if config is None or not config.enabled:
                continue
            hours = config_service.document_of(config).options.max_age_hours
            if hours is None or alerts.has_unresolved(session, config.id, KIND):
                continue
            last = run_repo.last_completed_at(session, config.id, "backup")
            if now - (last or config.created_at) < timedelta(hours=hours):
                continue
            since = (
                f"the newest completed at {last:%Y-%m-%d %H:%M:%S} UTC"
                if last
                else f"none since the config was created, {config.created_at:%Y-%m-%d %H:%M} UTC"
            )
            message = (
                f"No backup of '{config.name}' completed in the last {hours:g} h "
                f"(maxAgeHours): {since}"
            )
            alerts.raise_alert(
                session,
                KIND,
                message,
                config_id=config.id,
                config_name=config.name,
                run_kind="backup",
            )
            raised += 1
    return raised
