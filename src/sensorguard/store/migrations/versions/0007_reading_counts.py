"""Readings stored per asset, kept by the writers: the late-readings check in O(1).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02

The watch service counts an asset's late readings (stored with a time it had already
scored past) as the readings stored in its scored span minus those it scored. It used
to count that span with ``count(*)`` every 30 s per asset: the whole scored history,
so the check grew with every day the service ran. Every writer of ``readings`` now adds
what it inserts to ``reading_counts`` in the same transaction (``store.ingest``), and
the check subtracts the small unscored tail instead. The upgrade counts the readings
already stored once.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "reading_counts",
        sa.Column("asset_id", sa.String(200), primary_key=True),
        sa.Column("n", sa.BigInteger, nullable=False),
    )
    op.execute(
        "INSERT INTO reading_counts (asset_id, n) "
        "SELECT asset_id, count(*) FROM readings GROUP BY asset_id"
    )


def downgrade() -> None:
    op.drop_table("reading_counts")
