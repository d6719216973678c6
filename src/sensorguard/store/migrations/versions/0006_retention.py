"""Retention: an index to find old notifications without reading the whole outbox.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01

``store.retention`` looks for notifications created before the cutoff, in bounded
batches; without this index each batch is a sequential scan of ``notifications``.
Dead letters already have ``ix_dead_letters_received`` (0003).
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_notifications_created", "notifications", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_notifications_created", table_name="notifications")
