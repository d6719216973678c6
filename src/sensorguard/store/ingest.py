"""Writing readings into the store: idempotent on (asset, time), bulk via binary COPY.

Rules of this room (see ``docs/data.md``, "The readings store"):

* **One row per (asset, time), merged per sensor.** A reading at a stored (asset, time)
  may add sensors or fill a stored missing value: the row is *merged* (a client that sends
  one message per sensor loses nothing). Resending what is stored is a *duplicate*
  (idempotent), and a missing value (NaN / null) never erases a stored one. A different
  value for a sensor (or status) that is already stored is a **conflict**: the whole call
  is refused with :class:`ReadingConflictError` naming the asset, time, sensor and both
  values, because silently keeping either one loses a reading without a trace. The same
  rules apply between rows of one batch.
* **Microseconds.** Times are kept to the microsecond (PostgreSQL's ``timestamp``).
  Readings whose times differ only below a microsecond would collapse into one row, so
  they are refused; sub-microsecond digits that collapse nothing are dropped with a note.
* **Limits** are checked before anything is written and raise :class:`StoreLimitError`
  (a 4xx over HTTP, never "store unreachable"): at most :data:`MAX_SENSORS` sensors per
  reading, names of at most 200 characters, statuses of at most 100; NUL characters are
  refused (PostgreSQL cannot store them in text).
* **Interrupted writes.** Each chunk is one transaction; when the database goes away,
  :class:`~sensorguard.store.engine.StoreError` says how many readings were stored and
  that re-running is safe (stored readings come back as duplicates).

PostgreSQL: each chunk is streamed with ``COPY ... FROM STDIN (FORMAT binary)``, the
binary rows laid out by numpy (no per-value formatting): straight into ``readings`` when
the store holds nothing for the asset in the chunk's time range (the usual bulk load),
else into a temporary table from which ``INSERT ... ON CONFLICT DO NOTHING RETURNING``
moves the new rows; the rest are compared with the stored rows (locked ``FOR UPDATE``).
SQLite: ``INSERT ... ON CONFLICT DO NOTHING RETURNING`` in multi-row statements.

This module is the entry points and the transaction around each chunk; the parts live
in :mod:`~sensorguard.store.prepare` (limits, a frame made a chunk),
:mod:`~sensorguard.store.merge` (the merge/conflict rule), :mod:`~sensorguard.store.writers`
(one insert/update pair per dialect) and :mod:`~sensorguard.store.copy` (binary COPY bytes).
(About 450 lines on purpose, a tenth of them these rules: what is left is one transaction
per chunk and its error translation.)
"""

from __future__ import annotations

import hashlib
import io
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
import pandas as pd
import sqlalchemy as sa

from sensorguard.errors import DataValidationError
from sensorguard.store.copy import (
    _PG_COPY_HEADER,
    _PG_COPY_TRAILER,
    PG_EPOCH_US,
    _readings_copy_payload,
    float8_array_fields,
)
from sensorguard.store.engine import StoreError, dialect_insert, ensure_schema
from sensorguard.store.merge import ReadingConflictError, _Chunk, _reconcile
from sensorguard.store.prepare import (
    MAX_NAME_CHARS,
    MAX_SENSORS,
    MAX_STATUS_CHARS,
    StoreLimitError,
    _prepare,
)
from sensorguard.store.schema import reading_counts, sensor_sets
from sensorguard.store.writers import _insert_pg, _insert_sqlite, _update_pg, _update_sqlite

if TYPE_CHECKING:
    from sensorguard.data import Readings

# the store's writing face: the limits, the conflict error and the COPY layout stay
# importable from here (they live in prepare.py, merge.py and copy.py)
__all__ = [
    "DEFAULT_CHUNK_ROWS",
    "MAX_NAME_CHARS",
    "MAX_SENSORS",
    "MAX_STATUS_CHARS",
    "PG_EPOCH_US",
    "Frame",
    "IngestResult",
    "ReadingConflictError",
    "StoreLimitError",
    "float8_array_fields",
    "ingest_file",
    "insert_frame",
    "insert_frames",
    "insert_readings",
    "sensor_set_id",
    "write_transaction",
]


DEFAULT_CHUNK_ROWS = 100_000


@dataclass
class IngestResult:
    """What an ingestion did. ``rows`` = ``inserted`` + ``merged`` + ``duplicates``."""

    rows: int = 0
    inserted: int = 0
    merged: int = 0
    """Readings that added sensors (or filled missing values) to a stored (asset, time)."""
    duplicates: int = 0
    """Readings identical to what is stored (or within the batch): nothing to do."""
    assets: list[str] = field(default_factory=list)
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def readings_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else float("nan")

    def add(self, other: IngestResult) -> None:
        self.rows += other.rows
        self.inserted += other.inserted
        self.merged += other.merged
        self.duplicates += other.duplicates
        self.assets.extend(a for a in other.assets if a not in self.assets)
        self.notes.extend(n for n in other.notes if n not in self.notes)

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "inserted": self.inserted,
            "merged": self.merged,
            "duplicates": self.duplicates,
            "assets": list(self.assets),
            "seconds": round(self.seconds, 4),
            "notes": list(self.notes),
        }


def _sensors_key(sensors: Sequence[str]) -> tuple[str, str]:
    text = orjson.dumps(list(sensors)).decode()
    return text, hashlib.sha256(text.encode()).hexdigest()


_SETS_KNOWN = "sensorguard_sensor_sets"  # keys of connection.info
_SETS_PENDING = "sensorguard_sensor_sets_pending"


def _sets_committed(conn: sa.Connection) -> None:
    info = conn.connection.info
    info.setdefault(_SETS_KNOWN, {}).update(info.pop(_SETS_PENDING, {}))


def _sets_rolled_back(conn: sa.Connection, *_args: Any) -> None:
    conn.connection.info.pop(_SETS_PENDING, None)


def _hook_sets(engine: sa.Engine) -> None:
    # asked of the engine itself: a registry of engine ids could outlive an engine and
    # match a new one at the same address, which would then never forget a rollback
    if not sa.event.contains(engine, "commit", _sets_committed):
        sa.event.listen(engine, "commit", _sets_committed)
        sa.event.listen(engine, "rollback", _sets_rolled_back)
        sa.event.listen(engine, "rollback_savepoint", _sets_rolled_back)


def sensor_set_id(conn: sa.Connection, sensors: Sequence[str]) -> int:
    """The id of this ordered list of sensor names, created on first use.

    Looked up by the SHA-256 of its JSON (the indexed key, migration 0002) and checked
    against the JSON itself, so a hash collision can never alias two sets.

    The id is remembered on the database connection (SQLAlchemy's ``connection.info``,
    which lives as long as the pooled connection) once it is known to be committed: a
    set found stored at once, or created in a transaction that then committed (a
    rollback, or a savepoint's, forgets what it created). Sets are never deleted, and a
    database dropped and created again cannot keep a connection, so the id stays
    right. The lookup was a round trip per ingest commit: 13 % of the MQTT ingester's
    writer thread in a py-spy profile at 21,000 readings/s."""
    key = tuple(sensors)
    info = conn.connection.info
    sid = info.get(_SETS_KNOWN, {}).get(key)
    if sid is None:
        sid = info.get(_SETS_PENDING, {}).get(key)
    if sid is not None:
        return int(sid)
    _hook_sets(conn.engine)
    text, digest = _sensors_key(sensors)
    query = sa.select(sensor_sets.c.id, sensor_sets.c.sensors).where(
        sensor_sets.c.sensors_sha256 == digest
    )
    found = conn.execute(query).first()
    if found is None:
        stmt = dialect_insert(conn, sensor_sets)
        conn.execute(stmt.values(sensors=text, sensors_sha256=digest).on_conflict_do_nothing())
        found = conn.execute(query).one()
    if found[1] != text:  # pragma: no cover - a SHA-256 collision
        raise StoreError(f"sensor set hash collision for {digest}", "report this as a bug")
    # pending until this transaction commits: seen in it, it may still be its own row
    info.setdefault(_SETS_PENDING, {})[key] = int(found[0])
    return int(found[0])


def _sensor_names(conn: sa.Connection, ids: Sequence[int]) -> dict[int, list[str]]:
    rows = conn.execute(
        sa.select(sensor_sets.c.id, sensor_sets.c.sensors).where(sensor_sets.c.id.in_(list(ids)))
    )
    return {int(i): orjson.loads(s) for i, s in rows}


def _count_inserted(conn: sa.Connection, inserted: dict[str, int]) -> None:
    """Add newly inserted rows to ``reading_counts`` (migration 0007), in the inserting
    transaction. Assets in sorted order: two writers of overlapping assets lock their
    count rows in the same order, so they queue instead of deadlocking."""
    rows = [{"asset_id": a, "n": n} for a, n in sorted(inserted.items()) if n > 0]
    if not rows:
        return
    stmt = dialect_insert(conn, reading_counts)
    stmt = stmt.on_conflict_do_update(
        index_elements=[reading_counts.c.asset_id], set_={"n": reading_counts.c.n + stmt.excluded.n}
    )
    conn.execute(stmt, rows)


def _write(conn: sa.Connection, chunk: _Chunk, sids: dict[tuple[str, ...], int]) -> IngestResult:
    """Insert the new rows of a prepared chunk and merge the rest (see the module)."""
    started = time.perf_counter()
    result = IngestResult(
        rows=chunk.rows,
        merged=chunk.merged,
        duplicates=chunk.duplicates,
        assets=[chunk.asset],
        notes=list(chunk.notes),
    )
    if len(chunk.times_us) == 0:
        return result

    def sid_of(sensors: Sequence[str]) -> int:
        key = tuple(sensors)
        if key not in sids:
            sids[key] = sensor_set_id(conn, sensors)
        return sids[key]

    sid = sid_of(chunk.sensors)
    pg = conn.dialect.name == "postgresql"
    inserted, identical, stored = (_insert_pg if pg else _insert_sqlite)(conn, chunk, sid)
    _count_inserted(conn, {chunk.asset: inserted})
    result.inserted = inserted
    result.duplicates += identical
    if stored:
        ids = sorted({r[1] for r in stored})
        duplicates, merges = _reconcile(chunk, stored, _sensor_names(conn, ids))
        result.duplicates += duplicates
        for union, merge in merges.items():
            (_update_pg if pg else _update_sqlite)(conn, chunk.asset, sid_of(union), merge)
            result.merged += len(merge.times_us)
    result.seconds = time.perf_counter() - started
    return result


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@contextmanager
def _database_errors() -> Iterator[None]:
    """Database failures as SensorGuard errors: a value the database refuses is bad
    input (4xx), a size limit is a :class:`StoreLimitError`, a lost connection a
    :class:`StoreError` (retry later)."""
    import psycopg2

    try:
        yield
    except (sa.exc.DBAPIError, psycopg2.Error) as exc:
        # psycopg2's own errors too: the COPY paths call the driver's cursor directly,
        # so a restart of the server mid-COPY arrives unwrapped (seen as a 500 in
        # tests/store/test_store_faults.py)
        raw = exc.orig if isinstance(exc, sa.exc.DBAPIError) else exc
        code = str(getattr(raw, "pgcode", "") or "")
        if code.startswith("54"):  # program_limit_exceeded
            raise StoreLimitError(
                f"the readings store cannot hold these readings: {_first_line(exc)}",
                "send fewer sensors per reading or shorter names",
                code="store_limit",
                name="database",
                maximum=0,
                value=0,
            ) from None
        if code.startswith("22"):  # data_exception: a value the column cannot hold
            raise DataValidationError(
                f"the readings store refused a value: {_first_line(exc)}",
                "check the asset ids, sensor names and statuses",
            ) from None
        lost = (
            exc.connection_invalidated
            if isinstance(exc, sa.exc.DBAPIError)
            else isinstance(exc, psycopg2.OperationalError | psycopg2.InterfaceError)
        )
        if lost or isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError):
            raise StoreError(
                f"the readings store is unreachable: {_first_line(exc)}",
                "check SENSORGUARD_STORE_URL and the database server; then retry",
            ) from None
        raise


@contextmanager
def write_transaction(engine: sa.Engine) -> Iterator[sa.Connection]:
    """``engine.begin()`` whose failures, the commit included, are SensorGuard errors
    (lost connection -> :class:`StoreError`, refused value -> 4xx): use it around
    :func:`insert_frames` so a database restart is never a raw driver error."""
    with _database_errors(), engine.begin() as conn:
        yield conn


def insert_frame(
    engine: sa.Engine,
    asset: str,
    times: Any,
    values: np.ndarray,
    sensors: Sequence[str],
    status: Sequence[Any] | None = None,
) -> IngestResult:
    """Insert one asset's readings; ``values`` is ``(n, len(sensors))``. Idempotent;
    merged per sensor with stored readings of the same times, refused on a conflict."""
    started = time.perf_counter()
    chunk = _prepare(asset, times, values, sensors, status)
    with write_transaction(engine) as conn:
        result = _write(conn, chunk, {})
    result.seconds = time.perf_counter() - started
    return result


Frame = tuple[str, Any, Any, Sequence[str], Sequence[Any] | None]
"""``(asset, times, values, sensors, status)`` as :func:`insert_frame` takes them."""


def insert_frames(conn: sa.Connection, frames: Sequence[Frame]) -> IngestResult:
    """Insert several frames on ``conn``, inside the caller's transaction. Idempotent.

    For many small batches (an MQTT message per asset and second): one commit for all
    of them instead of one each, and the caller can write other rows (dead letters) in
    the same transaction. Frames are applied in order, so a later frame with other
    sensors at the same (asset, time) is merged into an earlier one; a conflict raises
    :class:`ReadingConflictError` (the caller rolls the transaction back)."""
    started = time.perf_counter()
    chunks = [_prepare(*frame) for frame in frames]  # everything checked before any write
    result = IngestResult()
    sids: dict[tuple[str, ...], int] = {}
    with _database_errors():
        if (
            conn.dialect.name == "postgresql"
            and len(chunks) > 1
            and _copy_all_pg(conn, chunks, sids)
        ):
            for chunk in chunks:
                result.add(
                    IngestResult(
                        rows=chunk.rows,
                        inserted=len(chunk.times_us),
                        merged=chunk.merged,
                        duplicates=chunk.duplicates,
                        assets=[chunk.asset],
                        notes=list(chunk.notes),
                    )
                )
        else:
            for chunk in chunks:
                result.add(_write(conn, chunk, sids))
    result.seconds = time.perf_counter() - started
    return result


def _copy_all_pg(
    conn: sa.Connection, chunks: Sequence[_Chunk], sids: dict[tuple[str, ...], int]
) -> bool:
    """All chunks in ONE binary COPY straight into ``readings``, when none of their
    (asset, time) is stored yet (the live stream's usual case). False (and nothing
    written) on any stored time: the caller then writes chunk by chunk with the merge
    rules. Measured with 100 assets x 200 readings per commit: one COPY instead of one
    EXISTS + SAVEPOINT + COPY per chunk halves the write time."""
    import psycopg2.errors

    parts = [_PG_COPY_HEADER]
    for chunk in chunks:
        if len(chunk.times_us) == 0:
            continue
        key = tuple(chunk.sensors)
        if key not in sids:
            sids[key] = sensor_set_id(conn, chunk.sensors)
        codes, labels = chunk.labels()
        payload = _readings_copy_payload(
            chunk.asset, sids[key], chunk.times_us, codes, labels, chunk.values
        )
        parts.append(payload[len(_PG_COPY_HEADER) : len(payload) - len(_PG_COPY_TRAILER)])
    parts.append(_PG_COPY_TRAILER)
    dbapi: Any = conn.connection.dbapi_connection
    with dbapi.cursor() as cur:
        cur.execute("SAVEPOINT sg_copy_all")
        try:
            cur.copy_expert(
                "COPY readings (asset_id, time, sensor_set_id, sensor_values, status) "
                "FROM STDIN WITH (FORMAT binary)",
                io.BytesIO(b"".join(parts)),
            )
        except psycopg2.errors.UniqueViolation:
            cur.execute("ROLLBACK TO SAVEPOINT sg_copy_all")
            return False
        cur.execute("RELEASE SAVEPOINT sg_copy_all")
    counts: dict[str, int] = {}
    for chunk in chunks:
        counts[chunk.asset] = counts.get(chunk.asset, 0) + len(chunk.times_us)
    _count_inserted(conn, counts)
    return True


def insert_readings(
    data: Readings | pd.DataFrame,
    asset: str | None = None,
    url: str | None = None,
    *,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    on_progress: Callable[[int], None] | None = None,
) -> IngestResult:
    """Store validated readings; ``asset`` overrides the readings' asset column.

    A frame is validated with ``Readings.from_frame`` first (time, asset and label
    columns are detected). Idempotent on (asset, time): re-sending a reading is a
    duplicate, not an error and not a second row. Each chunk of ``chunk_rows`` is one
    transaction; a failure says how many readings were stored before it.
    """
    from sensorguard.data import Readings

    started = time.perf_counter()
    readings = data if isinstance(data, Readings) else Readings.from_frame(data)
    if asset is None and readings.asset is None:
        raise DataValidationError(
            f"{readings.source}: no asset column and no asset given",
            "pass --asset NAME (or asset=...), or add an asset_id column",
        )
    engine = ensure_schema(url)
    X = readings.X
    sensors = list(readings.sensors)
    values = X.to_numpy(dtype=np.float64)
    times = readings.times.to_numpy()
    status = readings.status.to_numpy(dtype=object) if readings.status is not None else None
    if asset is not None:
        groups: list[tuple[str, np.ndarray]] = [(asset, np.arange(len(readings)))]
    else:
        assert readings.asset is not None
        keys = readings.asset.astype(str).to_numpy()
        groups = [(str(a), np.flatnonzero(keys == a)) for a in pd.unique(keys)]
    result = IngestResult()
    for name, positions in groups:
        for lo in range(0, len(positions), chunk_rows):
            part = positions[lo : lo + chunk_rows]
            try:
                done = insert_frame(
                    engine,
                    name,
                    times[part],
                    values[part],
                    sensors,
                    status[part] if status is not None else None,
                )
            except ReadingConflictError as exc:
                message = _so_far(exc, result, len(readings))
                raise ReadingConflictError(
                    message, exc.hint or "", conflicts=exc.conflicts, first=exc.first
                ) from None
            except StoreError as exc:
                raise StoreError(
                    _so_far(exc, result, len(readings)),
                    "re-running the same command is safe: stored readings count as duplicates",
                ) from None
            result.add(done)
            if on_progress is not None:
                on_progress(len(part))
    result.seconds = time.perf_counter() - started
    return result


def _so_far(exc: StoreError | ReadingConflictError, result: IngestResult, total: int) -> str:
    return f"{exc.message}; {result.rows:,} of {total:,} readings were stored before that"


def ingest_file(
    path: str | Path,
    asset: str | None = None,
    url: str | None = None,
    *,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    on_progress: Callable[[int, int], None] | None = None,
    **load_options: Any,
) -> IngestResult:
    """Validate a readings file (CSV/Parquet, see ``load_readings``) and store it.

    ``on_progress(done, total)`` is called after each chunk.
    """
    from sensorguard.data import load_readings

    started = time.perf_counter()
    readings = load_readings(path, **load_options)
    total = len(readings)
    done = 0

    def step(n: int) -> None:
        nonlocal done
        done += n
        if on_progress is not None:
            on_progress(done, total)

    result = insert_readings(
        readings, asset=asset, url=url, chunk_rows=chunk_rows, on_progress=step
    )
    result.seconds = time.perf_counter() - started
    return result
