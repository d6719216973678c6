"""Live monitoring: the watch service's alarms, operator labels, checkpoints and leases.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01

Live predictions go to the ``predictions`` table of 0001 (one concept in one place).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "alarms",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("asset_id", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("sensor", sa.String(200), nullable=False, server_default=""),
        sa.Column("state", sa.String(10), nullable=False),
        sa.Column("start_time", sa.DateTime(timezone=False), nullable=False),
        sa.Column("end_time", sa.DateTime(timezone=False), nullable=True),
        sa.Column("last_time", sa.DateTime(timezone=False), nullable=False),
        sa.Column("model_name", sa.String(200), nullable=False, server_default=""),
        sa.Column("model_version", sa.String(50), nullable=False, server_default=""),
        sa.Column("peak_score", sa.Float(precision=53), nullable=True),
        sa.Column("n_readings", sa.Integer, nullable=False, server_default="0"),
        sa.Column("first_top_sensors", sa.Text, nullable=False, server_default="[]"),
        sa.Column("top_sensors", sa.Text, nullable=False, server_default="[]"),
        sa.Column("failure_type", sa.Integer, nullable=True),
        sa.Column("close_reason", sa.String(40), nullable=True),
        sa.Column("detail", sa.Text, nullable=False, server_default="{}"),
        sa.Column("opened_at", sa.DateTime(timezone=False), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=False), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=False), nullable=True),
        sa.Column("acknowledged_at", sa.DateTime(timezone=False), nullable=True),
        sa.Column("acknowledged_by", sa.String(200), nullable=True),
        sa.UniqueConstraint(
            "asset_id", "kind", "sensor", "start_time", "model_version", name="uq_alarms_event"
        ),
    )
    op.create_index("ix_alarms_asset_start", "alarms", ["asset_id", "start_time"])
    op.create_index("ix_alarms_state_kind", "alarms", ["state", "kind"])
    op.create_table(
        "alarm_labels",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("alarm_id", sa.Integer, nullable=False),
        sa.Column("label", sa.String(20), nullable=False),
        sa.Column("failure_mode", sa.String(200), nullable=True),
        sa.Column("note", sa.Text, nullable=True),
        sa.Column("labelled_by", sa.String(200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=False), nullable=False),
    )
    op.create_index("ix_alarm_labels_alarm", "alarm_labels", ["alarm_id"])
    op.create_table(
        "watch_checkpoints",
        sa.Column("asset_id", sa.String(200), primary_key=True),
        sa.Column("model_name", sa.String(200), nullable=False),
        sa.Column("model_version", sa.String(50), nullable=False),
        sa.Column("last_time", sa.DateTime(timezone=False), nullable=True),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("n_scored", sa.BigInteger, nullable=False),
        sa.Column("n_late", sa.BigInteger, nullable=False),
        sa.Column("last_score", sa.Float(precision=53), nullable=True),
        sa.Column("is_anomaly", sa.Boolean, nullable=False),
        sa.Column(
            "state", sa.Text, nullable=False, comment="JSON: stream, event and quality state"
        ),
        sa.Column("updated_at", sa.DateTime(timezone=False), nullable=False),
    )
    op.create_table(
        "watch_leases",
        sa.Column("asset_id", sa.String(200), primary_key=True),
        sa.Column("owner", sa.String(200), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=False), nullable=False),
        sa.Column("acquired_at", sa.DateTime(timezone=False), nullable=False),
    )
    op.create_table(
        "watch_workers",
        sa.Column("worker_id", sa.String(200), primary_key=True),
        sa.Column("started_at", sa.DateTime(timezone=False), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=False), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("watch_workers")
    op.drop_table("watch_leases")
    op.drop_table("watch_checkpoints")
    op.drop_index("ix_alarm_labels_alarm", table_name="alarm_labels")
    op.drop_table("alarm_labels")
    op.drop_index("ix_alarms_state_kind", table_name="alarms")
    op.drop_index("ix_alarms_asset_start", table_name="alarms")
    op.drop_table("alarms")
