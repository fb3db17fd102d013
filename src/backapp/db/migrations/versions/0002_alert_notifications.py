"""alert notifications

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 05:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import backapp.db.models

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("notified_at", backapp.db.models.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(
            sa.Column("notify_attempts", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(sa.Column("notify_error", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.drop_column("notify_error")
        batch_op.drop_column("notify_attempts")
        batch_op.drop_column("notified_at")
