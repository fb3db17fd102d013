"""Prometheus metrics, computed from the database at each scrape.

A custom collector reads the runs, configs and queue when ``/metrics`` is scraped, so
the numbers are the same whichever process (``serve``, ``web``) answers, and nothing is
counted in memory that a restart would lose. Series are labelled by ``config`` (the
config's folder name, fixed at creation) and ``config_name`` (its current name); runs
of deleted configs are left out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from backapp import __version__
from backapp.db import Session, utcnow
from backapp.db.repositories import alerts as alert_repo
from backapp.db.repositories import metrics as repo
from backapp.domain import runs as run_states
from backapp.services.context import AppContext

CONTENT_TYPE = CONTENT_TYPE_LATEST
_CONFIG = ["config", "config_name"]


@dataclass(frozen=True)
class Snapshot:
    """Everything one scrape reports, read in one transaction."""

    now: datetime
    configs: dict[str, repo.ConfigRow]
    groups: list[repo.RunGroup]
    last_success: dict[str, datetime]
    last_backups: list[repo.LastBackup]
    active: dict[tuple[str, str], int]
    heartbeats: dict[str, datetime]  # per worker: the newest heartbeat of its running runs
    workers: list[repo.WorkerBeat]  # every scheduler's own heartbeat, idle or busy
    open_alerts: int


def read_snapshot(session: Session, now: datetime) -> Snapshot:
    """Given a session and the time, return what the metrics report."""
    return Snapshot(
        now=now,
        configs={c.id: c for c in repo.configs(session)},
        groups=repo.finished_run_groups(session),
        last_success=repo.last_success_per_config(session),
        last_backups=repo.last_backup_per_config(session),
        active=repo.active_counts(session),
        heartbeats=repo.newest_heartbeat_per_worker(session),
        workers=repo.worker_heartbeats(session),
        open_alerts=alert_repo.count_open(session),
    )


class DatabaseCollector(Collector):
    """Collects BackApp's metrics from the database whenever the registry is scraped."""

    def __init__(self, ctx: AppContext, clock: Callable[[], datetime] = utcnow) -> None:
        self.ctx = ctx
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        """Read the database and yield every metric family. Raise DatabaseError."""
        with self.ctx.db.session(read_only=True) as session:
            snapshot = read_snapshot(session, self.clock())
        yield from families(snapshot)


def render(ctx: AppContext) -> bytes:
    """Given the app context, return the metrics in Prometheus' text format.
    Raise DatabaseError."""
    registry = CollectorRegistry(auto_describe=False)  # no describe: no extra read
    registry.register(DatabaseCollector(ctx))
    return generate_latest(registry)


def families(s: Snapshot) -> Iterator[Metric]:
    """Given a snapshot, yield the metric families it makes."""
    yield from _run_families(s)
    yield from _config_families(s)
    yield from _process_families(s)


def _labels(s: Snapshot, config_id: str) -> list[str] | None:
    config = s.configs.get(config_id)
    return None if config is None else [config.slug, config.name]


def _run_families(s: Snapshot) -> Iterator[Metric]:
    runs = CounterMetricFamily(
        "backapp_runs",
        "Finished runs (backup, restore, verify) by config, kind and status.",
        labels=[*_CONFIG, "kind", "status"],
    )
    durations = HistogramMetricFamily(
        "backapp_run_duration_seconds",
        "How long finished runs took, by config, kind and status.",
        labels=[*_CONFIG, "kind", "status"],
    )
    backup_sums: dict[str, tuple[str, Callable[[repo.RunGroup], int]]] = {
        "read": ("Bytes of source files read by backup runs.", lambda g: g.bytes_read),
        "stored": (
            "Bytes stored (compressed, encrypted) by backup runs.",
            lambda g: g.bytes_stored,
        ),
        "uploaded": (
            "Bytes sent to the destination by backup runs.",
            lambda g: g.bytes_transferred,
        ),
    }
    byte_families = {
        key: CounterMetricFamily(f"backapp_backup_{key}_bytes", doc, labels=_CONFIG)
        for key, (doc, _) in backup_sums.items()
    }
    files = CounterMetricFamily(
        "backapp_backup_files", "Files backed up by backup runs.", labels=_CONFIG
    )
    skipped = CounterMetricFamily(
        "backapp_backup_files_skipped",
        "Files backup runs skipped (unreadable or vanished).",
        labels=_CONFIG,
    )
    per_config: dict[str, list[repo.RunGroup]] = {}
    for group in s.groups:
        labels = _labels(s, group.config_id)
        if labels is None:
            continue
        runs.add_metric([*labels, group.kind, group.status], group.count)
        if group.timed:
            buckets = [
                (_bound(b), float(n))
                for b, n in zip(repo.DURATION_BUCKETS, group.duration_buckets, strict=True)
            ]
            buckets.append(("+Inf", float(group.timed)))
            durations.add_metric([*labels, group.kind, group.status], buckets, group.duration_sum)
        if group.kind == "backup":
            per_config.setdefault(group.config_id, []).append(group)
    for config_id, groups in per_config.items():
        labels = _labels(s, config_id) or []
        for key, (_, value) in backup_sums.items():
            byte_families[key].add_metric(labels, sum(value(g) for g in groups))
        files.add_metric(labels, sum(g.files for g in groups))
        skipped.add_metric(labels, sum(g.files_skipped for g in groups))
    yield runs
    yield durations
    yield from byte_families.values()
    yield files
    yield skipped


def _bound(bound: float) -> str:
    return str(float(bound))


def _config_families(s: Snapshot) -> Iterator[Metric]:
    enabled = GaugeMetricFamily(
        "backapp_config_enabled", "1 if the config is enabled (scheduled), else 0.", labels=_CONFIG
    )
    created = GaugeMetricFamily(
        "backapp_config_created_timestamp_seconds",
        "When the config was created (Unix time).",
        labels=_CONFIG,
    )
    overdue = GaugeMetricFamily(
        "backapp_schedule_overdue_seconds",
        "How long an enabled config's next scheduled run is overdue (a running scheduler "
        "keeps this near 0).",
        labels=_CONFIG,
    )
    for config in s.configs.values():
        names = [config.slug, config.name]
        enabled.add_metric(names, 1.0 if config.enabled else 0.0)
        created.add_metric(names, config.created_at.timestamp())
        if config.enabled and config.next_run_at is not None:
            overdue.add_metric(names, max(0.0, (s.now - config.next_run_at).total_seconds()))
    success = GaugeMetricFamily(
        "backapp_last_success_timestamp_seconds",
        "When the config's newest completed backup finished (Unix time).",
        labels=_CONFIG,
    )
    for config_id, at in s.last_success.items():
        labels = _labels(s, config_id)
        if labels is not None:
            success.add_metric(labels, at.timestamp())
    last = {
        "failed": "1 if the config's newest finished backup run failed, else 0.",
        "duration_seconds": "How long the config's newest finished backup run took.",
        "read_bytes": "Bytes of source files the config's newest finished backup run read.",
        "stored_bytes": "Bytes the config's newest finished backup run stored.",
        "files": "Files the config's newest finished backup run backed up.",
    }
    last_families = {
        key: GaugeMetricFamily(f"backapp_last_backup_{key}", doc, labels=_CONFIG)
        for key, doc in last.items()
    }
    for row in s.last_backups:
        labels = _labels(s, row.config_id)
        if labels is None:
            continue
        last_families["failed"].add_metric(labels, 1.0 if row.status == "failed" else 0.0)
        if row.duration_seconds is not None:
            last_families["duration_seconds"].add_metric(labels, row.duration_seconds)
        last_families["read_bytes"].add_metric(labels, row.bytes_read)
        last_families["stored_bytes"].add_metric(labels, row.bytes_stored)
        last_families["files"].add_metric(labels, row.files)
    yield enabled
    yield created
    yield overdue
    yield success
    yield from last_families.values()


def _process_families(s: Snapshot) -> Iterator[Metric]:
    queue = GaugeMetricFamily(
        "backapp_queue_depth", "Runs waiting for a worker, by kind.", labels=["kind"]
    )
    running = GaugeMetricFamily(
        "backapp_runs_running", "Runs a worker is executing, by kind.", labels=["kind"]
    )
    for kind in run_states.RUN_KINDS:
        queue.add_metric([kind], s.active.get((kind, "queued"), 0))
        running.add_metric([kind], s.active.get((kind, "running"), 0))
    heartbeat = GaugeMetricFamily(
        "backapp_scheduler_heartbeat_age_seconds",
        "Seconds since a scheduler/worker process last recorded its own heartbeat, idle or "
        "busy (every 5 s when alive; removed on a clean stop).",
        labels=["worker", "host"],
    )
    for beat in s.workers:
        age = max(0.0, (s.now - beat.seen_at).total_seconds())
        heartbeat.add_metric([beat.worker_id, beat.host], age)
    run_heartbeat = GaugeMetricFamily(
        "backapp_run_heartbeat_age_seconds",
        "Seconds since a worker last heart-beat the lease of its running runs, per worker "
        "(only while it runs some; every 2 s when alive).",
        labels=["worker"],
    )
    for worker, at in sorted(s.heartbeats.items()):
        run_heartbeat.add_metric([worker], max(0.0, (s.now - at).total_seconds()))
    alerts = GaugeMetricFamily("backapp_alerts_open", "Alerts not acknowledged yet.")
    alerts.add_metric([], s.open_alerts)
    info = GaugeMetricFamily("backapp_build_info", "BackApp's version.", labels=["version"])
    info.add_metric([__version__], 1.0)
    yield queue
    yield running
    yield heartbeat
    yield run_heartbeat
    yield alerts
    yield info
