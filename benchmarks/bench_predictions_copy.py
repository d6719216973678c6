"""The watch loop's write of a pass's predictions into PostgreSQL, and where its time goes.

Writes ``--passes`` passes of ``--assets`` x ``--rows`` predictions (a watch pass of 100
assets x 300 readings: 30,000 rows, 10 sensors, top 3) through the watch loop's own
write, :func:`sensorguard.live.watch_store.write_predictions_many` (binary ``COPY``; each
pass one transaction committed as a pass without alarm transitions commits), into the
``predictions`` table of a throw-away database migrated with the store's migrations
(dropped afterwards). The table is created afresh for every trial from the migrated
one, then changed by the variant; the variants alternate in order over ``--rounds``.

Per variant (median over the rounds): rows/s (wall time of write + commit), the
PostgreSQL backend's CPU time per row (from /proc: the server runs on this machine,
and other clients' work does not count in it), the Python side of the write (payload
build, overlap probe) per pass, WAL bytes per row (cluster-wide: other clients' writes
count), and the table and index sizes. ``speedup`` = the variant's rows/s over
``base``'s, per round, as a median; ``CPU gain`` = ``base``'s backend CPU per row over
the variant's (the steadier figure on a shared machine: between rounds of one variant
the wall time moved by 14-75 % there, the backend CPU by up to 10 %, once 23 %).
Results: docs/benchmarks.md, "The predictions COPY on its own".

Variants (``base`` = the table as migrated; the others are bounds or candidates):

* ``nokey``: no primary key at all, and so no overlap probe (the bound of any key
  change; not a candidate);
* ``uniq_idx``: a unique index instead of the primary key constraint;
* ``collate_c``: the key's text columns with ``COLLATE "C"``;
* ``key3``: the key without ``model_name`` (the bound of a narrower key, e.g. an
  integer model id); ``c_key3``: that and ``COLLATE "C"``;
* ``noprobe``: without the overlap probe before the ``COPY``;
* ``top_empty``: empty ``top_sensors`` (the bound of any narrower encoding of them).

    .venv/bin/python benchmarks/bench_predictions_copy.py
    .venv/bin/python benchmarks/bench_predictions_copy.py --variants base nokey --rounds 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from sensorguard.live import watch_store
from sensorguard.store import dispose_engines, normalize_url, upgrade

MODEL_NAME, MODEL_VERSION = "sensor-failure-detector", "1"
SENSORS = [f"sensor_{k:02d}" for k in range(10)]
START = np.datetime64("2026-01-01T00:00:00", "us")

# DDL run on the fresh table (a copy of the migrated one) of a trial
VARIANT_DDL: dict[str, list[str]] = {
    "base": [],
    "nokey": ["ALTER TABLE predictions DROP CONSTRAINT predictions_pkey"],
    "uniq_idx": [
        "ALTER TABLE predictions DROP CONSTRAINT predictions_pkey",
        "CREATE UNIQUE INDEX uq_predictions ON predictions "
        "(asset_id, time, model_name, model_version)",
    ],
    "collate_c": [
        'ALTER TABLE predictions ALTER COLUMN asset_id TYPE varchar(200) COLLATE "C", '
        'ALTER COLUMN model_name TYPE varchar(200) COLLATE "C", '
        'ALTER COLUMN model_version TYPE varchar(50) COLLATE "C"'
    ],
    "key3": [
        "ALTER TABLE predictions DROP CONSTRAINT predictions_pkey, "
        "ADD PRIMARY KEY (asset_id, time, model_version)"
    ],
    "c_key3": [
        'ALTER TABLE predictions ALTER COLUMN asset_id TYPE varchar(200) COLLATE "C", '
        'ALTER COLUMN model_version TYPE varchar(50) COLLATE "C", '
        "DROP CONSTRAINT predictions_pkey, ADD PRIMARY KEY (asset_id, time, model_version)"
    ],
    "noprobe": [],
    "top_empty": [],
}


def _empty_tops(sensors: list[str], top: np.ndarray) -> tuple[list[str], np.ndarray]:
    return [""], np.zeros(top.shape[0], dtype=np.intp)


# functions of watch_store replaced during a trial of the variant
VARIANT_PATCHES: dict[str, dict[str, Callable[..., Any]]] = {
    "top_empty": {"_top_strings": _empty_tops}
}
# variants without the overlap probe (without an index it is a sequential scan)
NO_PROBE = {"nokey", "noprobe"}
PROBE_SQL = "SELECT 1 FROM unnest("  # how the overlap probe of _copy_predictions starts


class _NoRow:
    def first(self) -> None:
        return None


class ProbeTimer:
    """The connection as ``write_predictions_many`` sees it: times the overlap probe
    (``_copy_predictions``' first statement), or answers it "nothing stored" without
    asking PostgreSQL (``skip``)."""

    def __init__(self, conn: sa.Connection, skip: bool) -> None:
        self._conn, self._skip = conn, skip
        self.seconds, self.count = 0.0, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    def exec_driver_sql(self, sql: str, *args: Any, **kwargs: Any) -> Any:
        if not sql.startswith(PROBE_SQL):
            return self._conn.exec_driver_sql(sql, *args, **kwargs)
        self.count += 1
        if self._skip:
            return _NoRow()
        t = time.perf_counter()
        try:  # psycopg2 fetches the rows at execute: this is the probe's round trip
            return self._conn.exec_driver_sql(sql, *args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - t


def make_results(assets: int, rows: int, seed: int = 0) -> list[Any]:
    """One scored result per asset (scores, top sensors, states), reused by every pass."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(assets):
        out.append(
            SimpleNamespace(
                score=rng.gamma(2.0, 0.5, rows),
                top=np.argsort(rng.random((rows, len(SENSORS))), axis=1)[:, :3],
                state=rng.integers(0, 4, rows),
                flags=rng.random(rows) < 0.01,
            )
        )
    return out


def pass_parts(results: list[Any], k: int, rows: int) -> list[watch_store.Predictions]:
    """The predictions of the ``k``-th pass: each asset's next ``rows`` readings, one
    per second."""
    times = START + (np.arange(rows) + k * rows).astype("timedelta64[s]")
    return [
        watch_store.Predictions(
            f"pump-{a:03d}", times, res, res.flags, k * rows, MODEL_NAME, MODEL_VERSION, SENSORS
        )
        for a, res in enumerate(results)
    ]


def backend_cpu(pid: int) -> float:
    """CPU seconds (user + system) of a PostgreSQL backend on this machine."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def patched(names: dict[str, Callable[..., Any]]) -> Iterator[None]:
    saved = {k: getattr(watch_store, k) for k in names}
    try:
        for k, v in names.items():
            setattr(watch_store, k, v)
        yield
    finally:
        for k, v in saved.items():
            setattr(watch_store, k, v)


@contextmanager
def timing(name: str, into: dict[str, float]) -> Iterator[None]:
    """Adds the time spent in ``watch_store.<name>`` to ``into[name]``."""
    inner = getattr(watch_store, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            into[name] = into.get(name, 0.0) + time.perf_counter() - t

    setattr(watch_store, name, wrapper)
    try:
        yield
    finally:
        setattr(watch_store, name, inner)


def trial(
    engine: sa.Engine, variant: str, results: list[Any], passes: int, rows: int
) -> dict[str, float]:
    with engine.connect() as conn:
        conn.exec_driver_sql("DROP TABLE IF EXISTS predictions")
        conn.exec_driver_sql("CREATE TABLE predictions (LIKE sg_bench_template INCLUDING ALL)")
        for ddl in VARIANT_DDL[variant]:
            conn.exec_driver_sql(ddl)
        conn.commit()
        conn.exec_driver_sql("CHECKPOINT")  # the same full-page-write state for every trial
        pid = int(conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one())
        lsn0 = conn.exec_driver_sql("SELECT pg_current_wal_lsn()").scalar_one()
        conn.commit()
        parts = [pass_parts(results, k, rows) for k in range(passes)]
        spent: dict[str, float] = {}
        wall = cpu = 0.0
        probe = ProbeTimer(conn, skip=variant in NO_PROBE)
        with patched(VARIANT_PATCHES.get(variant, {})), timing("_predictions_payload", spent):
            for k in range(passes):
                c0, t0 = backend_cpu(pid), time.perf_counter()
                with conn.begin():
                    watch_store.relax_commit(conn)
                    watch_store.write_predictions_many(probe, parts[k], every=1)  # type: ignore[arg-type]
                wall += time.perf_counter() - t0
                cpu += backend_cpu(pid) - c0
        wal = conn.exec_driver_sql(
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %(l)s)", {"l": lsn0}
        ).scalar_one()
        n = int(conn.exec_driver_sql("SELECT count(*) FROM predictions").scalar_one())
        heap, index = conn.exec_driver_sql(
            "SELECT pg_relation_size('predictions'), pg_indexes_size('predictions')"
        ).one()
        conn.commit()
    total = passes * rows * len(results)
    assert n == total, (variant, n, total)
    assert probe.count == passes, "the overlap probe was not seen: update PROBE_SQL"
    return {
        "rows_s": total / wall,
        "ms_pass": 1e3 * wall / passes,
        "cpu_us_row": 1e6 * cpu / total,
        "payload_ms": 1e3 * spent.get("_predictions_payload", 0.0) / passes,
        "probe_ms": 1e3 * probe.seconds / passes,
        "wal_b_row": float(wal) / total,
        "heap_mb": heap / 2**20,
        "index_mb": index / 2**20,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    ap.add_argument("--assets", type=int, default=100)
    ap.add_argument("--rows", type=int, default=300, help="predictions per asset and pass")
    ap.add_argument("--passes", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--variants", nargs="+", default=list(VARIANT_DDL), choices=list(VARIANT_DDL))
    args = ap.parse_args()
    if "base" not in args.variants:
        args.variants.insert(0, "base")

    name = f"sg_bench_predcopy_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(normalize_url(args.pg_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = make_url(normalize_url(args.pg_url)).set(database=name).render_as_string(False)
    load0 = os.getloadavg()
    print(
        f"{args.passes} passes x {args.assets} assets x {args.rows} predictions, "
        f"{args.rounds} rounds; load average {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}; "
        f"{os.cpu_count()} CPUs",
        flush=True,
    )
    try:
        upgrade(url)
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE sg_bench_template (LIKE predictions INCLUDING ALL)")
        results = make_results(args.assets, args.rows)
        got: dict[str, list[dict[str, float]]] = {v: [] for v in args.variants}
        speed: dict[str, list[float]] = {v: [] for v in args.variants}
        for r in range(args.rounds):
            order = args.variants if r % 2 == 0 else args.variants[::-1]
            this: dict[str, float] = {}
            for v in order:
                res = trial(engine, v, results, args.passes, args.rows)
                got[v].append(res)
                this[v] = res["rows_s"]
                print(
                    f"  round {r} {v:<10} {res['rows_s']:>9,.0f} rows/s "
                    f"{res['cpu_us_row']:5.2f} us/row backend CPU",
                    flush=True,
                )
            for v in args.variants:
                speed[v].append(this[v] / this["base"])
        engine.dispose()
    finally:
        dispose_engines()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    load1 = os.getloadavg()
    print(
        f"\n{'variant':<10} {'rows/s':>9} {'speedup':>8} {'ms/pass':>8} {'PG CPU us/row':>13} "
        f"{'CPU gain':>8} "
        f"{'payload ms':>10} {'probe ms':>8} {'WAL B/row':>9} {'heap MB':>8} {'index MB':>8}"
    )
    base_cpu = statistics.median(x["cpu_us_row"] for x in got["base"])
    for v in args.variants:
        med = {k: statistics.median(x[k] for x in got[v]) for k in got[v][0]}
        print(
            f"{v:<10} {med['rows_s']:>9,.0f} {statistics.median(speed[v]):>8.3f} "
            f"{med['ms_pass']:>8.1f} {med['cpu_us_row']:>13.2f} "
            f"{base_cpu / med['cpu_us_row']:>8.3f} {med['payload_ms']:>10.1f} "
            f"{med['probe_ms']:>8.2f} {med['wal_b_row']:>9.0f} {med['heap_mb']:>8.1f} "
            f"{med['index_mb']:>8.1f}"
        )
    print(f"load average at the end {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f}")


if __name__ == "__main__":
    main()
