"""Migration 0003 on a database of the previous release: alerts learn their run's kind (so
a later success resolves them), 0002's delivery columns go, and it downgrades cleanly."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config as AlembicConfig

import backapp.db.session as db_session

MIGRATIONS = Path(db_session.__file__).parent / "migrations"


def _alembic(conn: sa.Connection) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = conn
    return cfg


def test_upgrading_from_0002_keeps_alerts_and_gives_them_their_run_kind(
    database_url: str,
) -> None:
    engine = sa.create_engine(database_url)
    try:
        with engine.begin() as conn:
            command.upgrade(_alembic(conn), "0002")
            conn.execute(
                sa.text(
                    "INSERT INTO runs (id, config_id, config_name, kind, trigger, type, status,"
                    " queued_at, files_processed, files_skipped, total_bytes, bytes_transferred,"
                    " stored_bytes, backup_deleted, cancel_requested) VALUES ('r1', 'c1', 'Photos',"
                    " 'verify', 'manual', 'full', 'failed', CURRENT_TIMESTAMP, 0, 0, 0, 0, 0,"
                    " false, false)"
                )
            )
            for alert_id, kind, run_id in (
                ("a1", "verify_failed", "r1"),
                ("a2", "missed_run", None),
            ):
                conn.execute(
                    sa.text(
                        "INSERT INTO alerts (id, kind, severity, config_id, config_name, run_id,"
                        " message, created_at, notify_attempts) VALUES (:id, :kind, 'critical',"
                        " 'c1', 'Photos', :run, 'm', CURRENT_TIMESTAMP, 0)"
                    ),
                    {"id": alert_id, "kind": kind, "run": run_id},
                )
            command.upgrade(_alembic(conn), "0003")
            rows = conn.execute(sa.text("SELECT id, run_kind FROM alerts ORDER BY id")).all()
            columns = {c["name"] for c in sa.inspect(conn).get_columns("alerts")}
            assert sa.inspect(conn).has_table("notification_targets")
            command.downgrade(_alembic(conn), "0002")
            notified = conn.execute(
                sa.text("SELECT count(*) FROM alerts WHERE notified_at IS NULL")
            )
            assert notified.scalar() == 0  # a downgrade never sends the history again
            assert not sa.inspect(conn).has_table("notification_events")
    finally:
        engine.dispose()
    assert [tuple(r) for r in rows] == [("a1", "verify"), ("a2", "backup")]
    assert {"run_kind", "resolved_at", "resolved_by_run_id"} <= columns
    assert "notified_at" not in columns


def test_the_migrations_build_exactly_the_schema_of_the_models(database_url: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from backapp.db.models import Base

    engine = sa.create_engine(database_url)
    try:
        db_session.upgrade(engine)
        with engine.connect() as conn:
            differences = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    finally:
        engine.dispose()
    assert differences == []
