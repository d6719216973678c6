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
"""

from __future__ import annotations

import hashlib
import io
import struct
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
from sensorguard.store.engine import StoreError, ensure_schema
from sensorguard.store.schema import sensor_sets
from sensorguard.timeutil import to_utc_naive

if TYPE_CHECKING:
    from sensorguard.data import Readings

PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01 in Unix microseconds (COPY binary times)
_PG_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
_PG_COPY_TRAILER = struct.pack(">h", -1)
_FLOAT8_OID = 701
_SQLITE_TIME = "%Y-%m-%d %H:%M:%S.%f"  # SQLAlchemy's DateTime storage format on SQLite
_SQLITE_ROWS_PER_INSERT = 2_000  # x 5 parameters, under SQLite's 32,766-variable limit

DEFAULT_CHUNK_ROWS = 100_000

MAX_SENSORS = 10_000
"""Sensors per reading. Every stored row carries one float per sensor of its set (12
bytes in the COPY stream), so one reading of 10,000 sensors is ~120 KB; a machine with
more is better split into several assets. 1,000 and 10,000 are tested on PostgreSQL."""
MAX_NAME_CHARS = 200
"""Characters in a sensor name or an asset id (the ``asset_id`` column is 200)."""
MAX_STATUS_CHARS = 100
"""Characters in a status label (the ``status`` column is ``varchar(100)``)."""


class StoreLimitError(DataValidationError):
    """Readings the store cannot hold however often they are retried (a 4xx over HTTP).

    ``code`` is machine-readable; ``limit`` is ``{"name", "max", "value"}``."""

    def __init__(self, message: str, hint: str, *, code: str, name: str, maximum: int, value: int):
        super().__init__(message, hint)
        self.code = code
        self.limit = {"name": name, "max": maximum, "value": value}


class ReadingConflictError(DataValidationError):
    """A reading that contradicts a stored one (same asset, time and sensor, another value).

    Nothing of the call was written. ``conflicts`` counts the conflicting readings;
    ``first`` describes the first one (asset, time, field, stored, sent)."""

    code = "reading_conflict"

    def __init__(self, message: str, hint: str, *, conflicts: int, first: dict[str, Any]):
        super().__init__(message, hint)
        self.conflicts = conflicts
        self.first = first


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


def _reading_times(times: Any) -> pd.DatetimeIndex:
    return to_utc_naive(
        times if isinstance(times, pd.Index) else pd.Index(times), what="reading time"
    )


def _sensors_key(sensors: Sequence[str]) -> tuple[str, str]:
    text = orjson.dumps(list(sensors)).decode()
    return text, hashlib.sha256(text.encode()).hexdigest()


def sensor_set_id(conn: sa.Connection, sensors: Sequence[str]) -> int:
    """The id of this ordered list of sensor names, created on first use.

    Looked up by the SHA-256 of its JSON (the indexed key, migration 0002) and checked
    against the JSON itself, so a hash collision can never alias two sets."""
    text, digest = _sensors_key(sensors)
    query = sa.select(sensor_sets.c.id, sensor_sets.c.sensors).where(
        sensor_sets.c.sensors_sha256 == digest
    )
    found = conn.execute(query).first()
    if found is None:
        if conn.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            stmt: Any = pg_insert(sensor_sets)
        else:
            from sqlalchemy.dialects.sqlite import insert as sqlite_insert

            stmt = sqlite_insert(sensor_sets)
        conn.execute(stmt.values(sensors=text, sensors_sha256=digest).on_conflict_do_nothing())
        found = conn.execute(query).one()
    if found[1] != text:  # pragma: no cover - a SHA-256 collision
        raise StoreError(f"sensor set hash collision for {digest}", "report this as a bug")
    return int(found[0])


def _sensor_names(conn: sa.Connection, ids: Sequence[int]) -> dict[int, list[str]]:
    rows = conn.execute(
        sa.select(sensor_sets.c.id, sensor_sets.c.sensors).where(sensor_sets.c.id.in_(list(ids)))
    )
    return {int(i): orjson.loads(s) for i, s in rows}


def float8_array_fields(k: int) -> list[tuple[str, Any] | tuple[str, Any, Any]]:
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
    """Fill the :func:`float8_array_fields` of ``rec`` with the rows of ``values``."""
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
            *float8_array_fields(k),
        ]
    )
    rec = np.empty(n, dtype=row)
    rec["nfields"] = 3
    rec["len_time"] = 8
    rec["time"] = times_us - PG_EPOCH_US
    rec["len_status"] = 2
    rec["status"] = status_codes
    _fill_float8_array(rec, values)
    return _PG_COPY_HEADER + rec.tobytes() + _PG_COPY_TRAILER


def _no_nul(text: str, what: str) -> None:
    if "\x00" in text:
        raise DataValidationError(
            f"{what} {text!r} contains a NUL character", "remove the NUL (\\x00) character"
        )


def _check_asset(asset: Any) -> str:
    if not isinstance(asset, str) or not 0 < len(asset) <= MAX_NAME_CHARS:
        raise DataValidationError(
            f"asset id must be 1-{MAX_NAME_CHARS} characters", "pass --asset NAME"
        )
    _no_nul(asset, "asset id")
    return asset


def _check_sensors(asset: str, sensors: Sequence[str]) -> list[str]:
    names = [str(s) for s in sensors]
    if len(names) > MAX_SENSORS:
        raise StoreLimitError(
            f"readings of {asset!r} have {len(names):,} sensors; the store holds at most "
            f"{MAX_SENSORS:,} sensors per reading",
            "split the machine into several assets (e.g. one per subsystem)",
            code="too_many_sensors",
            name="sensors per reading",
            maximum=MAX_SENSORS,
            value=len(names),
        )
    for name in names:
        if not name:
            raise DataValidationError(f"readings of {asset!r}: a sensor has an empty name")
        if len(name) > MAX_NAME_CHARS:
            raise StoreLimitError(
                f"readings of {asset!r}: sensor name {name[:40]!r}… has {len(name):,} "
                f"characters; the store holds at most {MAX_NAME_CHARS}",
                "shorten the sensor name",
                code="sensor_name_too_long",
                name="characters per sensor name",
                maximum=MAX_NAME_CHARS,
                value=len(name),
            )
        _no_nul(name, "sensor name")
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise DataValidationError(f"readings of {asset!r}: sensor name(s) given twice: {dup[:5]}")
    return names


def _status_array(asset: str, status: Sequence[Any] | None, n: int) -> np.ndarray:
    """Statuses as an object array of str or None (NaN -> None), checked against the column."""
    out = np.full(n, None, dtype=object)
    if status is None:
        return out
    ser = pd.Series(list(status), dtype="object")
    if len(ser) != n:
        raise DataValidationError(f"readings of {asset!r}: {len(ser)} statuses for {n} times")
    present = ser.notna().to_numpy()
    out[present] = ser[present].astype(str).to_numpy()
    for label in pd.unique(out[present]):
        if len(label) > MAX_STATUS_CHARS:
            raise StoreLimitError(
                f"readings of {asset!r}: status {label[:40]!r}… has {len(label):,} characters; "
                f"the store holds at most {MAX_STATUS_CHARS}",
                "a status is a short label such as NORMAL or BROKEN",
                code="status_too_long",
                name="characters per status",
                maximum=MAX_STATUS_CHARS,
                value=len(label),
            )
        _no_nul(label, "status")
    return out


def _fmt_time(us: int) -> str:
    return str(pd.Timestamp(int(us), unit="us"))


@dataclass
class _Chunk:
    """One asset's readings for one sensor set, checked, to the microsecond, one row per
    time (rows of the same time combined), sorted by time."""

    asset: str
    sensors: list[str]
    times_us: np.ndarray
    values: np.ndarray
    status: np.ndarray
    rows: int
    merged: int = 0
    duplicates: int = 0
    notes: list[str] = field(default_factory=list)

    def labels(self) -> tuple[np.ndarray, list[str]]:
        """1-based status codes into a label list (0 = no status), for fixed-size COPY rows."""
        codes, uniques = pd.factorize(self.status, sort=True)  # None -> -1
        if len(uniques) > 30_000:
            raise DataValidationError("too many distinct status labels", "status is a short label")
        return (codes + 1).astype(np.int16), [str(u) for u in uniques]


def _conflict(asset: str, count: int, first: dict[str, Any], within: bool) -> ReadingConflictError:
    if within:
        detail = (
            f"{first['field']!r} is sent {first['stored']!r} and {first['sent']!r} in one batch"
        )
    else:
        detail = f"{first['field']!r} is stored as {first['stored']!r}, sent {first['sent']!r}"
    return ReadingConflictError(
        f"readings of {asset!r} conflict with {'each other' if within else 'stored readings'} "
        f"at {first['time']}: {detail} ({count:,} conflicting reading(s)); nothing of this "
        "batch was stored",
        "a reading at a stored time may add sensors but not change a stored value: send "
        "each sensor's value once per time (a resend of the same value is fine)",
        conflicts=count,
        first={"asset": asset, **first},
    )


def _prepare(
    asset: Any, times: Any, values: Any, sensors: Sequence[str], status: Sequence[Any] | None
) -> _Chunk:
    asset = _check_asset(asset)
    names = _check_sensors(asset, sensors)
    idx = _reading_times(times)
    arr = np.ascontiguousarray(values, dtype=np.float64)
    if arr.ndim != 2 or arr.shape != (len(idx), len(names)) or not names:
        raise DataValidationError(
            f"readings for {asset!r}: {arr.shape} values for {len(idx)} times and "
            f"{len(names)} sensors",
            "give one value per sensor and time",
        )
    st = _status_array(asset, status, len(idx))
    ns = idx.asi8
    us = ns // 1000
    order = np.argsort(us, kind="stable")
    us, ns, arr, st = us[order], ns[order], arr[order], st[order]
    chunk = _Chunk(asset, names, us, arr, st, rows=len(us))
    repeat = us[1:] == us[:-1]
    if repeat.any():
        clash = np.flatnonzero(repeat & (ns[1:] != ns[:-1]))
        if len(clash):
            a, b = pd.Timestamp(int(ns[clash[0]])), pd.Timestamp(int(ns[clash[0] + 1]))
            raise DataValidationError(
                f"readings of {asset!r} at {a} and {b} differ only below a microsecond "
                f"({len(clash):,} such pair(s)); the store keeps times to the microsecond, so "
                "they would collapse into one reading",
                "round the times to microseconds, or give each reading its own microsecond",
            )
        _combine_repeats(chunk, repeat)
    sub = int((ns % 1000 != 0).sum())
    if sub:
        chunk.notes.append(
            f"{sub:,} reading time(s) of {asset!r} had digits below a microsecond: stored to "
            "the microsecond (the store's resolution)"
        )
    return chunk


def _combine_repeats(chunk: _Chunk, repeat: np.ndarray) -> None:
    """Rows of one time within a batch: merged per sensor, or a conflict (see the module)."""
    starts = np.flatnonzero(np.r_[True, ~repeat])
    ends = np.r_[starts[1:], len(chunk.times_us)]
    keep_values, keep_status = chunk.values[starts].copy(), chunk.status[starts].copy()
    conflicts: list[dict[str, Any]] = []
    for g, (a, b) in enumerate(zip(starts.tolist(), ends.tolist(), strict=True)):
        for r in range(a + 1, b):
            row, prev = chunk.values[r], keep_values[g]
            both = ~np.isnan(row) & ~np.isnan(prev)
            bad = np.flatnonzero(both & (row != prev))
            s_new, s_old = chunk.status[r], keep_status[g]
            if len(bad) or (s_new is not None and s_old is not None and s_new != s_old):
                j = int(bad[0]) if len(bad) else -1
                conflicts.append(
                    {
                        "time": _fmt_time(chunk.times_us[a]),
                        "field": chunk.sensors[j] if j >= 0 else "status",
                        "stored": float(prev[j]) if j >= 0 else s_old,
                        "sent": float(row[j]) if j >= 0 else s_new,
                    }
                )
                continue
            fill = np.isnan(prev) & ~np.isnan(row)
            if fill.any() or (s_old is None and s_new is not None):
                prev[fill] = row[fill]
                keep_status[g] = s_old if s_old is not None else s_new
                chunk.merged += 1
            else:
                chunk.duplicates += 1
    if conflicts:
        raise _conflict(chunk.asset, len(conflicts), conflicts[0], within=True)
    chunk.times_us, chunk.values, chunk.status = chunk.times_us[starts], keep_values, keep_status


@dataclass
class _Merge:
    times_us: list[int] = field(default_factory=list)
    values: list[np.ndarray] = field(default_factory=list)
    status: list[str | None] = field(default_factory=list)


def _reconcile(
    chunk: _Chunk,
    stored: list[tuple[int, int, Any, str | None]],
    names: dict[int, list[str]],
) -> tuple[int, dict[tuple[str, ...], _Merge]]:
    """Compare incoming rows with the stored rows of the same times.

    Returns (duplicates, merges by the union sensor set); raises on a conflict."""
    pos = {int(t): i for i, t in enumerate(chunk.times_us.tolist())}
    by_set: dict[int, list[tuple[int, int, Any, str | None]]] = {}
    for row in stored:
        by_set.setdefault(row[1], []).append(row)
    duplicates = 0
    merges: dict[tuple[str, ...], _Merge] = {}
    conflicts: list[dict[str, Any]] = []
    n_conflicts = 0
    for sid, rows in by_set.items():
        st_names = names[sid]
        st_index = {n: j for j, n in enumerate(st_names)}
        at = np.array([pos[r[0]] for r in rows], dtype=np.intp)
        v_st = np.array([r[2] for r in rows], dtype=np.float64).reshape(len(rows), len(st_names))
        v_in = chunk.values[at]
        common_in = [j for j, n in enumerate(chunk.sensors) if n in st_index]
        common_st = [st_index[chunk.sensors[j]] for j in common_in]
        new_in = [j for j, n in enumerate(chunk.sensors) if n not in st_index]
        a, b = v_st[:, common_st], v_in[:, common_in]
        bad = ~np.isnan(a) & ~np.isnan(b) & (a != b)
        s_st = [r[3] for r in rows]
        s_in = chunk.status[at]
        bad_status = np.array(
            [x is not None and y is not None and x != y for x, y in zip(s_st, s_in, strict=True)],
            dtype=bool,
        )
        bad_rows = bad.any(axis=1) | bad_status
        if bad_rows.any():
            n_conflicts += int(bad_rows.sum())
            i = int(np.flatnonzero(bad_rows)[0])
            if bad[i].any():
                j = int(np.flatnonzero(bad[i])[0])
                first = {
                    "field": chunk.sensors[common_in[j]],
                    "stored": float(a[i, j]),
                    "sent": float(b[i, j]),
                }
            else:
                first = {"field": "status", "stored": s_st[i], "sent": s_in[i]}
            conflicts.append({"time": _fmt_time(rows[i][0]), **first})
            continue
        fill = np.isnan(a) & ~np.isnan(b)
        added = ~np.isnan(v_in[:, new_in]) if new_in else np.zeros((len(rows), 0), dtype=bool)
        status_fill = np.array(
            [x is None and y is not None for x, y in zip(s_st, s_in, strict=True)], dtype=bool
        )
        changed = fill.any(axis=1) | added.any(axis=1) | status_fill
        duplicates += int((~changed).sum())
        if not changed.any():
            continue
        merged = v_st.copy()
        cols = np.asarray(common_st, dtype=np.intp)
        if len(cols):
            merged[:, cols] = np.where(fill, b, a)
        union = tuple(st_names) + tuple(chunk.sensors[j] for j in new_in)
        full = np.concatenate([merged, v_in[:, new_in]], axis=1) if new_in else merged
        target = merges.setdefault(union, _Merge())
        for i in np.flatnonzero(changed).tolist():
            target.times_us.append(rows[i][0])
            target.values.append(full[i])
            target.status.append(s_st[i] if s_st[i] is not None else s_in[i])
    if conflicts:
        first = min(conflicts, key=lambda c: str(c["time"]))
        raise _conflict(chunk.asset, n_conflicts, first, within=False)
    return duplicates, merges


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
            *float8_array_fields(k),
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
        rec["time"] = times_us[pos] - PG_EPOCH_US
        rec["len_sid"] = 4
        rec["sid"] = sid
        _fill_float8_array(rec, values[pos])
        rec["len_status"] = len(status_b) if code > 0 else -1
        if status_b:
            rec["status"] = status_b
        parts.append(rec.tobytes())
    parts.append(_PG_COPY_TRAILER)
    return b"".join(parts)


def _to_datetimes(us: Sequence[int] | np.ndarray) -> list[Any]:
    return list(pd.to_datetime(np.asarray(us, dtype=np.int64), unit="us").to_pydatetime())


def _to_us(times: Any) -> list[int]:
    return [int(v) for v in pd.DatetimeIndex(list(times)).as_unit("us").asi8]


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


def _insert_pg(conn: sa.Connection, chunk: _Chunk, sid: int) -> tuple[int, int, list[Any]]:
    """Fast path: when the store has nothing for this asset in the chunk's time range
    (the usual bulk load), COPY straight into ``readings``. Otherwise, or when a
    concurrent writer got there first, COPY into a temporary table, move the new rows
    with ``ON CONFLICT DO NOTHING RETURNING`` and lock the stored rows of the others.

    Returns (rows inserted, rows identical to the stored ones, the stored rows
    ``(time_us, sid, values, status)`` that differ from what was sent)."""
    import psycopg2.errors

    asset, times_us = chunk.asset, chunk.times_us
    codes, labels = chunk.labels()
    dbapi: Any = conn.connection.dbapi_connection
    with dbapi.cursor() as cur:
        lo, hi = _to_datetimes([times_us[0], times_us[-1]])
        cur.execute(
            "SELECT EXISTS (SELECT 1 FROM readings WHERE asset_id = %s "
            "AND time >= %s AND time <= %s)",
            (asset, lo, hi),
        )
        if not cur.fetchone()[0]:
            payload = _readings_copy_payload(asset, sid, times_us, codes, labels, chunk.values)
            cur.execute("SAVEPOINT sg_copy")
            try:
                cur.copy_expert(
                    "COPY readings (asset_id, time, sensor_set_id, sensor_values, status) "
                    "FROM STDIN WITH (FORMAT binary)",
                    io.BytesIO(payload),
                )
                cur.execute("RELEASE SAVEPOINT sg_copy")
                return len(times_us), 0, []
            except psycopg2.errors.UniqueViolation:
                cur.execute("ROLLBACK TO SAVEPOINT sg_copy")
        cur.execute(
            "CREATE TEMP TABLE IF NOT EXISTS sg_ingest "
            "(time timestamp, status int2, sensor_values float8[]) ON COMMIT DROP"
        )
        payload = _pg_copy_payload(times_us, codes, chunk.values)
        cur.copy_expert("COPY sg_ingest FROM STDIN WITH (FORMAT binary)", io.BytesIO(payload))
        params = {"asset": asset, "sid": sid, "labels": labels}
        cur.execute(
            "INSERT INTO readings (asset_id, time, sensor_set_id, sensor_values, status) "
            "SELECT %(asset)s, time, %(sid)s, sensor_values, (%(labels)s::text[])[status] "
            "FROM sg_ingest ON CONFLICT (asset_id, time) DO NOTHING",
            params,
        )
        inserted = int(cur.rowcount)
        # only the stored rows that differ from what was sent come back (and are locked):
        # an identical resend is a duplicate without moving its values (a 1,000-sensor
        # re-ingest would otherwise parse every stored array); NaN = NaN in PostgreSQL
        cur.execute(
            "SELECT r.time, r.sensor_set_id, r.sensor_values, r.status FROM readings r "
            "JOIN sg_ingest s ON r.time = s.time WHERE r.asset_id = %(asset)s AND NOT ("
            "r.sensor_set_id = %(sid)s AND r.sensor_values = s.sensor_values AND "
            "r.status IS NOT DISTINCT FROM (%(labels)s::text[])[s.status]) FOR UPDATE OF r",
            params,
        )
        found = cur.fetchall()
        cur.execute("DROP TABLE sg_ingest")
    us = _to_us([r[0] for r in found])
    identical = len(times_us) - inserted - len(found)
    return inserted, identical, [(t, int(r[1]), r[2], r[3]) for t, r in zip(us, found, strict=True)]


def _update_pg(conn: sa.Connection, asset: str, sid: int, merge: _Merge) -> None:
    from psycopg2.extras import execute_values

    rows = [
        (asset, t, sid, [float(v) for v in vals], st)
        for t, vals, st in zip(
            _to_datetimes(merge.times_us), merge.values, merge.status, strict=True
        )
    ]
    dbapi: Any = conn.connection.dbapi_connection
    with dbapi.cursor() as cur:
        execute_values(
            cur,
            "UPDATE readings AS r SET sensor_set_id = v.sid, sensor_values = v.vals, "
            "status = v.status FROM (VALUES %s) AS v(asset, time, sid, vals, status) "
            "WHERE r.asset_id = v.asset AND r.time = v.time",
            rows,
            template="(%s, %s::timestamp, %s::int, %s::float8[], %s::varchar)",
        )


def _sqlite_stamps(times_us: Sequence[int] | np.ndarray) -> list[str]:
    return list(
        pd.to_datetime(np.asarray(times_us, dtype=np.int64), unit="us").strftime(_SQLITE_TIME)
    )


def _insert_sqlite(conn: sa.Connection, chunk: _Chunk, sid: int) -> tuple[int, int, list[Any]]:
    """``INSERT ... ON CONFLICT DO NOTHING RETURNING`` (the first insert takes SQLite's
    write lock, so the stored rows read afterwards cannot change before the commit)."""
    stamps = _sqlite_stamps(chunk.times_us)
    rows = [
        (chunk.asset, stamp, sid, orjson.dumps(vals).decode(), st)
        for stamp, vals, st in zip(
            stamps, chunk.values.tolist(), chunk.status.tolist(), strict=True
        )
    ]
    sent = {row[1]: row[2:] for row in rows}
    dbapi: Any = conn.connection.dbapi_connection
    cur = dbapi.cursor()
    new: set[str] = set()
    try:
        for lo in range(0, len(rows), _SQLITE_ROWS_PER_INSERT):
            part = rows[lo : lo + _SQLITE_ROWS_PER_INSERT]
            cur.execute(
                "INSERT INTO readings (asset_id, time, sensor_set_id, sensor_values, status) "
                "VALUES " + ",".join(["(?, ?, ?, ?, ?)"] * len(part)) + " "
                "ON CONFLICT (asset_id, time) DO NOTHING RETURNING time",
                [v for row in part for v in row],
            )
            new.update(r[0] for r in cur.fetchall())
        rest = [s for s in stamps if s not in new]
        found: list[Any] = []
        for lo in range(0, len(rest), 500):
            keys = rest[lo : lo + 500]
            cur.execute(
                "SELECT time, sensor_set_id, sensor_values, status FROM readings "
                f"WHERE asset_id = ? AND time IN ({','.join('?' * len(keys))})",
                [chunk.asset, *keys],
            )
            found.extend(cur.fetchall())
    finally:
        cur.close()
    # an identical resend (same set, same JSON text, same status) is a duplicate without
    # parsing its values (a re-run of a file would otherwise parse every stored row)
    differ = [r for r in found if tuple(r[1:]) != sent[r[0]]]
    us = _to_us(pd.to_datetime([r[0] for r in differ], format=_SQLITE_TIME)) if differ else []
    stored = [
        (t, int(r[1]), [np.nan if v is None else v for v in orjson.loads(r[2])], r[3])
        for t, r in zip(us, differ, strict=True)
    ]
    return len(new), len(found) - len(differ), stored


def _update_sqlite(conn: sa.Connection, asset: str, sid: int, merge: _Merge) -> None:
    rows = [
        (sid, orjson.dumps([float(v) for v in vals]).decode(), st, asset, stamp)
        for stamp, vals, st in zip(
            _sqlite_stamps(merge.times_us), merge.values, merge.status, strict=True
        )
    ]
    dbapi: Any = conn.connection.dbapi_connection
    cur = dbapi.cursor()
    try:
        cur.executemany(
            "UPDATE readings SET sensor_set_id = ?, sensor_values = ?, status = ? "
            "WHERE asset_id = ? AND time = ?",
            rows,
        )
    finally:
        cur.close()


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@contextmanager
def _database_errors() -> Iterator[None]:
    """Database failures as SensorGuard errors: a value the database refuses is bad
    input (4xx), a size limit is a :class:`StoreLimitError`, a lost connection a
    :class:`StoreError` (retry later)."""
    try:
        yield
    except sa.exc.DBAPIError as exc:
        code = str(getattr(exc.orig, "pgcode", "") or "")
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
        if exc.connection_invalidated or isinstance(
            exc, sa.exc.OperationalError | sa.exc.InterfaceError
        ):
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
