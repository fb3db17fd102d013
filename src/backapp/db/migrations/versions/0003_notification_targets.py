"""notification targets and events; alerts resolve themselves

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 18:10:00

Delivery moves from the alerts (0002's columns) to an outbox of events, which also
carries successes and recoveries; alerts gain the run kind they are about and who
resolved them.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import backapp.db.models

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "notification_targets",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("config_id", sa.String(length=36), nullable=True),
        sa.Column("label", sa.String(length=200), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("events", sa.JSON(), nullable=False),
        sa.Column("created_at", backapp.db.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", backapp.db.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("notification_targets", schema=None) as batch_op:
        batch_op.create_index("ix_notification_targets_config", ["config_id"], unique=False)

    op.create_table(
        "notification_events",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("event", sa.String(length=16), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("config_id", sa.String(length=36), nullable=True),
        sa.Column("config_name", sa.String(length=200), nullable=True),
        sa.Column("run_id", sa.String(length=36), nullable=True),
        sa.Column("alert_id", sa.String(length=36), nullable=True),
        sa.Column("created_at", backapp.db.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("claimed_at", backapp.db.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("next_attempt_at", backapp.db.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("sent_at", backapp.db.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("delivered", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("notification_events", schema=None) as batch_op:
        batch_op.create_index(
            "ix_notification_events_pending", ["sent_at", "created_at"], unique=False
        )

    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("run_kind", sa.String(length=16), nullable=True))
        batch_op.add_column(
            sa.Column("resolved_at", backapp.db.models.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(sa.Column("resolved_by_run_id", sa.String(length=36), nullable=True))
        batch_op.drop_column("notify_error")
        batch_op.drop_column("notify_attempts")
        batch_op.drop_column("notified_at")
        batch_op.create_index(
            "ix_alerts_unresolved", ["config_id", "run_kind", "resolved_at"], unique=False
        )
    # Earlier alerts learn the kind of their run, so a later success resolves them too.
    op.execute(
        "UPDATE alerts SET run_kind = (SELECT runs.kind FROM runs WHERE runs.id = alerts.run_id)"
        " WHERE run_id IS NOT NULL"
    )
    op.execute("UPDATE alerts SET run_kind = 'backup' WHERE kind = 'missed_run'")


def downgrade() -> None:
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.drop_index("ix_alerts_unresolved")
        batch_op.add_column(
            sa.Column("notified_at", backapp.db.models.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(
            sa.Column("notify_attempts", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(sa.Column("notify_error", sa.Text(), nullable=True))
        batch_op.drop_column("resolved_by_run_id")
        batch_op.drop_column("resolved_at")
        batch_op.drop_column("run_kind")
    # Every alert counts as notified: a downgrade must not send the history again.
    op.execute("UPDATE alerts SET notified_at = created_at")
    with op.batch_alter_table("notification_events", schema=None) as batch_op:
        batch_op.drop_index("ix_notification_events_pending")
    op.drop_table("notification_events")
    with op.batch_alter_table("notification_targets", schema=None) as batch_op:
        batch_op.drop_index("ix_notification_targets_config")
    op.drop_table("notification_targets")
