"""workers: each scheduler/worker process's own heartbeat

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 19:20:00

Until now only running runs carried a heartbeat, so an idle scheduler wrote nothing and
nobody could tell it from a dead one. Each scheduler now keeps a row of its own.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import backapp.db.models

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "workers",
        sa.Column("id", sa.String(length=120), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("started_at", backapp.db.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("seen_at", backapp.db.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    op.drop_table("workers")
