"""Sensor sets keyed by a SHA-256 of their JSON, not by the JSON text itself.

0001 put a unique btree index on ``sensor_sets.sensors`` (the JSON list of names). A
PostgreSQL btree entry must fit in a third of a page (2,704 bytes; the error says 8,191
for the whole row), so an asset with about 200 sensors could not be stored at all.
The index is now on ``sensors_sha256`` (64 hex characters whatever the sensor count);
the JSON text stays, unindexed, and is compared on lookup so a hash collision can never
alias two sensor sets.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

import hashlib

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def upgrade() -> None:
    with op.batch_alter_table("sensor_sets") as batch:
        batch.add_column(sa.Column("sensors_sha256", sa.String(64), nullable=True))
    conn = op.get_bind()
    sets = sa.table(
        "sensor_sets", sa.column("id"), sa.column("sensors"), sa.column("sensors_sha256")
    )
    rows = conn.execute(sa.select(sets.c.id, sets.c.sensors)).all()
    for set_id, sensors in rows:  # a handful of rows: one per distinct sensor list
        conn.execute(
            sets.update().where(sets.c.id == set_id).values(sensors_sha256=_sha256(sensors))
        )
    with op.batch_alter_table("sensor_sets") as batch:
        batch.alter_column("sensors_sha256", existing_type=sa.String(64), nullable=False)
        batch.drop_constraint("uq_sensor_sets_sensors", type_="unique")
        batch.create_unique_constraint("uq_sensor_sets_sha256", ["sensors_sha256"])


def downgrade() -> None:
    with op.batch_alter_table("sensor_sets") as batch:
        batch.drop_constraint("uq_sensor_sets_sha256", type_="unique")
        batch.create_unique_constraint("uq_sensor_sets_sensors", ["sensors"])
        batch.drop_column("sensors_sha256")
