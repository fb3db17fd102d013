"""The scheduler process: fire schedules, claim and execute runs, recover lost ones.

``backapp scheduler`` runs this alone; ``backapp serve`` runs it in a thread
next to the web server. Several may run against one PostgreSQL.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from backapp import __version__
from backapp.db import DatabaseError, Run, utcnow
from backapp.db.repositories import workers as worker_repo
from backapp.domain.config import BackupConfig
from backapp.engine.backup import BackupResult
from backapp.notify import TransportError, check_url, mask_url, split_urls
from backapp.scheduler.worker import Worker
from backapp.services import notifications, overdue, retention, scheduling
from backapp.services.context import AppContext
from backapp.services.execution import RunExecutor

logger = logging.getLogger(__name__)

HEARTBEAT_INTERVAL = 2.0
NOTIFY_INTERVAL = 5.0  # the sender looks at least this often (a tick wakes it sooner)
OVERDUE_INTERVAL = 30.0  # how often the missed-backup alarm (options.maxAgeHours) looks
TIDY_INTERVAL = 300.0  # how often the notification outbox is tidied
ENV_NOTIFY_GRACE = 600.0  # BACKAPP_NOTIFY_URLS hear of events this long before the start
FORGET_WORKERS_AFTER = timedelta(days=7)  # a scheduler's row, unseen this long, is removed
FORGET_INTERVAL = 3600.0  # how often a scheduler removes the rows of long-gone ones


class SchedulerService:
    """Ticks: fire due configs, fail runs of lost workers, claim queued runs."""

    def __init__(
        self,
        ctx: AppContext,
        *,
        worker_id: str | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.ctx = ctx
        self.clock = clock
        self.executor = RunExecutor(ctx, after_backup=self._after_backup)
        self.worker = Worker(
            ctx,
            self.executor,
            worker_id=worker_id,
            max_concurrent=ctx.settings.max_concurrent_runs,
        )
        self._db_since: float | None = time.monotonic()  # the database answered since then
        self._notify_due = threading.Event()  # set by a tick: the sender thread looks
        # BACKAPP_NOTIFY_URLS is told of what happens from shortly before this start on (a
        # restart loses nothing), never of older events; newer targets count from when they
        # were added. Events nobody was due are settled as they come, so none pile up.
        self.notify_since = clock() - timedelta(seconds=ENV_NOTIFY_GRACE)
        self._overdue_at = 0.0  # monotonic time of the next missed-backup check
        self._present_at = 0.0  # monotonic time of the next heartbeat of this process
        self._forget_at = 0.0  # monotonic time of the next removal of long-gone workers
        self._presence_failing = False
        self.presence = worker_repo.Presence(
            worker_id=self.worker.worker_id,
            host=socket.gethostname(),
            pid=os.getpid(),
            version=__version__,
            started_at=clock(),
        )
        for url in split_urls(ctx.settings.notify_urls):
            try:
                check_url(url)
            except TransportError as exc:
                logger.error("BACKAPP_NOTIFY_URLS: %s: %s", mask_url(url), exc)

    def _after_backup(self, run: Run, config: BackupConfig, result: BackupResult) -> dict[str, Any]:
        return retention.apply(
            self.ctx, self.ctx.db.session, run.config_id, config, result.info.config_slug
        )

    def tick(self) -> None:
        """Do one round of scheduling work; errors are logged, never raised."""
        now = self.clock()
        for step in (
            lambda: scheduling.fire_due(self.ctx, now),
            self._expire,
            self.worker.poll,
            self._check_overdue,
            self._notify,
        ):
            try:
                step()
            except DatabaseError as exc:  # an outage: wait for the database, quietly
                if self._db_since is not None:
                    logger.warning("database unavailable: %s", exc)
                self._db_since = None
                return
            except Exception:  # a bug or a hiccup must not stop the scheduler
                logger.exception("scheduler step failed; retrying on the next tick")
        if self._db_since is None:
            self._db_since = time.monotonic()

    def _expire(self) -> None:
        # After an outage every heartbeat looks old: give live workers one lease to beat
        # again before calling any of them lost (and never this worker's own runs).
        since = self._db_since
        if since is None or time.monotonic() - since < self.ctx.settings.run_lease:
            return
        alive = frozenset(self.worker.heartbeat.active)
        scheduling.expire_lost_runs(self.ctx, self.clock(), alive)

    def _check_overdue(self) -> None:
        if time.monotonic() < self._overdue_at:
            return
        self._overdue_at = time.monotonic() + OVERDUE_INTERVAL
        overdue.check_overdue(self.ctx, self.clock())

    def _notify(self) -> None:
        # Sent on a thread of their own: a slow or hanging webhook never delays the next
        # fire or claim (each delivery has its own timeout; one sender at a time).
        self._notify_due.set()

    def _send_notifications(self, done: threading.Event) -> None:
        tidy_at = 0.0
        while not done.is_set():
            self._notify_due.wait(NOTIFY_INTERVAL)
            self._notify_due.clear()
            if done.is_set():
                continue
            try:
                if time.monotonic() >= tidy_at:
                    notifications.tidy(self.ctx)
                    tidy_at = time.monotonic() + TIDY_INTERVAL
                notifications.dispatch(self.ctx, self.notify_since)
            except DatabaseError as exc:
                logger.info("notifications wait for the database: %s", exc)
            except Exception:  # a bug or a hiccup must not stop the notifications
                logger.exception("sending notifications failed; trying again later")

    def run(self, stop: threading.Event) -> None:
        """Tick until ``stop`` is set, then shut down gracefully."""
        logger.info(
            "scheduler %s started (database %s, up to %d concurrent runs)",
            self.worker.worker_id,
            self.ctx.db.description,
            self.worker.max_concurrent,
        )
        beating = threading.Event()
        beater = threading.Thread(
            target=self._beat, args=(beating,), name="backapp-heartbeat", daemon=True
        )
        beater.start()
        self.beat_presence(force=True)  # listed from the start, before the first tick
        sender = threading.Thread(
            target=self._send_notifications, args=(beating,), name="backapp-notify", daemon=True
        )
        sender.start()
        try:
            while not stop.is_set():
                self.tick()
                self.beat_presence()
                stop.wait(self.ctx.settings.tick_interval)
            self._drain()
        finally:
            beating.set()
            self._notify_due.set()
            beater.join(timeout=5)
            sender.join(timeout=5)
        self._leave()

    def beat_presence(self, *, force: bool = False) -> None:
        """Record this process's own heartbeat (idle or busy) when one is due, in a short
        transaction of its own (every few seconds, not every tick: SQLite's write lock is
        shared with the web process). Errors are logged, never raised."""
        if not force and time.monotonic() < self._present_at:
            return
        self._present_at = time.monotonic() + self.ctx.settings.scheduler_heartbeat
        try:
            with self.ctx.db.session() as session:
                worker_repo.beat(session, self.presence, self.clock())
            if time.monotonic() >= self._forget_at:
                self._forget_at = time.monotonic() + FORGET_INTERVAL
                with self.ctx.db.session() as session:
                    gone = worker_repo.forget_unseen(session, self.clock() - FORGET_WORKERS_AFTER)
                if gone:
                    logger.info("forgot %d scheduler(s) not seen for 7 days", gone)
        except DatabaseError as exc:  # an outage: the next beat tries again
            if not self._presence_failing:
                logger.warning("scheduler heartbeat not recorded: %s", exc)
            self._presence_failing = True
            return
        except Exception:  # a bug or a hiccup must not stop the scheduler
            logger.exception("scheduler heartbeat failed; trying again later")
            self._presence_failing = True
            return
        if self._presence_failing:
            logger.info("scheduler heartbeat recorded again")
        self._presence_failing = False

    def _leave(self) -> None:
        # A clean stop: this scheduler is no longer listed (a killed one ages instead).
        try:
            with self.ctx.db.session() as session:
                worker_repo.remove(session, self.worker.worker_id)
        except Exception as exc:  # the row ages and is forgotten later; the stop goes on
            logger.warning(
                "scheduler %s could not remove its heartbeat: %s", self.worker.worker_id, exc
            )

    def _beat(self, done: threading.Event) -> None:
        while not done.wait(HEARTBEAT_INTERVAL):
            try:
                self.worker.heartbeat.beat()
            except Exception:
                logger.exception("heartbeat failed")

    def _drain(self) -> None:
        """Stop claiming; give running backups the grace period, then cancel them."""
        self.worker.claiming = False
        busy = self.worker.busy
        if busy:
            grace = self.ctx.settings.shutdown_grace
            logger.warning("stopping: waiting up to %.0fs for %d running backup(s)", grace, busy)
            if not self.worker.wait(timeout=grace):
                logger.warning("grace period over: cancelling running backups")
                self.worker.cancel_all("cancelled: the scheduler was shut down")
                self.worker.wait(timeout=60)
        logger.info("scheduler %s stopped", self.worker.worker_id)

    def shutdown(self) -> None:
        """Release the worker's threads."""
        self.worker.shutdown()
