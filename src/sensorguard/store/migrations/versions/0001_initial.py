"""Readings, sensor sets, predictions and alarm events.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    values_type = sa.JSON().with_variant(
        postgresql.ARRAY(postgresql.DOUBLE_PRECISION), "postgresql"
    )
    op.create_table(
        "sensor_sets",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("sensors", sa.Text, nullable=False, comment="JSON list of names"),
        sa.UniqueConstraint("sensors", name="uq_sensor_sets_sensors"),
    )
    op.create_table(
        "readings",
        sa.Column("asset_id", sa.String(200), nullable=False),
        sa.Column("time", sa.DateTime(timezone=False), nullable=False),
        # no foreign key: its per-row trigger triples bulk-load time; the id is always
        # created in the same transaction as the readings that use it
        sa.Column("sensor_set_id", sa.Integer, nullable=False),
        sa.Column("sensor_values", values_type, nullable=False),
        sa.Column("status", sa.String(100), nullable=True),
        sa.PrimaryKeyConstraint("asset_id", "time", name="pk_readings"),
    )
    op.create_table(
        "predictions",
        sa.Column("asset_id", sa.String(200), nullable=False),
        sa.Column("time", sa.DateTime(timezone=False), nullable=False),
        sa.Column("model_name", sa.String(200), nullable=False),
        sa.Column("model_version", sa.String(50), nullable=False),
        sa.Column("score", sa.Float(precision=53), nullable=False),
        sa.Column("is_anomaly", sa.Boolean, nullable=False),
        sa.Column("state", sa.Integer, nullable=False),
        sa.Column("top_sensors", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=False), nullable=False),
        sa.PrimaryKeyConstraint(
            "asset_id", "time", "model_name", "model_version", name="pk_predictions"
        ),
    )
    op.create_table(
        "alarm_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("asset_id", sa.String(200), nullable=False),
        sa.Column("start_time", sa.DateTime(timezone=False), nullable=False),
        sa.Column("end_time", sa.DateTime(timezone=False), nullable=False),
        sa.Column("model_name", sa.String(200), nullable=False),
        sa.Column("model_version", sa.String(50), nullable=False),
        sa.Column("peak_score", sa.Float(precision=53), nullable=False),
        sa.Column("n_readings", sa.Integer, nullable=False),
        sa.Column("top_sensors", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=False), nullable=False),
        sa.UniqueConstraint(
            "asset_id", "start_time", "model_name", "model_version", name="uq_alarm_events_start"
        ),
    )
    op.create_index("ix_alarm_events_asset_start", "alarm_events", ["asset_id", "start_time"])


def downgrade() -> None:
    op.drop_index("ix_alarm_events_asset_start", table_name="alarm_events")
    op.drop_table("alarm_events")
    op.drop_table("predictions")
    op.drop_table("readings")
    op.drop_table("sensor_sets")
