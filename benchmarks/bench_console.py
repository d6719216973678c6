"""Console overview server time with N assets (default 500): bulk query vs per-asset loop.

Seeds an embedded (SQLite) store with N registered assets, 48 scores each, open alarms
on 5 % of them, then times what ``GET /console`` does on the server: gather the rows
(``console.data.overview_rows``) and render the template. The obvious alternative, one
``read_scores`` query per asset for the sparklines, is timed in the same run.

    .venv/bin/python benchmarks/bench_console.py --assets 500 --repeat 7
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np


def seed(url: str, n_assets: int, per_asset: int = 48) -> None:
    import sqlalchemy as sa

    from sensorguard.live.events import Transition
    from sensorguard.store.alarms import apply_transitions
    from sensorguard.store.assets import put_asset
    from sensorguard.store.engine import ensure_schema
    from sensorguard.store.ingest import insert_frame
    from sensorguard.store.schema import predictions

    engine = ensure_schema(url)
    now = datetime.now(UTC).replace(tzinfo=None)
    times = [now - timedelta(minutes=per_asset - i) for i in range(per_asset)]
    rng = np.random.default_rng(0)
    rows = []
    opened = []
    for i in range(n_assets):
        asset = f"pump-{i:04d}"
        put_asset(asset, "pump-centrifugal", site=f"site-{i % 7}", url=url)
        insert_frame(engine, asset, times[-3:], rng.normal(size=(3, 4)), ["a", "b", "c", "d"])
        for t, s in zip(times, rng.uniform(0, 2, per_asset), strict=True):
            rows.append(
                {
                    "asset_id": asset,
                    "time": t,
                    "model_name": "pump-centrifugal",
                    "model_version": "1",
                    "score": float(s),
                    "is_anomaly": False,
                    "state": 0,
                    "top_sensors": "[]",
                    "created_at": now,
                }
            )
        if i % 20 == 0:
            alarm = {
                "asset_id": asset,
                "kind": "failure",
                "sensor": "",
                "state": "open",
                "start_time": times[10],
                "last_time": times[-1],
                "model_name": "pump-centrifugal",
                "model_version": "1",
            }
            opened.append(Transition("opened", asset, "failure", "", times[10], "1", alarm))
    with engine.begin() as conn:
        conn.execute(sa.insert(predictions), rows)
        apply_transitions(conn, opened)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--assets", type=int, default=500)
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()

    from sensorguard.serving.console import data
    from sensorguard.serving.console.routes import templates
    from sensorguard.serving.settings import ServingSettings
    from sensorguard.store.alarms import read_scores

    home = Path(tempfile.mkdtemp(prefix="sg-console-bench-"))
    settings = ServingSettings(home=home)
    url = settings.resolved_store_url
    t0 = time.perf_counter()
    seed(url, args.assets)
    print(f"seeded {args.assets} assets in {time.perf_counter() - t0:.1f} s ({url})")
    template = templates.get_template("overview.html")

    def render(rows: list) -> str:
        return template.render(
            root="/console",
            static="/console/static",
            csrf="x",
            logged_in=True,
            token_required=False,
            admin=False,
            user="",
            flash=None,
            assets=rows,
            summary=data.summary(rows),
            generated_at=data.now_text(),
            refresh_seconds=5,
            page="overview",
        )

    def bulk() -> int:
        return len(render(data.overview_rows(settings)))

    def per_asset() -> int:
        # the obvious alternative: one query per asset for its sparkline
        rows = data.overview_rows(settings)
        for r in rows:
            read_scores(r["asset_id"], limit=48, url=url)
        return len(render(rows))

    results = {}
    for name, fn in (("bulk query (shipped)", bulk), ("per-asset queries", per_asset)):
        fn()  # warm-up: caches, schema check
        ts = []
        for _ in range(args.repeat):
            t = time.perf_counter()
            size = fn()
            ts.append(time.perf_counter() - t)
        results[name] = statistics.median(ts)
        print(
            f"{name:24s} median {results[name] * 1000:7.1f} ms  "
            f"(min {min(ts) * 1000:.1f}, max {max(ts) * 1000:.1f}; page {size / 1024:.0f} KiB)"
        )
    a, b = results["bulk query (shipped)"], results["per-asset queries"]
    print(f"ratio per-asset / bulk: {b / a:.1f}x")


if __name__ == "__main__":
    main()
