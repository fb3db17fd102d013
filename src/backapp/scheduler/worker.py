"""The worker: claims queued runs atomically and executes them on a few threads."""

from __future__ import annotations

import logging
import os
import socket
import threading
from concurrent.futures import Future, ThreadPoolExecutor

from backapp.db import utcnow
from backapp.db.repositories import runs as run_repo
from backapp.logcontext import log_context
from backapp.services.context import AppContext
from backapp.services.execution import ActiveRun, Heartbeat, RunExecutor

logger = logging.getLogger(__name__)


def default_worker_id() -> str:
    """Return an id naming this process: host and pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


class Worker:
    """Claims queued runs (at most ``max_concurrent`` at once) and executes them."""

    def __init__(
        self,
        ctx: AppContext,
        executor: RunExecutor,
        *,
        worker_id: str | None = None,
        max_concurrent: int = 1,
    ) -> None:
        self.ctx = ctx
        self.executor = executor
        self.worker_id = worker_id or default_worker_id()
        self.max_concurrent = max(1, max_concurrent)
        self.heartbeat = Heartbeat(ctx)
        self._pool = ThreadPoolExecutor(max_concurrent, thread_name_prefix="backapp-run")
        self._running: dict[str, Future[str]] = {}
        self._lock = threading.Lock()
        self.claiming = True

    @property
    def busy(self) -> int:
        """Return how many runs this worker is executing."""
        with self._lock:
            return len(self._running)

    def poll(self) -> int:
        """Claim as many queued runs as there is room for and start them; return how many."""
        if not self.claiming:
            return 0
        started = 0
        while self.busy < self.max_concurrent:
            claimed = self._claim_one()
            if claimed is None:
                break
            self._start(*claimed)
            started += 1
        return started

    def _claim_one(self) -> tuple[str, str | None] | None:
        """Claim the oldest queued run we can; return its id and config name (for logs)."""
        with self.ctx.db.session() as session:
            for run_id in run_repo.queued_ids(session):
                if run_repo.claim(session, run_id, self.worker_id, utcnow()):
                    logger.info("worker %s claimed run %s", self.worker_id, run_id)
                    run = run_repo.get(session, run_id)
                    return run_id, run.config_name if run is not None else None
        return None

    def _start(self, run_id: str, config_name: str | None = None) -> None:
        active = ActiveRun(run_id)
        self.heartbeat.add(active)

        def execute() -> str:
            try:
                with log_context(run_id=run_id, config=config_name, worker=self.worker_id):
                    return self.executor.execute(active)
            finally:
                self.heartbeat.remove(run_id)
                with self._lock:
                    self._running.pop(run_id, None)

        with self._lock:
            self._running[run_id] = self._pool.submit(execute)

    def cancel_all(self, reason: str) -> None:
        """Ask every run of this worker to stop."""
        with self.heartbeat.lock:
            actives = list(self.heartbeat.active.values())
        for active in actives:
            active.cancel.cancel(reason)

    def wait(self, timeout: float | None) -> bool:
        """Wait for running runs to end; return whether they all did within the timeout."""
        with self._lock:
            futures = list(self._running.values())
        done = True
        for future in futures:
            try:
                future.result(timeout=timeout)
            except TimeoutError:
                done = False
            except Exception:  # recorded by the executor already
                logger.debug("run ended with an error", exc_info=True)
        return done

    def shutdown(self) -> None:
        """Stop the thread pool (after runs ended)."""
        self._pool.shutdown(wait=True)
