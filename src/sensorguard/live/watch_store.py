"""What one watch step reads from and writes to the store, per dialect.

Rules of this room: plain functions of a connection, no service state. Reads return the
readings after a checkpoint in time order, at most ``batch_rows``, as numpy arrays in
the model's sensor order (PostgreSQL through binary ``COPY``, measured 8x faster than a
SELECT of the arrays); writes add predictions without ever replacing one
(``ON CONFLICT DO NOTHING``). The transaction is the caller's: the
:class:`~sensorguard.live.watch.Watcher` commits a step's reads, predictions, alarms and
checkpoint together.

(About 650 lines on purpose: each read and write is written twice, once per dialect
(PostgreSQL's binary ``COPY`` laid out by numpy, SQLite's plain statements), and the
pair must change together; split by dialect, a change of what a pass stores would be
made in two rooms.)
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import orjson
import sqlalchemy as sa

from sensorguard.store.copy import (
    _PG_COPY_HEADER,
    _PG_COPY_TRAILER,
    PG_EPOCH_US,
    float8_array_fields,
)
from sensorguard.store.schema import predictions, reading_counts, readings, sensor_sets
from sensorguard.timeutil import utc_now

_PG_EPOCH = datetime(2000, 1, 1)
_US = timedelta(microseconds=1)
_COPY_HEADER = 19  # signature (11) + flags (4) + header extension length (4)


def _copy_escape(text: str) -> str:
    """A value for COPY's text format (backslash, tab, newline, carriage return)."""
    if not any(c in text for c in "\\\t\n\r"):
        return text
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


class SensorSets:
    """The stored sensor sets by id, and per (set, model sensors) where each stored
    sensor goes in the model's order (a few sets per fleet: read once, kept). Keyed by
    the model's sensor list, not its version: with routing by asset, version 1 of two
    machine types are two different lists."""

    def __init__(self) -> None:
        self._sets: dict[int, list[str]] = {}
        self._index: dict[tuple[int, tuple[str, ...]], tuple[np.ndarray, np.ndarray]] = {}

    def map(
        self, conn: sa.Connection, set_id: int, sensors: list[str]
    ) -> tuple[np.ndarray, np.ndarray]:
        """For a stored sensor set: (positions in the stored array, positions in the
        model's sensor order) of the sensors both have."""
        key = (set_id, tuple(sensors))
        got = self._index.get(key)
        if got is None:
            names = self._sets.get(set_id)
            if names is None:
                text = conn.execute(
                    sa.select(sensor_sets.c.sensors).where(sensor_sets.c.id == set_id)
                ).scalar_one()
                names = self._sets[set_id] = list(orjson.loads(text))
            pos = {s: i for i, s in enumerate(names)}
            pairs = [(pos[s], j) for j, s in enumerate(sensors) if s in pos]
            src = np.array([p[0] for p in pairs], dtype=np.intp)
            dst = np.array([p[1] for p in pairs], dtype=np.intp)
            got = self._index[key] = (src, dst)
        return got


def assets_with_new_readings(
    engine: sa.Engine, assets: list[str], after: list[datetime | None]
) -> set[str]:
    """Which of ``assets`` have readings newer than ``after`` (their checkpoints, in
    the same order): one index probe per asset, one round trip."""
    if not assets:
        return set()
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            rows = conn.exec_driver_sql(
                "SELECT v.a FROM unnest(%(a)s::varchar[], %(t)s::timestamp[]) AS v(a, t) "
                "WHERE EXISTS (SELECT 1 FROM readings r WHERE r.asset_id = v.a "
                "AND (v.t IS NULL OR r.time > v.t))",
                {"a": assets, "t": after},
            ).all()
            return {r[0] for r in rows}
        out = set()
        for asset, t in zip(assets, after, strict=True):
            q = sa.select(sa.literal(1)).where(readings.c.asset_id == asset)
            if t is not None:
                q = q.where(readings.c.time > t)
            if conn.execute(q.limit(1)).first() is not None:
                out.add(asset)
        return out


def read_new(
    conn: sa.Connection,
    asset: str,
    after: datetime | None,
    *,
    sensors: list[str],
    batch_rows: int,
    sets: SensorSets,
) -> tuple[np.ndarray, np.ndarray]:
    """The next readings of ``asset`` after ``after``, at most ``batch_rows``: (times as
    datetime64[us], X in the order of the model's ``sensors`` with NaN = missing)."""
    if conn.dialect.name == "postgresql":
        got = _read_new_copy(conn, asset, after, sensors=sensors, batch_rows=batch_rows, sets=sets)
        if got is not None:
            return got
    q = sa.select(readings.c.time, readings.c.sensor_set_id, readings.c.sensor_values).where(
        readings.c.asset_id == asset
    )
    if after is not None:
        q = q.where(readings.c.time > after)
    q = q.order_by(readings.c.time).limit(batch_rows)
    rows = conn.execute(q).all()
    p = len(sensors)
    if not rows:
        return np.zeros(0, dtype="datetime64[us]"), np.zeros((0, p))
    times = np.array([r[0] for r in rows], dtype="datetime64[us]")
    X = np.full((len(rows), p), np.nan)
    set_ids = np.array([r[1] for r in rows])
    for sid in np.unique(set_ids).tolist():
        idx = np.flatnonzero(set_ids == sid)
        block = np.array([rows[int(i)][2] for i in idx], dtype=np.float64)
        src, dst = sets.map(conn, int(sid), sensors)
        if src.size:
            X[np.ix_(idx, dst)] = block[:, src]
    return times, X


def _read_new_copy(
    conn: sa.Connection,
    asset: str,
    after: datetime | None,
    *,
    sensors: list[str],
    batch_rows: int,
    sets: SensorSets,
) -> tuple[np.ndarray, np.ndarray] | None:
    """PostgreSQL: the same rows through ``COPY ... TO STDOUT (FORMAT binary)``, laid
    out by numpy. Measured 8x faster than a SELECT of the float8[] column, whose
    per-value parsing into Python floats dominated a step (12 s of 13 s for 200k
    readings). ``None`` when the rows are not uniform (several sensor sets in the
    step, NULL elements): the caller takes the SELECT path."""

    def sql(cur: Any) -> str:
        where = cur.mogrify(
            "asset_id = %s" + ("" if after is None else " AND time > %s"),
            (asset,) if after is None else (asset, after),
        ).decode()
        return (
            "COPY (SELECT time, sensor_set_id, sensor_values FROM readings WHERE "
            f"{where} ORDER BY time LIMIT {int(batch_rows)}) "
            "TO STDOUT (FORMAT binary)"
        )

    p = len(sensors)
    body = _copy_out(conn, sql)
    if not body:
        return np.zeros(0, dtype="datetime64[us]"), np.zeros((0, p))
    rec = _copy_records(body, ())
    if rec is None:
        return None
    set_ids = rec["set_id"]
    if (set_ids != set_ids[0]).any():
        return None
    times = (rec["time"] + PG_EPOCH_US).astype("datetime64[us]")
    values = rec["elems"]["value"].astype(np.float64)
    src, dst = sets.map(conn, int(set_ids[0]), sensors)
    X = np.full((len(rec), p), np.nan)
    if src.size:
        X[:, dst] = values[:, src]
    return times, X


def _copy_out(conn: sa.Connection, sql: Callable[[Any], str]) -> bytes:
    """The rows of a binary ``COPY ... TO STDOUT`` (without its header and trailer) on the
    connection's raw psycopg cursor; ``sql`` builds the statement with that cursor (its
    ``mogrify`` quotes the values)."""
    raw = conn.connection.dbapi_connection
    assert raw is not None
    cur = raw.cursor()
    try:
        buf = io.BytesIO()
        cur.copy_expert(sql(cur), buf)
    finally:
        cur.close()
    return buf.getvalue()[_COPY_HEADER:-2]


def read_new_many(
    conn: sa.Connection,
    assets: list[str],
    after: list[datetime | None],
    *,
    sensors: list[str],
    limit: int,
    sets: SensorSets,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """:func:`read_new` of several assets scored by the same model (``after``: their
    checkpoints, in the same order), each at most ``limit`` readings: one ``COPY`` for
    all of them on PostgreSQL (a ``LATERAL`` index scan per asset), instead of a round
    trip per asset. Assets without new readings are absent. Falls back to one
    :func:`read_new` per asset when the rows are not uniform (arrays of several
    lengths, NULL elements) and on other dialects."""
    if not assets:
        return {}
    got = None
    if conn.dialect.name == "postgresql":
        got = _read_many_copy(conn, assets, after, sensors=sensors, limit=limit, sets=sets)
    if got is None:
        got = {}
        for asset, t in zip(assets, after, strict=True):
            times, X = read_new(conn, asset, t, sensors=sensors, batch_rows=limit, sets=sets)
            if times.size:
                got[asset] = (times, X)
    return got


def _read_many_copy(
    conn: sa.Connection,
    assets: list[str],
    after: list[datetime | None],
    *,
    sensors: list[str],
    limit: int,
    sets: SensorSets,
) -> dict[str, tuple[np.ndarray, np.ndarray]] | None:

    def sql(cur: Any) -> str:
        # '-infinity', not "t IS NULL OR": an OR is no index condition, and the scan of
        # an asset without checkpoint would then filter its whole history
        args = cur.mogrify(
            "%s::varchar[], %s::timestamp[]", (assets, [t or "-infinity" for t in after])
        ).decode()
        return (
            "COPY (SELECT v.i, r.time, r.sensor_set_id, r.sensor_values "
            f"FROM unnest({args}) WITH ORDINALITY AS v(a, t, i) CROSS JOIN LATERAL "
            "(SELECT time, sensor_set_id, sensor_values FROM readings "
            f"WHERE asset_id = v.a AND time > v.t ORDER BY time LIMIT {int(limit)}) r) "
            "TO STDOUT (FORMAT binary)"
        )

    body = _copy_out(conn, sql)
    if not body:
        return {}
    rec = _copy_records(body, ("i",))
    if rec is None:
        return None
    # each asset's rows in time order (the nested loop gives them so; not promised by SQL)
    order = np.lexsort((rec["time"], rec["i"]))
    rec = rec[order]
    idx = rec["i"].astype(np.int64) - 1
    times_all = (rec["time"] + PG_EPOCH_US).astype("datetime64[us]")
    values = rec["elems"]["value"].astype(np.float64)
    set_ids = rec["set_id"].astype(np.int64)
    p = len(sensors)
    X_all = np.full((len(rec), p), np.nan)
    uniq = np.unique(set_ids).tolist()
    for sid in uniq:
        src, dst = sets.map(conn, int(sid), sensors)
        if not src.size:
            continue
        if len(uniq) == 1:
            X_all[:, dst] = values[:, src]
        else:  # assets of the pass stored with different sensor sets
            rows = np.flatnonzero(set_ids == sid)
            X_all[np.ix_(rows, dst)] = values[np.ix_(rows, src)]
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    cuts = np.flatnonzero(np.diff(idx)) + 1
    for lo, hi in zip([0, *cuts.tolist()], [*cuts.tolist(), len(rec)], strict=True):
        out[assets[int(idx[lo])]] = (times_all[lo:hi], X_all[lo:hi])
    return out


@dataclass(frozen=True)
class StoredCounts:
    """What the late-readings check needs of one asset, read in one snapshot."""

    total: int  # readings stored for the asset (``reading_counts``, kept by the writers)
    after: int  # of them with a time after the last scored one (not scored yet)
    before: int | None  # with a time before the first scored one (when asked), else None


def stored_counts_many(
    conn: sa.Connection, spans: list[tuple[str, datetime, datetime, bool]]
) -> dict[str, StoredCounts]:
    """:class:`StoredCounts` of several ``(asset, first, last, want_before)``; one
    statement on PostgreSQL (one snapshot, so a commit of the ingester in between
    cannot make the total and the tail disagree). Its cost is the unscored tail, and
    the readings before ``first`` only when asked (once per asset): not the scored
    history, which the former ``count(*)`` of ``[first, last]`` read every 30 s."""
    if not spans:
        return {}
    if conn.dialect.name != "postgresql":
        return {a: _stored_counts(conn, a, lo, hi, nb) for a, lo, hi, nb in spans}
    rows = conn.exec_driver_sql(
        "SELECT v.a, COALESCE(c.n, 0), (SELECT count(*) FROM readings r "
        "WHERE r.asset_id = v.a AND r.time > v.hi), CASE WHEN v.nb THEN (SELECT count(*) "
        "FROM readings r WHERE r.asset_id = v.a AND r.time < v.lo) END "
        "FROM unnest(%(a)s::varchar[], %(lo)s::timestamp[], %(hi)s::timestamp[], "
        "%(nb)s::boolean[]) AS v(a, lo, hi, nb) LEFT JOIN reading_counts c ON c.asset_id = v.a",
        {
            "a": [s[0] for s in spans],
            "lo": [s[1] for s in spans],
            "hi": [s[2] for s in spans],
            "nb": [bool(s[3]) for s in spans],
        },
    ).all()
    return {
        r[0]: StoredCounts(int(r[1]), int(r[2]), None if r[3] is None else int(r[3])) for r in rows
    }


def _stored_counts(
    conn: sa.Connection, asset: str, lo: datetime, hi: datetime, want_before: bool
) -> StoredCounts:
    """SQLite: a transaction reads one snapshot, so separate statements agree."""
    total = conn.execute(
        sa.select(reading_counts.c.n).where(reading_counts.c.asset_id == asset)
    ).scalar()
    after = conn.execute(
        sa.select(sa.func.count()).where(readings.c.asset_id == asset, readings.c.time > hi)
    ).scalar_one()
    before = None
    if want_before:
        before = conn.execute(
            sa.select(sa.func.count()).where(readings.c.asset_id == asset, readings.c.time < lo)
        ).scalar_one()
    return StoredCounts(int(total or 0), int(after), None if before is None else int(before))


def relax_commit(conn: sa.Connection) -> None:
    """PostgreSQL: let this step's commit return before its WAL reaches the disk
    (``synchronous_commit = off`` for this transaction only). Only for a step that
    wrote no alarm transition (the watch service calls it then): its predictions and
    checkpoint can be lost only by a crash of PostgreSQL itself, and then the
    checkpoint is simply older, the process is fenced out of its newer in-memory state
    (``seq``) and scores the same readings again to the same result. A step with a
    transition commits synchronously, which also flushes every earlier step, so no
    alarm or notification is ever visible before it is durable; readings are never
    affected (the ingester commits synchronously before it acknowledges).

    Measured: the flush was about 3 ms of a 4 ms step (100 assets x 13 readings,
    PostgreSQL on the same 2 cores), so a pass over 100 assets spent 0.3 s waiting for
    the disk, which set the publish-to-alarm latency."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("SET LOCAL synchronous_commit = off")


@dataclass
class Predictions:
    """One asset's scored readings of a watch pass, to be written as predictions."""

    asset: str
    times: np.ndarray
    res: Any
    flags: np.ndarray
    offset: int  # readings of the asset scored before these (for ``every``)
    model_name: str
    model_version: str
    sensors: list[str]


def write_predictions(
    conn: sa.Connection,
    asset: str,
    times: np.ndarray,
    res: Any,
    flags: np.ndarray,
    offset: int,
    *,
    every: int,
    model_name: str,
    model_version: str,
    sensors: list[str],
) -> None:
    """Every ``every``-th reading (counted from ``offset``) and every flagged one of a
    scored step into ``predictions`` (1 = all, 0 = none)."""
    write_predictions_many(
        conn,
        [Predictions(asset, times, res, flags, offset, model_name, model_version, sensors)],
        every=every,
    )


def write_predictions_many(conn: sa.Connection, parts: list[Predictions], *, every: int) -> None:
    """:func:`write_predictions` of several assets in one statement (a ``COPY`` above
    ``_INSERT_ROWS`` rows): a watch pass writes them all with a round trip or three
    instead of one to three per asset."""
    if every <= 0 or not parts:
        return
    now = utc_now()
    kept = [(part, _kept(part, every)) for part in parts]
    kept = [(part, idx) for part, idx in kept if idx.size]
    total = sum(idx.size for _p, idx in kept)
    if not total:
        return
    if conn.dialect.name == "postgresql" and total > _INSERT_ROWS:
        _copy_predictions(conn, kept, now)
        return
    rows = [r for part, idx in kept for r in _prediction_rows(part, idx, now)]
    if conn.dialect.name == "postgresql":
        _insert_predictions(conn, rows)
        return
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    conn.execute(sqlite_insert(predictions).on_conflict_do_nothing(), rows)


def _kept(part: Predictions, every: int) -> np.ndarray:
    """Positions of the part's readings that get a prediction row."""
    n = part.times.size
    if every == 1:
        return np.arange(n)
    return np.flatnonzero(((np.arange(n) + part.offset) % every == 0) | part.flags)


def _tops(part: Predictions, idx: np.ndarray) -> tuple[list[str], np.ndarray]:
    """The kept rows' top sensors as (distinct ``;``-joined names, index per row)."""
    return _top_strings(part.sensors, np.asarray(part.res.top)[idx])


def _top_strings(sensors: list[str], top: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Rows of top sensor indices as (distinct ``;``-joined names, index per row): the
    join runs per distinct tuple, not per row. Each tuple is one integer (the indices
    as digits base the sensor count), so finding the distinct ones is one integer sort,
    not ``np.unique(axis=0)`` (40 ms for 100 assets x 300 rows)."""
    names = np.asarray(sensors, dtype=object)
    if top.ndim != 2 or not top.shape[1]:
        return [""], np.zeros(top.shape[0], dtype=np.intp)
    base, k = max(len(sensors), 1), top.shape[1]
    if base**k >= 2**62:
        uniq, inv = np.unique(top, axis=0, return_inverse=True)
        return [";".join(r) for r in names[uniq].tolist()], inv.reshape(-1)
    weights = base ** np.arange(k - 1, -1, -1, dtype=np.int64)
    codes, inv = np.unique(top.astype(np.int64) @ weights, return_inverse=True)
    digits = (codes[:, None] // weights[None, :]) % base
    return [";".join(r) for r in names[digits].tolist()], inv.reshape(-1)


def _scores_states(part: Predictions, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = part.times.size
    state = np.asarray(getattr(part.res, "state", np.full(n, -1)))[idx].astype(np.int64)
    score = np.asarray(part.res.score, dtype=np.float64)[idx]
    return np.nan_to_num(score, nan=0.0, posinf=1e308, neginf=-1e308), state


def _prediction_rows(part: Predictions, idx: np.ndarray, now: datetime) -> list[dict[str, Any]]:
    texts, inv = _tops(part, idx)
    score, state = _scores_states(part, idx)
    asset, model_name, model_version = part.asset, part.model_name, part.model_version
    return [
        {
            "asset_id": asset,
            "time": t,
            "model_name": model_name,
            "model_version": model_version,
            "score": s,
            "is_anomaly": f,
            "state": st,
            "top_sensors": texts[k],
            "created_at": now,
        }
        for t, s, f, st, k in zip(
            part.times[idx].astype(datetime).tolist(),
            score.tolist(),
            part.flags[idx].tolist(),
            state.tolist(),
            inv.tolist(),
            strict=True,
        )
    ]


_INSERT_ROWS = 100
"""Up to this many predictions a step writes them with one ``INSERT ... SELECT FROM
unnest(...) ON CONFLICT DO NOTHING`` (one round trip) instead of the overlap probe and a
``COPY`` (three). A live step under moderate load holds a few readings per asset, and
there the round trips, not the rows, are the cost. Measured per step (PostgreSQL on the
same 2 cores, commit not waiting for the flush): 10 rows 1.5 ms vs 2.1-2.5 ms through
COPY, 50 rows 3.0 vs 3.3-3.8, 200 rows 5.8-7.5 vs 4.8-5.0, 1,000 rows 26 vs 15 (the
arrays are adapted value by value)."""


def _insert_predictions(conn: sa.Connection, rows: list[dict[str, Any]]) -> None:
    """PostgreSQL, a small step: one statement, idempotent like the COPY path."""
    conn.exec_driver_sql(
        "INSERT INTO predictions (asset_id, time, model_name, model_version, score, "
        "is_anomaly, state, top_sensors, created_at) "
        "SELECT u.a, u.t, u.m, u.v, u.s, u.f, u.st, u.tp, %(c)s FROM unnest("
        "%(a)s::varchar[], %(t)s::timestamp[], %(m)s::varchar[], %(v)s::varchar[], "
        "%(s)s::float8[], %(f)s::boolean[], %(st)s::integer[], %(tp)s::text[]) "
        "AS u(a, t, m, v, s, f, st, tp) ON CONFLICT DO NOTHING",
        {
            "c": rows[0]["created_at"],
            "a": [r["asset_id"] for r in rows],
            "t": [r["time"] for r in rows],
            "m": [r["model_name"] for r in rows],
            "v": [r["model_version"] for r in rows],
            "s": [r["score"] for r in rows],
            "f": [r["is_anomaly"] for r in rows],
            "st": [r["state"] for r in rows],
            "tp": [r["top_sensors"] for r in rows],
        },
    )


_PRED_COLS = (
    "asset_id, time, model_name, model_version, score, is_anomaly, state, top_sensors, created_at"
)


def _predictions_payload(kept: list[tuple[Predictions, np.ndarray]], now: datetime) -> bytes:
    """The kept rows in ``COPY`` binary format, laid out by numpy: the rows of all
    assets whose text fields have the same byte lengths are one record array (COPY
    takes rows in any order; usually the whole pass is one). Measured on 30k rows
    (100 assets x 300): about 0.25 s per pass building dicts and text lines before, a
    few ms now."""
    cols: dict[str, list[np.ndarray]] = {k: [] for k in ("a", "m", "v", "t", "s", "f", "st")}
    lens: dict[str, list[np.ndarray]] = {k: [] for k in ("a", "m", "v")}
    for part, idx in kept:
        n = idx.size
        score, state = _scores_states(part, idx)
        for key, b in (
            ("a", part.asset.encode()),
            ("m", part.model_name.encode()),
            ("v", part.model_version.encode()),
        ):
            cols[key].append(np.full(n, b, dtype=f"S{max(len(b), 1)}"))
            lens[key].append(np.full(n, len(b), dtype=np.int64))
        cols["t"].append(part.times[idx].astype("datetime64[us]").astype(np.int64) - PG_EPOCH_US)
        cols["s"].append(score)
        cols["f"].append(np.asarray(part.flags, dtype=bool)[idx])
        cols["st"].append(state)
    # the top sensors: distinct tuples over all assets of a sensor list at once (a
    # pass has at most a few hundred), joined once each
    total = sum(idx.size for _p, idx in kept)
    by_sensors: dict[tuple[str, ...], list[tuple[int, Predictions, np.ndarray]]] = {}
    at = 0
    for part, idx in kept:
        by_sensors.setdefault(tuple(part.sensors), []).append((at, part, idx))
        at += idx.size
    texts: list[bytes] = []
    inv_all = np.empty(total, dtype=np.intp)
    for sensors, group in by_sensors.items():
        top = np.concatenate([np.asarray(part.res.top)[idx] for _at, part, idx in group])
        strings, inv = _top_strings(list(sensors), top)
        pos = np.concatenate([np.arange(a, a + idx.size) for a, _p, idx in group])
        inv_all[pos] = inv + len(texts)
        texts += [t.encode() for t in strings]
    widths = np.array([len(t) for t in texts], dtype=np.int64)
    cols["tp"] = [np.array(texts, dtype=f"S{max(int(widths.max()), 1)}")[inv_all]]
    lens["tp"] = [widths[inv_all]]
    col = {k: np.concatenate(v) for k, v in cols.items()}
    ln = {k: np.concatenate(v) for k, v in lens.items()}
    created = (now - _PG_EPOCH) // _US
    # one record layout per combination of text lengths
    # (byte lengths bounded by the schema: 200, 200 and 50 characters, so below 4096;
    # top sensors below 2**20 bytes)
    shape = ((ln["a"] * 4096 + ln["m"]) * 4096 + ln["v"]) * (1 << 20) + ln["tp"]
    if shape.min() == shape.max():  # the usual pass: one layout, no sort
        layouts, which = shape[:1], None
    else:
        layouts, which = np.unique(shape, return_inverse=True)
    parts = [_PG_COPY_HEADER]
    for j, key in enumerate(layouts.tolist()):
        la, lm = key >> 44, (key >> 32) & 4095
        lv, ltp = (key >> 20) & 4095, key & ((1 << 20) - 1)
        sel = slice(None) if which is None else np.flatnonzero(which.reshape(-1) == j)
        fields: list[tuple[str, str]] = [("nfields", ">i2")]
        for name, width in (("a", la), ("t", -8), ("m", lm), ("v", lv)):
            fields.append((f"len_{name}", ">i4"))
            if width == -8:
                fields.append((name, ">i8"))
            elif width:
                fields.append((name, f"S{width}"))
        fields += [("len_s", ">i4"), ("s", ">f8"), ("len_f", ">i4"), ("f", "u1")]
        fields += [("len_st", ">i4"), ("st", ">i4"), ("len_tp", ">i4")]
        if ltp:
            fields.append(("tp", f"S{ltp}"))
        fields += [("len_c", ">i4"), ("c", ">i8")]
        t = col["t"][sel]
        rec = np.empty(t.size, dtype=np.dtype(fields))
        rec["nfields"] = 9
        for name, width in (("a", la), ("m", lm), ("v", lv), ("tp", ltp)):
            rec[f"len_{name}"] = width
            if width:
                rec[name] = col[name][sel]
        rec["len_t"], rec["t"] = 8, t
        rec["len_s"], rec["s"] = 8, col["s"][sel]
        rec["len_f"], rec["f"] = 1, col["f"][sel]
        rec["len_st"], rec["st"] = 4, col["st"][sel]
        rec["len_c"], rec["c"] = 8, created
        parts.append(rec.tobytes())
    parts.append(_PG_COPY_TRAILER)
    return b"".join(parts)


def _copy_predictions(
    conn: sa.Connection, kept: list[tuple[Predictions, np.ndarray]], now: datetime
) -> None:
    """PostgreSQL: binary ``COPY`` straight into ``predictions`` when none is stored
    yet for these assets, versions and time spans (the live case; one probe for all),
    else through a temporary table and ``INSERT ... ON CONFLICT DO NOTHING`` (a span
    scored before, e.g. by ``sensorguard store score``). Measured on 20k rows: about
    140k rows/s direct and 64k rows/s through the temporary table, against 15k rows/s
    for one multi-row INSERT over arrays (text COPY; the binary payload since)."""
    overlap = conn.exec_driver_sql(
        "SELECT 1 FROM unnest(%(a)s::varchar[], %(m)s::varchar[], %(v)s::varchar[], "
        "%(lo)s::timestamp[], %(hi)s::timestamp[]) AS u(a, m, v, lo, hi) WHERE EXISTS "
        "(SELECT 1 FROM predictions p WHERE p.asset_id = u.a AND p.model_name = u.m "
        "AND p.model_version = u.v AND p.time >= u.lo AND p.time <= u.hi) LIMIT 1",
        {
            "a": [p.asset for p, _i in kept],
            "m": [p.model_name for p, _i in kept],
            "v": [p.model_version for p, _i in kept],
            "lo": [p.times[idx].min().astype(datetime) for p, idx in kept],
            "hi": [p.times[idx].max().astype(datetime) for p, idx in kept],
        },
    ).first()
    payload = _predictions_payload(kept, now)
    raw = conn.connection.dbapi_connection
    assert raw is not None
    cur = raw.cursor()
    try:
        target = "predictions"
        if overlap is not None:
            cur.execute("CREATE TEMP TABLE IF NOT EXISTS sg_watch_predictions (LIKE predictions)")
            cur.execute("TRUNCATE sg_watch_predictions")
            target = "sg_watch_predictions"
        cur.copy_expert(
            f"COPY {target} ({_PRED_COLS}) FROM STDIN (FORMAT binary)", io.BytesIO(payload)
        )
        if overlap is not None:
            cur.execute(
                "INSERT INTO predictions SELECT * FROM sg_watch_predictions ON CONFLICT DO NOTHING"
            )
    finally:
        cur.close()


def _copy_records(body: bytes, lead: tuple[str, ...]) -> np.ndarray | None:
    """The rows of a binary ``COPY`` of ``(*lead, time, sensor_set_id, sensor_values)``
    (``lead``: int8 columns) as one structured array, or ``None`` when the rows do not
    all carry arrays of the same length (the caller then reads them one by one)."""
    skip = 12 * len(lead)  # each int8 column: its length (int4) and its value
    if len(body) < 46 + skip:
        return None
    k = int.from_bytes(body[38 + skip : 42 + skip], "big", signed=True)  # first array's length
    if k <= 0 or len(body) % (46 + skip + 12 * k):
        return None
    fields: list[tuple[str, str]] = [("nfields", ">i2")]
    for name in lead:
        fields += [(f"len_{name}", ">i4"), (name, ">i8")]
    row = np.dtype(
        [
            *fields,
            ("len_time", ">i4"),
            ("time", ">i8"),
            ("len_set", ">i4"),
            ("set_id", ">i4"),
            *float8_array_fields(k),
        ]
    )
    rec = np.frombuffer(body, dtype=row)
    if (
        (rec["nfields"] != 3 + len(lead)).any()
        or (rec["dim"] != k).any()
        or (rec["elems"]["len"] != 8).any()
    ):
        return None
    return rec
