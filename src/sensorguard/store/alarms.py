"""Live alarms in the store: written by the watch service, read by the API and the gate.

Rules of this room:

* An alarm row is identified by ``(asset_id, kind, sensor, start_time, model_version)``
  (unique): writing the same transition twice (a restart replaying a step) changes
  nothing, so the watch service can never create a duplicate event.
* Transitions are written with the caller's connection (:func:`apply_transitions`),
  inside the transaction that also moves the asset's checkpoint and fills the
  notification outbox; the readers here open their own connections.
* Operator labels are kept as a history (``alarm_labels``); the latest one counts.
  Labels: ``failure`` (a confirmed failure), ``false_alarm``, ``maintenance``
  (a planned stop, neither a failure nor a false alarm).
* Times are naive UTC, as everywhere in the store; lists (top sensors) and the detail
  are JSON text.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson
import sqlalchemy as sa

from sensorguard.errors import DataValidationError, SensorGuardError
from sensorguard.store.engine import dialect_insert, ensure_schema
from sensorguard.store.schema import (
    alarm_labels,
    alarms,
    predictions,
    readings,
    watch_checkpoints,
)
from sensorguard.timeutil import utc_now

if TYPE_CHECKING:
    import pandas as pd

LABELS = ("failure", "false_alarm", "maintenance")
STATES = ("open", "closed")
_KEY = ("asset_id", "kind", "sensor", "start_time", "model_version")
_JSON_COLUMNS = ("first_top_sensors", "top_sensors", "detail")


class AlarmNotFound(SensorGuardError):
    """No alarm with that id."""


def _alarm_id(alarm_id: Any) -> int:
    """The id as an int; an id no row can have (ids are 64-bit, from 1) is not found here,
    where the driver would raise OverflowError ("too large to convert to SQLite INTEGER")."""
    value = int(alarm_id)
    if not 1 <= value <= 2**63 - 1:
        raise AlarmNotFound(f"no alarm with id {alarm_id}", "list alarms with GET /v1/alarms")
    return value


def _insert(conn: sa.Connection, table: sa.Table) -> Any:
    return dialect_insert(conn, table)


# ---------------------------------------------------------------- writing (watch service)


def _encode(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    for c in _JSON_COLUMNS:
        if c in out and not isinstance(out[c], str):
            out[c] = orjson.dumps(out[c]).decode()
    return out


def apply_transitions(
    conn: sa.Connection, transitions: Iterable[Any], now: datetime | None = None
) -> list[int]:
    """Write alarm transitions (``live.events.Transition``) in the caller's transaction;
    the alarm id of each, in order. ``opened`` inserts (or, replayed, finds) the row;
    ``updated``/``closed`` update it, inserting it when its opening is not stored (a
    checkpoint restored from before the table existed)."""
    now = now or utc_now()
    ids: list[int] = []
    for t in transitions:
        row = _encode(t.alarm)
        row["updated_at"] = now
        if t.action == "closed":
            row["closed_at"] = now
        stmt = _insert(conn, alarms).values(**row, opened_at=now)
        update = {k: stmt.excluded[k] for k in row if k not in _KEY}
        if t.action == "opened":
            # a replayed opening must not undo a later update of the same event
            update = {"updated_at": stmt.excluded["updated_at"]}
        stmt = stmt.on_conflict_do_update(index_elements=list(_KEY), set_=update).returning(
            alarms.c.id
        )
        ids.append(int(conn.execute(stmt).scalar_one()))
    return ids


# ---------------------------------------------------------------- reading (API, console, gate)


def _alarm_dict(row: Any, label: dict[str, Any] | None = None) -> dict[str, Any]:
    d = dict(row._mapping)
    for c in _JSON_COLUMNS:
        d[c] = orjson.loads(d[c]) if d.get(c) else ([] if c != "detail" else {})
    d["start"] = d.pop("start_time")
    d["end"] = d.pop("end_time")
    d["duration_s"] = (d["end"] - d["start"]).total_seconds() if d["end"] is not None else None
    d["acknowledged"] = d["acknowledged_at"] is not None
    d["label"] = label
    return d


def _latest_labels(conn: sa.Connection, ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    if not ids:
        return {}
    q = (
        sa.select(alarm_labels)
        .where(alarm_labels.c.alarm_id.in_(list(ids)))
        .order_by(alarm_labels.c.alarm_id, alarm_labels.c.id)
    )
    out: dict[int, dict[str, Any]] = {}
    for r in conn.execute(q):
        m = dict(r._mapping)
        out[int(m["alarm_id"])] = {
            "label": m["label"],
            "failure_mode": m["failure_mode"],
            "note": m["note"],
            "by": m["labelled_by"],
            "at": m["created_at"],
        }
    return out


def _check_choice(value: str | None, choices: Sequence[str], what: str) -> None:
    if value is not None and value not in choices:
        raise DataValidationError(
            f"{what} must be one of {', '.join(choices)}, got {value!r}",
            f"use {what}={choices[0]}",
        )


def list_alarms(
    *,
    asset: str | None = None,
    kind: str | None = None,
    state: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    label: str | None = None,
    limit: int = 100,
    offset: int = 0,
    url: str | None = None,
) -> tuple[list[dict[str, Any]], int]:
    """Alarms matching the filters, newest start first, and how many match in total.
    ``start``/``end``: alarms overlapping ``[start, end)`` (an open alarm lasts until now);
    ``label``: only alarms whose latest operator label is this one."""
    _check_choice(state, STATES, "state")
    _check_choice(label, LABELS, "label")
    if limit < 1 or not 0 <= offset <= 2**63 - 1:
        raise DataValidationError(
            "limit must be >= 1 and offset in 0 .. 2**63-1", "e.g. limit=100&offset=0"
        )
    engine = ensure_schema(url)
    cond = []
    if asset is not None:
        cond.append(alarms.c.asset_id == asset)
    if kind is not None:
        cond.append(alarms.c.kind == kind)
    if state is not None:
        cond.append(alarms.c.state == state)
    if end is not None:
        cond.append(alarms.c.start_time < end)
    if start is not None:
        cond.append(sa.or_(alarms.c.end_time.is_(None), alarms.c.end_time >= start))
    if label is not None:
        latest = (
            sa.select(alarm_labels.c.alarm_id, sa.func.max(alarm_labels.c.id).label("mx"))
            .group_by(alarm_labels.c.alarm_id)
            .subquery()
        )
        labelled = (
            sa.select(alarm_labels.c.alarm_id)
            .join(latest, alarm_labels.c.id == latest.c.mx)
            .where(alarm_labels.c.label == label)
        )
        cond.append(alarms.c.id.in_(labelled))
    where = sa.and_(sa.true(), *cond)
    q = (
        sa.select(alarms)
        .where(where)
        .order_by(alarms.c.start_time.desc(), alarms.c.id.desc())
        .limit(limit)
        .offset(offset)
    )
    with engine.connect() as conn:
        rows = conn.execute(q).all()
        total = int(
            conn.execute(sa.select(sa.func.count()).select_from(alarms).where(where)).scalar_one()
        )
        labels = _latest_labels(conn, [int(r.id) for r in rows])
    return [_alarm_dict(r, labels.get(int(r.id))) for r in rows], total


def get_alarm(alarm_id: int, url: str | None = None) -> dict[str, Any]:
    """One alarm with its label history (``labels``, oldest first)."""
    alarm_id = _alarm_id(alarm_id)
    engine = ensure_schema(url)
    with engine.connect() as conn:
        row = conn.execute(sa.select(alarms).where(alarms.c.id == int(alarm_id))).first()
        if row is None:
            raise AlarmNotFound(f"no alarm with id {alarm_id}", "list alarms with GET /v1/alarms")
        history = [
            {
                "label": r.label,
                "failure_mode": r.failure_mode,
                "note": r.note,
                "by": r.labelled_by,
                "at": r.created_at,
            }
            for r in conn.execute(
                sa.select(alarm_labels)
                .where(alarm_labels.c.alarm_id == int(alarm_id))
                .order_by(alarm_labels.c.id)
            )
        ]
    out = _alarm_dict(row, history[-1] if history else None)
    out["labels"] = history
    return out


def acknowledge_alarm(
    alarm_id: int, by: str | None = None, url: str | None = None
) -> dict[str, Any]:
    """Mark an alarm acknowledged (the first acknowledgement is kept)."""
    alarm_id = _alarm_id(alarm_id)
    engine = ensure_schema(url)
    with engine.begin() as conn:
        res = conn.execute(
            sa.update(alarms)
            .where(alarms.c.id == int(alarm_id), alarms.c.acknowledged_at.is_(None))
            .values(acknowledged_at=utc_now(), acknowledged_by=by)
        )
        if (
            res.rowcount == 0
            and conn.execute(sa.select(alarms.c.id).where(alarms.c.id == int(alarm_id))).first()
            is None
        ):
            raise AlarmNotFound(f"no alarm with id {alarm_id}", "list alarms with GET /v1/alarms")
    return get_alarm(alarm_id, url)


def label_alarm(
    alarm_id: int,
    label: str,
    *,
    failure_mode: str | None = None,
    note: str | None = None,
    by: str | None = None,
    url: str | None = None,
) -> dict[str, Any]:
    """Record an operator label (``failure`` / ``false_alarm`` / ``maintenance``)."""
    _check_choice(label, LABELS, "label")
    if label is None:
        raise DataValidationError("label is required", f"one of {', '.join(LABELS)}")
    alarm_id = _alarm_id(alarm_id)
    engine = ensure_schema(url)
    with engine.begin() as conn:
        if conn.execute(sa.select(alarms.c.id).where(alarms.c.id == int(alarm_id))).first() is None:
            raise AlarmNotFound(f"no alarm with id {alarm_id}", "list alarms with GET /v1/alarms")
        conn.execute(
            sa.insert(alarm_labels).values(
                alarm_id=int(alarm_id),
                label=label,
                failure_mode=failure_mode,
                note=note,
                labelled_by=by,
                created_at=utc_now(),
            )
        )
    return get_alarm(alarm_id, url)


def labelled_alarms(
    start: datetime | None = None,
    end: datetime | None = None,
    *,
    asset: str | None = None,
    kind: str = "failure",
    url: str | None = None,
) -> list[dict[str, Any]]:
    """Alarms of ``kind`` overlapping ``[start, end)`` that carry an operator label
    (the latest counts), oldest first: the ground truth of the label-based gate."""
    out: list[dict[str, Any]] = []
    offset = 0
    while True:
        page, total = list_alarms(
            asset=asset, kind=kind, start=start, end=end, limit=1000, offset=offset, url=url
        )
        out += [a for a in page if a["label"] is not None]
        offset += len(page)
        if not page or offset >= total:
            break
    out.sort(key=lambda a: (a["start"], a["id"]))
    return out


def asset_live_status(
    asset_ids: Sequence[str] | None = None, url: str | None = None
) -> dict[str, dict[str, Any]]:
    """Per asset: ``last_reading_at`` (newest stored reading), ``last_scored_at``,
    ``score`` and ``is_anomaly`` of the last scored reading, ``state`` (``alarm`` /
    ``normal`` / ``not_scored``), ``model_name``/``model_version`` of the watch service's
    checkpoint, ``scored``/``late`` reading counts and ``open_alarms`` (id, kind, sensor,
    start). Assets with readings or a checkpoint; ``asset_ids`` restricts the answer."""
    engine = ensure_schema(url)
    with engine.connect() as conn:
        q_last = sa.select(readings.c.asset_id, sa.func.max(readings.c.time)).group_by(
            readings.c.asset_id
        )
        q_ck = sa.select(watch_checkpoints)
        q_open = sa.select(
            alarms.c.id, alarms.c.asset_id, alarms.c.kind, alarms.c.sensor, alarms.c.start_time
        ).where(alarms.c.state == "open")
        if asset_ids is not None:
            ids = list(asset_ids)
            q_last = q_last.where(readings.c.asset_id.in_(ids))
            q_ck = q_ck.where(watch_checkpoints.c.asset_id.in_(ids))
            q_open = q_open.where(alarms.c.asset_id.in_(ids))
        last = {r[0]: r[1] for r in conn.execute(q_last)}
        cks = {r.asset_id: r for r in conn.execute(q_ck)}
        opened: dict[str, list[dict[str, Any]]] = {}
        for r in conn.execute(q_open.order_by(alarms.c.start_time)):
            opened.setdefault(r.asset_id, []).append(
                {"id": int(r.id), "kind": r.kind, "sensor": r.sensor, "start": r.start_time}
            )
    out: dict[str, dict[str, Any]] = {}
    for asset in sorted(set(last) | set(cks)):
        ck = cks.get(asset)
        state = "not_scored" if ck is None else ("alarm" if ck.is_anomaly else "normal")
        out[asset] = {
            "asset_id": asset,
            "last_reading_at": last.get(asset),
            "last_scored_at": None if ck is None else ck.last_time,
            "score": None if ck is None else ck.last_score,
            "is_anomaly": None if ck is None else bool(ck.is_anomaly),
            "state": state,
            "model_name": None if ck is None else ck.model_name,
            "model_version": None if ck is None else ck.model_version,
            "scored": 0 if ck is None else int(ck.n_scored),
            "late": 0 if ck is None else int(ck.n_late),
            "open_alarms": opened.get(asset, []),
        }
    return out


def read_scores(
    asset: str,
    start: datetime | None = None,
    end: datetime | None = None,
    *,
    model_version: str | None = None,
    limit: int = 10_000,
    url: str | None = None,
) -> pd.DataFrame:
    """Stored predictions of ``asset`` with ``start <= time < end``, oldest first (the
    newest ``limit`` of them): ``time, model_name, model_version, score, is_anomaly,
    state, top_sensors``."""
    import pandas as pd

    engine = ensure_schema(url)
    cols = [
        predictions.c.time,
        predictions.c.model_name,
        predictions.c.model_version,
        predictions.c.score,
        predictions.c.is_anomaly,
        predictions.c.state,
        predictions.c.top_sensors,
    ]
    q = sa.select(*cols).where(predictions.c.asset_id == asset)
    if start is not None:
        q = q.where(predictions.c.time >= start)
    if end is not None:
        q = q.where(predictions.c.time < end)
    if model_version is not None:
        q = q.where(predictions.c.model_version == str(model_version))
    q = q.order_by(predictions.c.time.desc()).limit(int(limit))
    with engine.connect() as conn:
        rows = conn.execute(q).all()
    frame = pd.DataFrame(rows, columns=[c.name for c in cols])
    return frame.iloc[::-1].reset_index(drop=True)
