"""The dialect writers: new rows in, stored rows that differ back, merges written.

Rules of this room: one function pair per dialect, same contract. ``_insert_*`` writes
the rows of a prepared chunk that are new and returns ``(inserted, identical, stored rows
that differ)``, those rows locked until the commit; ``_update_*`` writes the merged rows
:func:`~sensorguard.store.merge._reconcile` decided. PostgreSQL streams binary COPY
(:mod:`sensorguard.store.copy`); SQLite uses multi-row ``INSERT ... ON CONFLICT DO NOTHING
RETURNING``.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson
import pandas as pd
import sqlalchemy as sa

from sensorguard.store.copy import _pg_copy_payload, _readings_copy_payload
from sensorguard.store.merge import _Chunk, _Merge

_SQLITE_TIME = "%Y-%m-%d %H:%M:%S.%f"  # SQLAlchemy's DateTime storage format on SQLite
_SQLITE_ROWS_PER_INSERT = 2_000  # x 5 parameters, under SQLite's 32,766-variable limit


def _to_datetimes(us: Sequence[int] | np.ndarray) -> list[Any]:
    return list(pd.to_datetime(np.asarray(us, dtype=np.int64), unit="us").to_pydatetime())


def _to_us(times: Any) -> list[int]:
    return [int(v) for v in pd.DatetimeIndex(list(times)).as_unit("us").asi8]


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
