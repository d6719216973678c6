"""Per-asset checkpoints of the watch service: where each asset's scoring stands.

Rules of this room:

* A checkpoint holds the asset's last scored reading time, the model version that
  scored it, the reading counts (scored, late) and one JSON document with everything
  needed to continue exactly where the stream stopped: the detector's per-asset
  filter and alarm state, the open failure event and the data-quality runs.
* It is written in the same transaction as the alarm transitions and outbox rows that
  the same readings caused, so after a crash at any point the store holds either the
  whole step or none of it: a restart re-scores from the checkpoint and writes the
  same events, never a duplicate, never a gap.
* ``seq`` fences writers: a save succeeds only if the stored ``seq`` is still the one
  this process loaded (``UPDATE ... WHERE seq = :loaded``). A process whose lease moved
  to another one while it was paused finds its write refused and drops the asset.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
import sqlalchemy as sa

from sensorguard.store.engine import dialect_insert
from sensorguard.store.schema import watch_checkpoints
from sensorguard.timeutil import utc_now


@dataclass
class Checkpoint:
    asset_id: str
    model_name: str
    model_version: str
    last_time: datetime | None = None
    seq: int = 0  # 0 = not stored yet
    n_scored: int = 0
    n_late: int = 0
    last_score: float | None = None
    is_anomaly: bool = False
    state: dict[str, Any] = field(default_factory=dict)


def load_checkpoints(conn: sa.Connection, assets: list[str]) -> dict[str, Checkpoint]:
    """The stored checkpoints of ``assets`` (missing ones are absent)."""
    out: dict[str, Checkpoint] = {}
    for lo in range(0, len(assets), 500):
        q = sa.select(watch_checkpoints).where(
            watch_checkpoints.c.asset_id.in_(assets[lo : lo + 500])
        )
        for r in conn.execute(q):
            out[r.asset_id] = Checkpoint(
                asset_id=r.asset_id,
                model_name=r.model_name,
                model_version=r.model_version,
                last_time=r.last_time,
                seq=int(r.seq),
                n_scored=int(r.n_scored),
                n_late=int(r.n_late),
                last_score=r.last_score,
                is_anomaly=bool(r.is_anomaly),
                state=orjson.loads(r.state) if r.state else {},
            )
    return out


def save_checkpoint(conn: sa.Connection, ck: Checkpoint) -> bool:
    """Store ``ck`` if nobody else moved the asset's checkpoint since it was loaded;
    ``ck.seq`` is advanced on success. False = fenced out (roll the transaction back)."""
    values = {
        "model_name": ck.model_name,
        "model_version": ck.model_version,
        "last_time": ck.last_time,
        "seq": ck.seq + 1,
        "n_scored": ck.n_scored,
        "n_late": ck.n_late,
        "last_score": ck.last_score,
        "is_anomaly": ck.is_anomaly,
        "state": orjson.dumps(ck.state, option=orjson.OPT_SERIALIZE_NUMPY).decode(),
        "updated_at": utc_now(),
    }
    if ck.seq == 0:
        stmt = dialect_insert(conn, watch_checkpoints)
        res = conn.execute(
            stmt.values(asset_id=ck.asset_id, **values).on_conflict_do_nothing(
                index_elements=["asset_id"]
            )
        )
    else:
        res = conn.execute(
            sa.update(watch_checkpoints)
            .where(watch_checkpoints.c.asset_id == ck.asset_id, watch_checkpoints.c.seq == ck.seq)
            .values(**values)
        )
    if res.rowcount != 1:
        return False
    ck.seq += 1
    return True


def save_checkpoints(conn: sa.Connection, cks: list[Checkpoint]) -> set[str]:
    """Store several checkpoints at once, each fenced by its ``seq`` as in
    :func:`save_checkpoint`; the asset ids stored (``seq`` advanced). The others were
    moved by another process: the caller writes nothing else of theirs.

    PostgreSQL: one ``INSERT`` for the new ones and one ``UPDATE ... FROM unnest`` for
    the rest, instead of a statement per asset (a watch pass writes up to a hundred);
    the rows are locked in asset order first (``FOR UPDATE``), so two processes writing
    overlapping assets during a takeover wait for each other instead of deadlocking.
    Written first in a pass's transaction: the lock is what keeps a second writer of
    the same asset out until this one committed or rolled back."""
    if not cks:
        return set()
    if conn.dialect.name != "postgresql":
        return {ck.asset_id for ck in cks if save_checkpoint(conn, ck)}
    from sqlalchemy.dialects.postgresql import insert as pg_insert

    now = utc_now()
    saved: set[str] = set()
    new = sorted((ck for ck in cks if ck.seq == 0), key=lambda ck: ck.asset_id)
    old = sorted((ck for ck in cks if ck.seq != 0), key=lambda ck: ck.asset_id)
    state = {
        ck.asset_id: orjson.dumps(ck.state, option=orjson.OPT_SERIALIZE_NUMPY).decode()
        for ck in cks
    }
    if new:
        rows = [
            {
                "asset_id": ck.asset_id,
                "model_name": ck.model_name,
                "model_version": ck.model_version,
                "last_time": ck.last_time,
                "seq": 1,
                "n_scored": ck.n_scored,
                "n_late": ck.n_late,
                "last_score": ck.last_score,
                "is_anomaly": ck.is_anomaly,
                "state": state[ck.asset_id],
                "updated_at": now,
            }
            for ck in new
        ]
        stmt = (
            pg_insert(watch_checkpoints)
            .values(rows)
            .on_conflict_do_nothing(index_elements=["asset_id"])
            .returning(watch_checkpoints.c.asset_id)
        )
        saved |= {r[0] for r in conn.execute(stmt)}
    if old:
        got = conn.exec_driver_sql(
            "WITH u AS (SELECT * FROM unnest(%(a)s::varchar[], %(seq)s::bigint[], "
            "%(m)s::varchar[], %(v)s::varchar[], %(t)s::timestamp[], %(ns)s::bigint[], "
            "%(nl)s::bigint[], %(ls)s::float8[], %(f)s::boolean[], %(st)s::text[]) "
            "AS u(a, seq, m, v, t, ns, nl, ls, f, st)), "
            "locked AS (SELECT w.asset_id FROM watch_checkpoints w JOIN u "
            "ON w.asset_id = u.a AND w.seq = u.seq ORDER BY w.asset_id FOR UPDATE OF w) "
            "UPDATE watch_checkpoints w SET model_name = u.m, model_version = u.v, "
            "last_time = u.t, seq = u.seq + 1, n_scored = u.ns, n_late = u.nl, "
            "last_score = u.ls, is_anomaly = u.f, state = u.st, updated_at = %(now)s "
            "FROM u WHERE w.asset_id = u.a AND w.seq = u.seq "
            "AND w.asset_id IN (SELECT asset_id FROM locked) RETURNING w.asset_id",
            {
                "a": [ck.asset_id for ck in old],
                "seq": [ck.seq for ck in old],
                "m": [ck.model_name for ck in old],
                "v": [ck.model_version for ck in old],
                "t": [ck.last_time for ck in old],
                "ns": [ck.n_scored for ck in old],
                "nl": [ck.n_late for ck in old],
                "ls": [ck.last_score for ck in old],
                "f": [ck.is_anomaly for ck in old],
                "st": [state[ck.asset_id] for ck in old],
                "now": now,
            },
        )
        saved |= {r[0] for r in got}
    for ck in cks:
        if ck.asset_id in saved:
            ck.seq += 1
    return saved
