"""Migration 0004 adds the schedulers' own heartbeats (`workers`) and downgrades cleanly."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import command

from tests.unit.test_migration_0003 import _alembic


def test_0004_adds_the_workers_table_and_takes_it_away_again(database_url: str) -> None:
    engine = sa.create_engine(database_url)
    try:
        with engine.begin() as conn:
            command.upgrade(_alembic(conn), "0004")
            columns = {c["name"] for c in sa.inspect(conn).get_columns("workers")}
            command.downgrade(_alembic(conn), "0003")
            assert not sa.inspect(conn).has_table("workers")
    finally:
        engine.dispose()
    assert columns == {"id", "host", "pid", "version", "labels", "started_at", "seen_at"}
