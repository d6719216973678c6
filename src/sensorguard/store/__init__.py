"""The readings store: readings, predictions and alarm events in PostgreSQL or SQLite.

The embedded default is SQLite at ``<home>/readings.db``; set ``SENSORGUARD_STORE_URL``
(e.g. ``postgresql://user@host:5432/readings``) for PostgreSQL. Tables are created by
Alembic migrations (``upgrade``); the write and read functions migrate an empty
database on first use.
"""

from sensorguard.store.engine import (
    StoreError,
    current_revision,
    dispose_engines,
    ensure_schema,
    get_engine,
    head_revision,
    normalize_url,
    resolve_url,
    upgrade,
)
from sensorguard.store.ingest import (
    MAX_SENSORS,
    IngestResult,
    ReadingConflictError,
    StoreLimitError,
    ingest_file,
    insert_frame,
    insert_frames,
    insert_readings,
    write_transaction,
)
from sensorguard.store.query import (
    Alarm,
    alarms_from_scores,
    list_assets,
    read_alarms,
    read_predictions,
    read_window,
    read_window_frame,
    write_alarms,
    write_predictions,
)

__all__ = [
    "MAX_SENSORS",
    "Alarm",
    "IngestResult",
    "ReadingConflictError",
    "StoreError",
    "StoreLimitError",
    "alarms_from_scores",
    "current_revision",
    "dispose_engines",
    "ensure_schema",
    "get_engine",
    "head_revision",
    "ingest_file",
    "insert_frame",
    "insert_frames",
    "insert_readings",
    "list_assets",
    "normalize_url",
    "read_alarms",
    "read_predictions",
    "read_window",
    "read_window_frame",
    "resolve_url",
    "upgrade",
    "write_alarms",
    "write_predictions",
    "write_transaction",
]
