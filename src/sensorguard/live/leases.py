"""Splitting the assets between several watch processes: leases in the store.

Rules of this room:

* Every process registers itself in ``watch_workers`` and heartbeats every
  ``ttl / 3`` seconds; a worker whose heartbeat is older than ``ttl`` is dead.
* An asset is scored by the process holding its lease (``watch_leases``); a lease
  lasts ``ttl`` seconds and is renewed with the heartbeat. Each live process aims at
  its fair share, ``ceil(assets / live workers)``: it claims free or expired leases up
  to it and releases the leases above it (between steps, so nothing is half done).
* So when a process dies (even ``kill -9``), its leases expire after at most ``ttl``
  seconds and the others claim them at their next heartbeat: the assets are scored
  again within ``ttl + ttl / 3`` seconds (13.3 s with the default 10 s), continuing
  from the checkpoints the dead process committed.
* A lease is an optimisation, not the guarantee: the checkpoint's ``seq`` fence
  (:mod:`sensorguard.live.checkpoints`) keeps two processes that both believe they
  own an asset from writing the same step twice.
* Times are this host's UTC clock; processes on several hosts need synchronised
  clocks (NTP) to within a small part of ``ttl``.
"""

from __future__ import annotations

import math
import os
import socket
import uuid
from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from sensorguard.store.engine import dialect_insert
from sensorguard.store.schema import watch_checkpoints, watch_leases, watch_workers
from sensorguard.timeutil import utc_now


def new_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def _insert(conn: sa.Connection, table: sa.Table) -> Any:
    return dialect_insert(conn, table)


def store_assets(conn: sa.Connection) -> list[str]:
    """Every asset with readings or a checkpoint, sorted. A skip scan over the readings'
    primary key (one index probe per asset instead of reading every row)."""
    skip = sa.text(
        "WITH RECURSIVE t(a) AS ("
        " SELECT (SELECT asset_id FROM readings ORDER BY asset_id LIMIT 1)"
        " UNION ALL"
        " SELECT (SELECT asset_id FROM readings WHERE asset_id > t.a ORDER BY asset_id LIMIT 1)"
        " FROM t WHERE t.a IS NOT NULL)"
        " SELECT a FROM t WHERE a IS NOT NULL"
    )
    found = {r[0] for r in conn.execute(skip)}
    found |= {r[0] for r in conn.execute(sa.select(watch_checkpoints.c.asset_id))}
    return sorted(found)


class Leases:
    """This process's leases on assets."""

    def __init__(self, engine: sa.Engine, worker_id: str | None = None, ttl: float = 10.0) -> None:
        self.engine = engine
        self.worker_id = worker_id or new_worker_id()
        self.ttl = float(ttl)
        self.owned: set[str] = set()
        self.workers = 1

    def refresh(self, assets: list[str] | None = None) -> set[str]:
        """Heartbeat, renew, and claim or release leases towards the fair share of
        ``assets`` (default: every asset in the store). Returns the assets owned now."""
        now = utc_now()
        ttl = timedelta(seconds=self.ttl)
        with self.engine.begin() as conn:
            if assets is None:
                assets = store_assets(conn)
            stmt = _insert(conn, watch_workers).values(
                worker_id=self.worker_id, started_at=now, heartbeat_at=now
            )
            conn.execute(
                stmt.on_conflict_do_update(index_elements=["worker_id"], set_={"heartbeat_at": now})
            )
            conn.execute(
                sa.delete(watch_workers).where(watch_workers.c.heartbeat_at < now - 3 * ttl)
            )
            self.workers = max(
                1,
                int(
                    conn.execute(
                        sa.select(sa.func.count()).where(watch_workers.c.heartbeat_at >= now - ttl)
                    ).scalar_one()
                ),
            )
            conn.execute(
                sa.update(watch_leases)
                .where(watch_leases.c.owner == self.worker_id)
                .values(expires_at=now + ttl)
            )
            rows = conn.execute(sa.select(watch_leases)).all()
            held = {r.asset_id: r for r in rows}
            mine = sorted(a for a, r in held.items() if r.owner == self.worker_id)
            fair = math.ceil(len(assets) / self.workers) if assets else 0
            if len(mine) > fair:
                extra = mine[fair:]
                conn.execute(
                    sa.delete(watch_leases).where(
                        watch_leases.c.owner == self.worker_id, watch_leases.c.asset_id.in_(extra)
                    )
                )
                mine = mine[:fair]
            want = fair - len(mine)
            if want > 0:
                free = [a for a in assets if a not in held or held[a].expires_at < now]
                for asset in free:
                    if want <= 0:
                        break
                    stmt = _insert(conn, watch_leases).values(
                        asset_id=asset, owner=self.worker_id, expires_at=now + ttl, acquired_at=now
                    )
                    stmt = stmt.on_conflict_do_update(
                        index_elements=["asset_id"],
                        set_={
                            "owner": stmt.excluded.owner,
                            "expires_at": stmt.excluded.expires_at,
                            "acquired_at": stmt.excluded.acquired_at,
                        },
                        where=watch_leases.c.expires_at < now,
                    ).returning(watch_leases.c.asset_id)
                    if conn.execute(stmt).first() is not None:
                        mine.append(asset)
                        want -= 1
        self.owned = set(mine)
        return set(self.owned)

    def release_all(self) -> None:
        """Give every lease back and leave (clean shutdown): the others claim at once."""
        with self.engine.begin() as conn:
            conn.execute(sa.delete(watch_leases).where(watch_leases.c.owner == self.worker_id))
            conn.execute(
                sa.delete(watch_workers).where(watch_workers.c.worker_id == self.worker_id)
            )
        self.owned = set()
