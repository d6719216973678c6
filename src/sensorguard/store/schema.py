"""Readings store tables (SQLAlchemy Core), the same on PostgreSQL and SQLite.

Layout, chosen for bulk-load speed and cheap window reads:

* ``readings``: one row per asset and time, the sensor values as one array column
  (``double precision[]`` on PostgreSQL, a JSON list on SQLite) whose order is given by
  ``sensor_sets``. A "long" row per sensor would multiply row counts by the number of
  sensors (50+ on a pump), and a JSON object per row costs ~25 µs to serialise; an
  array is written with binary COPY straight from numpy. Missing values are stored as NaN.
* ``sensor_sets``: each distinct ordered list of sensor names, so an asset can gain or lose
  sensors over time without a migration; reads align columns by name.
* ``predictions``: one row per asset, time and model version (rescoring replaces it).
* ``alarm_events``: one row per alarm (a run of consecutive anomalous readings).

Times are stored as UTC without a time zone. The tables are created by the Alembic
migrations in ``sensorguard/store/migrations``, never by ``create_all``.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

metadata = sa.MetaData()

# double precision[] on PostgreSQL, a JSON list elsewhere
SensorArray = sa.JSON().with_variant(postgresql.ARRAY(postgresql.DOUBLE_PRECISION), "postgresql")

sensor_sets = sa.Table(
    "sensor_sets",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("sensors", sa.Text, nullable=False, comment="JSON list of names"),
    sa.UniqueConstraint("sensors", name="uq_sensor_sets_sensors"),
)

readings = sa.Table(
    "readings",
    metadata,
    sa.Column("asset_id", sa.String(200), primary_key=True),
    sa.Column("time", sa.DateTime(timezone=False), primary_key=True),
    # sensor_sets.id; no foreign key constraint (its per-row check triples bulk-load time)
    sa.Column("sensor_set_id", sa.Integer, nullable=False),
    sa.Column("sensor_values", SensorArray, nullable=False),
    sa.Column("status", sa.String(100), nullable=True),
)

predictions = sa.Table(
    "predictions",
    metadata,
    sa.Column("asset_id", sa.String(200), primary_key=True),
    sa.Column("time", sa.DateTime(timezone=False), primary_key=True),
    sa.Column("model_name", sa.String(200), primary_key=True),
    sa.Column("model_version", sa.String(50), primary_key=True),
    sa.Column("score", sa.Float(precision=53), nullable=False),
    sa.Column("is_anomaly", sa.Boolean, nullable=False),
    sa.Column("state", sa.Integer, nullable=False),
    sa.Column("top_sensors", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=False), nullable=False),
)

alarm_events = sa.Table(
    "alarm_events",
    metadata,
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
    sa.Index("ix_alarm_events_asset_start", "asset_id", "start_time"),
)

VERSION_TABLE = "sensorguard_store_version"
"""Alembic's version table; not the default name, so the store can share a database
with MLflow or Airflow (both use ``alembic_version``) without clashing."""
