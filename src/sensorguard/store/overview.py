"""Bulk reads for fleet overviews: the recent scores of many assets in one query.

One windowed query instead of one query per asset: with 500 assets the per-asset loop
costs 500 round trips (measured in benchmarks/bench_console.py), the window function one.
Works on SQLite (3.25+) and PostgreSQL alike.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from sensorguard.store.engine import ensure_schema
from sensorguard.store.schema import predictions


def recent_scores(
    asset_ids: Sequence[str] | None = None, per_asset: int = 48, url: str | None = None
) -> dict[str, list[float]]:
    """The newest ``per_asset`` stored scores of each asset, oldest first."""
    if per_asset < 1:
        return {}
    engine = ensure_schema(url)
    rank = (
        sa.func.row_number()
        .over(partition_by=predictions.c.asset_id, order_by=predictions.c.time.desc())
        .label("rk")
    )
    inner = sa.select(predictions.c.asset_id, predictions.c.time, predictions.c.score, rank)
    if asset_ids is not None:
        inner = inner.where(predictions.c.asset_id.in_(list(asset_ids)))
    sub = inner.subquery()
    query = (
        sa.select(sub.c.asset_id, sub.c.score)
        .where(sub.c.rk <= per_asset)
        .order_by(sub.c.asset_id, sub.c.time)
    )
    out: dict[str, list[float]] = {}
    with engine.connect() as conn:
        for asset, score in conn.execute(query):
            out.setdefault(asset, []).append(float(score))
    return out
