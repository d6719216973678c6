"""Fleet tables: the asset registry and the training-job queue.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "assets",
        sa.Column("asset_id", sa.String(200), nullable=False),
        sa.Column("model_name", sa.String(200), nullable=False, comment="machine type"),
        sa.Column("site", sa.String(200), nullable=True),
        sa.Column("area", sa.String(200), nullable=True),
        sa.Column("description", sa.Text, nullable=True),
        sa.Column("sensor_tags", sa.Text, nullable=False, comment="JSON object sensor -> tag"),
        sa.Column("created_at", sa.DateTime(timezone=False), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=False), nullable=False),
        sa.PrimaryKeyConstraint("asset_id", name="pk_assets"),
    )
    op.create_index("ix_assets_model", "assets", ["model_name"])
    op.create_table(
        "training_jobs",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column(
            "state", sa.String(20), nullable=False, comment="queued|running|succeeded|failed"
        ),
        sa.Column("model_name", sa.String(200), nullable=False),
        sa.Column("request", sa.Text, nullable=False, comment="JSON: the job's parameters"),
        sa.Column("upload", sa.LargeBinary, nullable=True, comment="uploaded readings file"),
        sa.Column("upload_name", sa.String(300), nullable=True),
        sa.Column("result", sa.Text, nullable=True, comment="JSON: run id, version, gate verdict"),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("hint", sa.Text, nullable=True),
        sa.Column("backend", sa.String(20), nullable=False, comment="local|airflow"),
        sa.Column("airflow_run_id", sa.String(250), nullable=True),
        sa.Column("worker", sa.String(200), nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=False), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=False), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(timezone=False), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=False), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_training_jobs"),
    )
    op.create_index("ix_training_jobs_state_created", "training_jobs", ["state", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_training_jobs_state_created", table_name="training_jobs")
    op.drop_table("training_jobs")
    op.drop_index("ix_assets_model", table_name="assets")
    op.drop_table("assets")
