"""Writing readings into the store: idempotent on (asset, time), bulk via binary COPY.

PostgreSQL: each batch is streamed with ``COPY ... FROM STDIN (FORMAT binary)``, the
binary rows laid out by numpy (no per-value formatting): straight into ``readings`` when
the store holds nothing for the asset in the batch's time range (the usual bulk load),
else into a temporary table from which ``INSERT ... ON CONFLICT DO NOTHING`` moves it. SQLite:
``INSERT OR IGNORE`` with ``executemany``. Either way a reading already stored for the
same asset and time is kept (first write wins) and counted as a duplicate.
"""

from __future__ import annotations

import io
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
import pandas as pd
import sqlalchemy as sa

from sensorguard.errors import DataValidationError
from sensorguard.store.engine import ensure_schema
from sensorguard.store.schema import sensor_sets

if TYPE_CHECKING:
    from sensorguard.data import Readings

_PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01 in Unix microseconds
_PG_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
_PG_COPY_TRAILER = struct.pack(">h", -1)
_FLOAT8_OID = 701
_SQLITE_TIME = "%Y-%m-%d %H:%M:%S.%f"  # SQLAlchemy's DateTime storage format on SQLite

DEFAULT_CHUNK_ROWS = 100_000


@dataclass
class IngestResult:
    """What an ingestion did. ``rows`` = ``inserted`` + ``duplicates``."""

    rows: int = 0
    inserted: int = 0
    duplicates: int = 0
    assets: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def readings_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else float("nan")

    def add(self, other: IngestResult) -> None:
        self.rows += other.rows
        self.inserted += other.inserted
        self.duplicates += other.duplicates
        self.assets.extend(a for a in other.assets if a not in self.assets)

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "inserted": self.inserted,
            "duplicates": self.duplicates,
            "assets": list(self.assets),
            "seconds": round(self.seconds, 4),
        }


def utc_naive(times: Any) -> pd.DatetimeIndex:
    """Times as a UTC ``DatetimeIndex`` without a zone (how the store keeps them)."""
    idx = pd.DatetimeIndex(pd.to_datetime(times, utc=False))
    if idx.tz is not None:
        idx = idx.tz_convert("UTC").tz_localize(None)
    if idx.hasnans:
        raise DataValidationError("some reading times are missing", "give every reading a time")
    return idx


def sensor_set_id(conn: sa.Connection, sensors: Sequence[str]) -> int:
    """The id of this ordered list of sensor names, created on first use."""
    key = orjson.dumps(list(sensors)).decode()
    found = conn.execute(sa.select(sensor_sets.c.id).where(sensor_sets.c.sensors == key)).scalar()
    if found is not None:
        return int(found)
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        conn.execute(pg_insert(sensor_sets).values(sensors=key).on_conflict_do_nothing())
    else:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        conn.execute(sqlite_insert(sensor_sets).values(sensors=key).on_conflict_do_nothing())
    return int(
        conn.execute(sa.select(sensor_sets.c.id).where(sensor_sets.c.sensors == key)).scalar_one()
    )


def _float8_array_fields(k: int) -> list[tuple[str, Any] | tuple[str, Any, Any]]:
    """Record fields of one ``float8[]`` value of ``k`` elements in COPY binary format."""
    return [
        ("len_array", ">i4"),
        ("ndim", ">i4"),
        ("has_null", ">i4"),
        ("elem_oid", ">i4"),
        ("dim", ">i4"),
        ("lower_bound", ">i4"),
        ("elems", [("len", ">i4"), ("value", ">f8")], (k,)),
    ]


def _fill_float8_array(rec: np.ndarray, values: np.ndarray) -> None:
    """Fill the :func:`_float8_array_fields` of ``rec`` with the rows of ``values``."""
    k = values.shape[1]
    rec["len_array"] = 20 + 12 * k
    rec["ndim"] = 1
    rec["has_null"] = 0  # missing values are NaN, never NULL elements
    rec["elem_oid"] = _FLOAT8_OID
    rec["dim"] = k
    rec["lower_bound"] = 1
    rec["elems"]["len"] = 8
    rec["elems"]["value"] = values


def _pg_copy_payload(times_us: np.ndarray, status_codes: np.ndarray, values: np.ndarray) -> bytes:
    """Rows ``(time timestamp, status int2, sensor_values float8[])`` in COPY binary format."""
    n, k = values.shape
    row = np.dtype(
        [
            ("nfields", ">i2"),
            ("len_time", ">i4"),
            ("time", ">i8"),
            ("len_status", ">i4"),
            ("status", ">i2"),
            *_float8_array_fields(k),
        ]
    )
    rec = np.empty(n, dtype=row)
    rec["nfields"] = 3
    rec["len_time"] = 8
    rec["time"] = times_us - _PG_EPOCH_US
    rec["len_status"] = 2
    rec["status"] = status_codes
    _fill_float8_array(rec, values)
    return _PG_COPY_HEADER + rec.tobytes() + _PG_COPY_TRAILER


def _status_codes(status: Sequence[Any] | None, n: int) -> tuple[np.ndarray, list[str]]:
    """1-based codes into a label list (0 = no status), so COPY rows stay fixed-size."""
    if status is None:
        return np.zeros(n, dtype=np.int16), []
    ser = pd.Series(status, dtype="object")
    missing = ser.isna().to_numpy()
    cat = pd.Categorical(ser.where(~missing, None).astype("string"))
    labels = [str(c) for c in cat.categories]
    if len(labels) > 30_000:
        raise DataValidationError("too many distinct status labels", "status is a short label")
    codes = (np.asarray(cat.codes, dtype=np.int32) + 1).astype(np.int16)
    codes[missing] = 0
    return codes, labels


def insert_frame(
    engine: sa.Engine,
    asset: str,
    times: Any,
    values: np.ndarray,
    sensors: Sequence[str],
    status: Sequence[Any] | None = None,
) -> IngestResult:
    """Insert one asset's readings; ``values`` is ``(n, len(sensors))``. Idempotent."""
    started = time.perf_counter()
    idx = utc_naive(times)
    arr = np.ascontiguousarray(values, dtype=np.float64)
    if arr.ndim != 2 or arr.shape != (len(idx), len(sensors)) or not sensors:
        raise DataValidationError(
            f"readings for {asset!r}: {arr.shape} values for {len(idx)} times and "
            f"{len(sensors)} sensors",
            "give one value per sensor and time",
        )
    if not asset or len(asset) > 200:
        raise DataValidationError("asset id must be 1-200 characters", "pass --asset NAME")
    n = len(idx)
    if n == 0:
        return IngestResult(assets=[asset], seconds=time.perf_counter() - started)
    codes, labels = _status_codes(status, n)
    with engine.begin() as conn:
        sid = sensor_set_id(conn, sensors)
        if conn.dialect.name == "postgresql":
            inserted = _insert_pg(conn, asset, sid, idx, codes, labels, arr)
        else:
            inserted = _insert_sqlite(conn, asset, sid, idx, codes, labels, arr)
    return IngestResult(
        rows=n,
        inserted=inserted,
        duplicates=n - inserted,
        assets=[asset],
        seconds=time.perf_counter() - started,
    )


def _readings_copy_payload(
    asset: str,
    sid: int,
    times_us: np.ndarray,
    codes: np.ndarray,
    labels: list[str],
    values: np.ndarray,
) -> bytes:
    """Rows of ``readings`` itself in COPY binary format.

    Rows with the same status have the same byte size, so each status group is laid out
    as one numpy record array (COPY does not care about row order)."""
    k = values.shape[1]
    asset_b = asset.encode()
    parts = [_PG_COPY_HEADER]
    for code in np.unique(codes):
        pos = np.flatnonzero(codes == code)
        status_b = labels[code - 1].encode() if code > 0 else b""
        fields: list[tuple[str, Any] | tuple[str, Any, Any]] = [
            ("nfields", ">i2"),
            ("len_asset", ">i4"),
        ]
        if asset_b:
            fields.append(("asset", f"S{len(asset_b)}"))
        fields += [
            ("len_time", ">i4"),
            ("time", ">i8"),
            ("len_sid", ">i4"),
            ("sid", ">i4"),
            *_float8_array_fields(k),
            ("len_status", ">i4"),
        ]
        if status_b:
            fields.append(("status", f"S{len(status_b)}"))
        rec = np.empty(len(pos), dtype=np.dtype(fields))
        rec["nfields"] = 5
        rec["len_asset"] = len(asset_b)
        if asset_b:
            rec["asset"] = asset_b
        rec["len_time"] = 8
        rec["time"] = times_us[pos] - _PG_EPOCH_US
        rec["len_sid"] = 4
        rec["sid"] = sid
        _fill_float8_array(rec, values[pos])
        rec["len_status"] = len(status_b) if code > 0 else -1
        if status_b:
            rec["status"] = status_b
        parts.append(rec.tobytes())
    parts.append(_PG_COPY_TRAILER)
    return b"".join(parts)


def _insert_pg(
    conn: sa.Connection,
    asset: str,
    sid: int,
    idx: pd.DatetimeIndex,
    codes: np.ndarray,
    labels: list[str],
    arr: np.ndarray,
) -> int:
    """Fast path: when the store has nothing for this asset in the batch's time range
    (the usual bulk load), COPY straight into ``readings``. Otherwise, or when a
    concurrent writer got there first, COPY into a temporary table and move the rows
    with ``ON CONFLICT DO NOTHING``."""
    import psycopg2.errors

    times_us = idx.values.astype("datetime64[us]").astype(np.int64)
    _, first = np.unique(times_us, return_index=True)  # repeats within the batch
    if len(first) < len(times_us):
        first.sort()
        times_us, codes, arr = times_us[first], codes[first], arr[first]
    dbapi: Any = conn.connection.dbapi_connection
    with dbapi.cursor() as cur:
        cur.execute(
            "SELECT EXISTS (SELECT 1 FROM readings WHERE asset_id = %s "
            "AND time >= %s AND time <= %s)",
            (asset, idx.min().to_pydatetime(), idx.max().to_pydatetime()),
        )
        if not cur.fetchone()[0]:
            payload = _readings_copy_payload(asset, sid, times_us, codes, labels, arr)
            cur.execute("SAVEPOINT sg_copy")
            try:
                cur.copy_expert(
                    "COPY readings (asset_id, time, sensor_set_id, sensor_values, status) "
                    "FROM STDIN WITH (FORMAT binary)",
                    io.BytesIO(payload),
                )
                cur.execute("RELEASE SAVEPOINT sg_copy")
                return len(times_us)
            except psycopg2.errors.UniqueViolation:
                cur.execute("ROLLBACK TO SAVEPOINT sg_copy")
        cur.execute(
            "CREATE TEMP TABLE IF NOT EXISTS sg_ingest "
            "(time timestamp, status int2, sensor_values float8[]) ON COMMIT DROP"
        )
        payload = _pg_copy_payload(times_us, codes, arr)
        cur.copy_expert("COPY sg_ingest FROM STDIN WITH (FORMAT binary)", io.BytesIO(payload))
        cur.execute(
            "INSERT INTO readings (asset_id, time, sensor_set_id, sensor_values, status) "
            "SELECT %(asset)s, time, %(sid)s, sensor_values, (%(labels)s::text[])[status] "
            "FROM sg_ingest ON CONFLICT (asset_id, time) DO NOTHING",
            {"asset": asset, "sid": sid, "labels": labels},
        )
        inserted = int(cur.rowcount)
        cur.execute("DROP TABLE sg_ingest")
    return inserted


def _insert_sqlite(
    conn: sa.Connection,
    asset: str,
    sid: int,
    idx: pd.DatetimeIndex,
    codes: np.ndarray,
    labels: list[str],
    arr: np.ndarray,
) -> int:
    stamps = idx.strftime(_SQLITE_TIME)
    status_of = [None, *labels]
    rows = [
        (asset, stamp, sid, orjson.dumps(vals).decode(), status_of[code])
        for stamp, vals, code in zip(stamps, arr.tolist(), codes.tolist(), strict=True)
    ]
    dbapi = conn.connection.dbapi_connection
    assert dbapi is not None
    cur = dbapi.cursor()
    try:
        cur.executemany(
            "INSERT OR IGNORE INTO readings (asset_id, time, sensor_set_id, sensor_values, status)"
            " VALUES (?, ?, ?, ?, ?)",
            rows,
        )
        return int(cur.rowcount)
    finally:
        cur.close()


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
    duplicate, not an error and not a second row.
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
            result.add(
                insert_frame(
                    engine,
                    name,
                    times[part],
                    values[part],
                    sensors,
                    status[part] if status is not None else None,
                )
            )
            if on_progress is not None:
                on_progress(len(part))
    result.seconds = time.perf_counter() - started
    return result


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
