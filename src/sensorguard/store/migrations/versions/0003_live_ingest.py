"""Live ingestion and notifications: dead letters, the notification outbox, delivery log.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# BIGSERIAL on PostgreSQL; SQLite autoincrements only an INTEGER PRIMARY KEY
_ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.create_table(
        "dead_letters",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("received_at", sa.DateTime(timezone=False), nullable=False),
        sa.Column("source", sa.String(20), nullable=False),
        sa.Column("topic", sa.String(400), nullable=True),
        sa.Column("asset_id", sa.String(200), nullable=True),
        sa.Column("code", sa.String(40), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("path", sa.String(400), nullable=True),
        sa.Column("payload", sa.LargeBinary, nullable=False),
    )
    op.create_index("ix_dead_letters_received", "dead_letters", ["received_at"])
    op.create_table(
        "notifications",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(100), nullable=False),
        sa.Column("transition", sa.String(60), nullable=False),
        sa.Column("asset_id", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=False), nullable=False),
        sa.UniqueConstraint("event_id", "transition", name="uq_notifications_transition"),
    )
    op.create_index("ix_notifications_asset", "notifications", ["asset_id", "id"])
    op.create_table(
        "notification_deliveries",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("notification_id", sa.BigInteger, nullable=False),
        sa.Column("receiver", sa.String(500), nullable=False),
        sa.Column("state", sa.String(10), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("last_status", sa.Integer, nullable=True),
        sa.Column("next_attempt_at", sa.DateTime(timezone=False), nullable=False),
        sa.Column("last_attempt_at", sa.DateTime(timezone=False), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=False), nullable=True),
        sa.UniqueConstraint("notification_id", "receiver", name="uq_deliveries_receiver"),
    )
    op.create_index(
        "ix_deliveries_pending",
        "notification_deliveries",
        ["receiver", "state", "notification_id"],
    )


def downgrade() -> None:
    op.drop_index("ix_deliveries_pending", table_name="notification_deliveries")
    op.drop_table("notification_deliveries")
    op.drop_index("ix_notifications_asset", table_name="notifications")
    op.drop_table("notifications")
    op.drop_index("ix_dead_letters_received", table_name="dead_letters")
    op.drop_table("dead_letters")
