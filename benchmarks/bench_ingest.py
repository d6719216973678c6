"""Bulk ingestion throughput of the readings store (a reading = all sensors at one time).

Measures, on a throw-away PostgreSQL database (dropped afterwards) and on SQLite:

* ``file``: ``ingest_file`` end to end — read + validate a CSV, binary COPY, upsert;
* ``frame``: ``insert_readings`` on already-validated readings (the store's own cost);
* ``again``: the same readings once more (all duplicates, nothing written).

    .venv/bin/python benchmarks/bench_ingest.py --rows 200000 --sensors 9 52

Target: >= 50,000 readings/s into PostgreSQL.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from sensorguard.data import Readings
from sensorguard.store import dispose_engines, ingest_file, insert_readings, normalize_url, upgrade


def make_frame(rows: int, sensors: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        rng.normal(50, 10, size=(rows, sensors)).round(4),
        columns=[f"sensor_{i:02d}" for i in range(sensors)],
    )
    frame.insert(0, "asset_id", "pump-01")
    frame.insert(0, "timestamp", pd.date_range("2026-01-01", periods=rows, freq="10s"))
    frame["machine_status"] = np.where(rng.random(rows) < 0.01, "BROKEN", "NORMAL")
    return frame


def _admin(pg_url: str) -> sa.Engine:
    return sa.create_engine(normalize_url(pg_url), isolation_level="AUTOCOMMIT")


def run_one(url: str, frame: pd.DataFrame, csv: Path, repeat: int) -> dict[str, float]:
    readings = Readings.from_frame(frame)
    out: dict[str, list[float]] = {"file": [], "frame": [], "again": []}
    for _ in range(repeat):
        db_reset(url)
        upgrade(url)
        t = time.perf_counter()
        res = ingest_file(csv, url=url)
        out["file"].append(len(frame) / (time.perf_counter() - t))
        assert res.inserted == len(frame)
        db_reset(url)
        upgrade(url)
        t = time.perf_counter()
        res = insert_readings(readings, url=url)
        out["frame"].append(len(frame) / (time.perf_counter() - t))
        t = time.perf_counter()
        res = insert_readings(readings, url=url)
        out["again"].append(len(frame) / (time.perf_counter() - t))
        assert res.duplicates == len(frame)
    return {k: statistics.median(v) for k, v in out.items()}


def db_reset(url: str) -> None:
    from sensorguard.store import get_engine

    engine = get_engine(url)
    with engine.begin() as conn:
        for table in ("alarm_events", "predictions", "readings", "sensor_sets"):
            if sa.inspect(conn).has_table(table):
                conn.execute(sa.text(f"DELETE FROM {table}"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--sensors", type=int, nargs="+", default=[9, 52])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-sqlite", action="store_true")
    args = ap.parse_args()

    name = f"sg_bench_ingest_{uuid.uuid4().hex[:8]}"
    admin = _admin(args.pg_url)
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    pg = make_url(normalize_url(args.pg_url)).set(database=name).render_as_string(False)
    print(
        f"{'backend':<10} {'sensors':>7} {'rows':>9} "
        f"{'file r/s':>10} {'frame r/s':>10} {'dupes r/s':>10}"
    )
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for k in args.sensors:
                frame = make_frame(args.rows, k)
                csv = Path(tmp) / f"readings_{k}.csv"
                frame.to_csv(csv, index=False)
                targets = [("postgresql", pg)]
                if not args.no_sqlite:
                    targets.append(("sqlite", f"sqlite:///{tmp}/bench.db"))
                for backend, url in targets:
                    r = run_one(url, frame, csv, args.repeat)
                    print(
                        f"{backend:<10} {k:>7} {args.rows:>9,} {r['file']:>10,.0f} "
                        f"{r['frame']:>10,.0f} {r['again']:>10,.0f}",
                        flush=True,
                    )
    finally:
        dispose_engines()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
