"""Readings store tables (SQLAlchemy Core), the same on PostgreSQL and SQLite.

Layout, chosen for bulk-load speed and cheap window reads:

* ``readings``: one row per asset and time, the sensor values as one array column
  (``double precision[]`` on PostgreSQL, a JSON list on SQLite) whose order is given by
  ``sensor_sets``. A "long" row per sensor would multiply row counts by the number of
  sensors (50+ on a pump), and a JSON object per row costs ~25 µs to serialise; an
  array is written with binary COPY straight from numpy. Missing values are stored as NaN.
* ``sensor_sets``: each distinct ordered list of sensor names, so an asset can gain or lose
  sensors over time without a migration; reads align columns by name. Keyed by the
  SHA-256 of the JSON list (migration 0002), so 1,000 sensors fit an index entry.
* ``predictions``: one row per asset, time and model version (rescoring replaces it).
* ``alarm_events``: one row per alarm (a run of consecutive anomalous readings).
* ``dead_letters``: payloads that failed validation, raw bytes and reason (never dropped
  silently; deleted after ``SENSORGUARD_DEAD_LETTER_RETENTION_DAYS``, ``store.retention``).
* ``notifications`` / ``notification_deliveries``: the outbox of alarm transitions and,
  per receiver, its delivery log (attempts, last error), drained in order; pruned by
  ``store.retention``.
* ``alarms`` / ``alarm_labels``: the watch service's live alarms (one row per event,
  unique on asset, kind, sensor, start and model version) and the operators' labels.
* ``watch_checkpoints`` / ``watch_leases`` / ``watch_workers``: where each asset's live
  scoring stands (its stream state as JSON, fenced by ``seq``), and which watch
  process scores it (migration 0004).

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
    # the key (migration 0002): a btree entry must fit in ~2.7 KB, and the JSON of ~200
    # sensor names does not; the hash is 64 characters whatever the sensor count
    sa.Column("sensors_sha256", sa.String(64), nullable=False),
    sa.UniqueConstraint("sensors_sha256", name="uq_sensor_sets_sha256"),
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

# readings stored per asset, kept by every writer in the transaction that inserts them
# (migration 0007): the watch service's late-readings check reads it instead of
# counting an asset's whole scored history every 30 s
reading_counts = sa.Table(
    "reading_counts",
    metadata,
    sa.Column("asset_id", sa.String(200), primary_key=True),
    sa.Column("n", sa.BigInteger, nullable=False),
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

# ---- live ingestion and notifications (migration 0003)

dead_letters = sa.Table(
    "dead_letters",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("received_at", sa.DateTime(timezone=False), nullable=False),
    sa.Column("source", sa.String(20), nullable=False),  # mqtt | http
    sa.Column("topic", sa.String(400), nullable=True),
    sa.Column("asset_id", sa.String(200), nullable=True),
    sa.Column("code", sa.String(40), nullable=False),  # the payload error code
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("path", sa.String(400), nullable=True),
    sa.Column("payload", sa.LargeBinary, nullable=False),  # the raw bytes as received
    sa.Index("ix_dead_letters_received", "received_at"),
)

# the outbox: one row per alarm transition, written in the transaction of the transition
notifications = sa.Table(
    "notifications",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("event_id", sa.String(100), nullable=False),
    sa.Column("transition", sa.String(60), nullable=False),  # opened | updated:N | closed
    sa.Column("asset_id", sa.String(200), nullable=False),
    sa.Column("kind", sa.String(40), nullable=False),
    sa.Column("body", sa.Text, nullable=False),  # the JSON document every receiver gets
    sa.Column("created_at", sa.DateTime(timezone=False), nullable=False),
    sa.UniqueConstraint("event_id", "transition", name="uq_notifications_transition"),
    sa.Index("ix_notifications_asset", "asset_id", "id"),
    sa.Index("ix_notifications_created", "created_at"),  # retention (migration 0006)
)

# the delivery log: one row per notification and receiver, drained in id order per receiver
notification_deliveries = sa.Table(
    "notification_deliveries",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("notification_id", sa.BigInteger, nullable=False),
    sa.Column("receiver", sa.String(500), nullable=False),  # a webhook URL, or "mqtt"
    sa.Column("state", sa.String(10), nullable=False),  # pending | delivered | failed
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("last_status", sa.Integer, nullable=True),
    sa.Column("next_attempt_at", sa.DateTime(timezone=False), nullable=False),
    sa.Column("last_attempt_at", sa.DateTime(timezone=False), nullable=True),
    sa.Column("delivered_at", sa.DateTime(timezone=False), nullable=True),
    sa.UniqueConstraint("notification_id", "receiver", name="uq_deliveries_receiver"),
    sa.Index("ix_deliveries_pending", "receiver", "state", "notification_id"),
)

# ---- live monitoring (migration 0004): the watch service's alarms, checkpoints, leases

alarms = sa.Table(
    "alarms",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("asset_id", sa.String(200), nullable=False),
    # failure | silent | sensor_missing | flatline | out_of_range
    sa.Column("kind", sa.String(40), nullable=False),
    # the sensor a data-quality alarm is about; "" for asset-wide alarms
    sa.Column("sensor", sa.String(200), nullable=False, server_default=""),
    sa.Column("state", sa.String(10), nullable=False),  # open | closed
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
    sa.Index("ix_alarms_asset_start", "asset_id", "start_time"),
    sa.Index("ix_alarms_state_kind", "state", "kind"),
)

alarm_labels = sa.Table(
    "alarm_labels",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("alarm_id", sa.Integer, nullable=False),
    sa.Column("label", sa.String(20), nullable=False),  # failure | false_alarm | maintenance
    sa.Column("failure_mode", sa.String(200), nullable=True),
    sa.Column("note", sa.Text, nullable=True),
    sa.Column("labelled_by", sa.String(200), nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=False), nullable=False),
    sa.Index("ix_alarm_labels_alarm", "alarm_id"),
)

watch_checkpoints = sa.Table(
    "watch_checkpoints",
    metadata,
    sa.Column("asset_id", sa.String(200), primary_key=True),
    sa.Column("model_name", sa.String(200), nullable=False),
    sa.Column("model_version", sa.String(50), nullable=False),
    sa.Column("last_time", sa.DateTime(timezone=False), nullable=True),
    # bumped by every write: a writer that lost its lease cannot overwrite (fencing)
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("n_scored", sa.BigInteger, nullable=False),
    sa.Column("n_late", sa.BigInteger, nullable=False),
    sa.Column("last_score", sa.Float(precision=53), nullable=True),
    sa.Column("is_anomaly", sa.Boolean, nullable=False),
    sa.Column("state", sa.Text, nullable=False, comment="JSON: stream, event and quality state"),
    sa.Column("updated_at", sa.DateTime(timezone=False), nullable=False),
)

watch_leases = sa.Table(
    "watch_leases",
    metadata,
    sa.Column("asset_id", sa.String(200), primary_key=True),
    sa.Column("owner", sa.String(200), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=False), nullable=False),
    sa.Column("acquired_at", sa.DateTime(timezone=False), nullable=False),
)

watch_workers = sa.Table(
    "watch_workers",
    metadata,
    sa.Column("worker_id", sa.String(200), primary_key=True),
    sa.Column("started_at", sa.DateTime(timezone=False), nullable=False),
    sa.Column("heartbeat_at", sa.DateTime(timezone=False), nullable=False),
)

# --- fleets (migration 0005): the asset registry and the training-job queue
assets = sa.Table(
    "assets",
    metadata,
    sa.Column("asset_id", sa.String(200), primary_key=True),
    sa.Column("model_name", sa.String(200), nullable=False, comment="machine type"),
    sa.Column("site", sa.String(200), nullable=True),
    sa.Column("area", sa.String(200), nullable=True),
    sa.Column("description", sa.Text, nullable=True),
    sa.Column("sensor_tags", sa.Text, nullable=False, comment="JSON object sensor -> tag"),
    sa.Column("created_at", sa.DateTime(timezone=False), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=False), nullable=False),
    sa.Index("ix_assets_model", "model_name"),
)

training_jobs = sa.Table(
    "training_jobs",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("state", sa.String(20), nullable=False, comment="queued|running|succeeded|failed"),
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
    sa.Index("ix_training_jobs_state_created", "state", "created_at"),
)

VERSION_TABLE = "sensorguard_store_version"
"""Alembic's version table; not the default name, so the store can share a database
with MLflow or Airflow (both use ``alembic_version``) without clashing."""
