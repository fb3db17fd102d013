"""Alembic environment: runs on the connection BackApp hands over."""

from __future__ import annotations

from alembic import context

from backapp.db.models import Base

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - BackApp always passes a connection
    raise RuntimeError("run migrations through `backapp db upgrade`")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=True,  # SQLite alters tables by copying them
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
