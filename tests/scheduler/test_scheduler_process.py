"""`backapp scheduler` as a real process: on time, exactly once, crash-safe, graceful."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import boto3

from backapp.engine.format.layout import Repository
from backapp.services import alerts as alert_service
from backapp.storage.local import LocalStorage
from backapp.storage.s3 import S3Storage
from tests.scheduler.conftest import add_config, config_doc, get_config, runs_of, wait_for


def _source(tmp_path: Path, name: str = "src", size: int = 1000) -> Path:
    src = tmp_path / name
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "data.bin").write_bytes(os.urandom(size))
    (src / "note.txt").write_text("hello")
    return src


def test_every_few_seconds_schedule_produces_a_completed_backup_each_time(
    database_url: str, make_ctx, start_scheduler, tmp_path: Path
) -> None:
    ctx = make_ctx(database_url)
    config_id = add_config(ctx, config_doc(_source(tmp_path), tmp_path / "dest", "*/3 * * * * *"))
    proc = start_scheduler(database_url)
    runs = wait_for(
        lambda: (
            [r for r in runs_of(ctx, config_id) if r.status == "completed"][:3]
            if len([r for r in runs_of(ctx, config_id) if r.status == "completed"]) >= 3
            else None
        ),
        40,
        "three completed scheduled backups",
    )
    assert proc.terminate() == 0
    assert all(r.trigger == "scheduled" for r in runs)
    fires = [r.scheduled_for for r in runs]
    assert all(f is not None and f.second % 3 == 0 and f.microsecond == 0 for f in fires)
    assert len(set(fires)) == 3
    repo = Repository(LocalStorage(tmp_path / "dest"), "", get_config(ctx, config_id).slug)
    assert {r.backup_id for r in runs} <= set(repo.ids())
    assert "fired" in proc.output()


def test_three_schedulers_on_postgresql_fire_each_time_exactly_once(
    postgres_url: str, make_ctx, start_scheduler, tmp_path: Path
) -> None:
    database_url = postgres_url
    ctx = make_ctx(database_url)
    config_id = add_config(ctx, config_doc(_source(tmp_path), tmp_path / "dest", "*/2 * * * * *"))
    procs = [start_scheduler(database_url) for _ in range(3)]
    wait_for(
        lambda: len({r.scheduled_for for r in runs_of(ctx, config_id)}) >= 6,
        40,
        "six fire times",
    )
    for proc in procs:
        assert proc.terminate() == 0
    runs = runs_of(ctx, config_id)
    per_fire = Counter(r.scheduled_for for r in runs)
    assert per_fire and max(per_fire.values()) == 1, per_fire
    assert {r.status for r in runs} <= {"completed", "skipped", "cancelled"}
    workers = {r.worker_id for r in runs if r.worker_id}
    assert workers  # runs were claimed (by whichever scheduler got there first)


def test_config_created_changed_and_disabled_while_running_is_seen_within_seconds(
    database_url: str, make_ctx, start_scheduler, tmp_path: Path
) -> None:
    ctx = make_ctx(database_url)
    proc = start_scheduler(database_url)
    config_id = add_config(ctx, config_doc(_source(tmp_path), tmp_path / "dest", "0 0 1 1 *"))
    from backapp.services import configs as config_service

    with ctx.db.session() as session:
        config_service.update(session, config_id, {"schedule": {"cronExpression": "* * * * * *"}})
    wait_for(lambda: runs_of(ctx, config_id), 5, "a run within 5 s of the edit")
    with ctx.db.session() as session:
        config_service.update(session, config_id, {"enabled": False})
    wait_for(
        lambda: all(r.status not in ("queued", "running") for r in runs_of(ctx, config_id)),
        20,
        "the last run to end",
    )
    count = len(runs_of(ctx, config_id))
    import time

    time.sleep(3)
    assert len(runs_of(ctx, config_id)) == count  # disabled: no more runs
    assert proc.terminate() == 0


def test_kill_9_during_upload_leaves_a_failed_run_an_alert_and_no_backup(
    database_url: str, make_ctx, start_scheduler, tmp_path: Path, moto_endpoint: str, s3_bucket: str
) -> None:
    ctx = make_ctx(database_url, run_lease=3)
    src = _source(tmp_path, size=40 * 1024 * 1024)
    dest = {"type": "s3", "bucket": s3_bucket, "region": "us-east-1", "endpoint": moto_endpoint}
    # 40 MiB of random data at 4 MiB/s: the upload is still going when the worker dies.
    doc = config_doc(src, dest, "0 0 1 1 *", compression=False, bandwidth=4096)
    config_id = add_config(ctx, doc)
    env = {"BACKAPP_RUN_LEASE": "3", "AWS_S3_ENDPOINT": moto_endpoint}
    slug = get_config(ctx, config_id).slug
    first = start_scheduler(database_url, **env)
    from backapp.services import configs as config_service
    from backapp.services import runs as run_service

    with ctx.db.session() as session:
        run_id = run_service.enqueue(session, config_service.get(session, config_id)).id
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    wait_for(
        lambda: s3.list_multipart_uploads(Bucket=s3_bucket).get("Uploads"),
        30,
        "a multipart upload in progress",
    )
    wait_for(
        lambda: s3.list_objects_v2(Bucket=s3_bucket, Prefix=f"{slug}/index/").get("Contents"),
        30,
        "a pack stored and listed",
    )
    wait_for(
        lambda: s3.list_multipart_uploads(Bucket=s3_bucket).get("Uploads"),
        30,
        "the next pack's upload in progress",
    )
    first.kill9()
    second = start_scheduler(database_url, **env)
    run = wait_for(
        lambda: next(
            (r for r in runs_of(ctx, config_id) if r.id == run_id and r.status == "failed"), None
        ),
        30,
        "the run to be failed after its lease expired",
    )
    assert "worker lost" in (run.error or "")
    with ctx.db.session() as session:
        found = [a for a in alert_service.list_alerts(session) if a.run_id == run_id]
    assert [a.kind for a in found] == ["worker_lost"]
    wait_for(
        lambda: not s3.list_multipart_uploads(Bucket=s3_bucket).get("Uploads"),
        10,
        "the dead run's multipart upload to be aborted",
    )
    repo = Repository(S3Storage(s3_bucket, "us-east-1", moto_endpoint), "", slug)
    assert repo.ids() == []
    # The next scheduled run resumes: the pack the dead run finished is not sent again.
    with ctx.db.session() as session:
        again = run_service.enqueue(session, config_service.get(session, config_id)).id
    done = wait_for(
        lambda: next(
            (r for r in runs_of(ctx, config_id) if r.id == again and r.status == "completed"),
            None,
        ),
        60,
        "the next run to complete",
    )
    assert (done.details or {}).get("resumedBytes", 0) >= 12 * 1024 * 1024, done.details
    assert second.terminate() == 0


def test_sigterm_cancels_a_running_backup_after_the_grace_period(
    database_url: str, make_ctx, start_scheduler, tmp_path: Path
) -> None:
    ctx = make_ctx(database_url)
    src = _source(tmp_path, size=30 * 1024 * 1024)
    doc = config_doc(src, tmp_path / "dest", "0 0 1 1 *", compression=False, bandwidth=1024)
    config_id = add_config(ctx, doc)
    proc = start_scheduler(database_url, BACKAPP_SHUTDOWN_GRACE="1")
    from backapp.services import configs as config_service
    from backapp.services import runs as run_service

    with ctx.db.session() as session:
        run_id = run_service.enqueue(session, config_service.get(session, config_id)).id
    wait_for(
        lambda: any(r.id == run_id and r.status == "running" for r in runs_of(ctx, config_id)),
        20,
        "the run to start",
    )
    assert proc.terminate(timeout=30) == 0
    run = next(r for r in runs_of(ctx, config_id) if r.id == run_id)
    assert run.status == "cancelled"
    assert "shut down" in (run.error or "")
    repo = Repository(LocalStorage(tmp_path / "dest"), "", get_config(ctx, config_id).slug)
    assert repo.ids() == []
    assert not list((tmp_path / "dest").rglob("*.partial-*"))
