"""Speed of the data layer: simulating, writing, loading and validating readings.

    .venv/bin/python benchmarks/bench_data.py --days 700

``--days 700`` at one minute is ~1,000,000 rows x 9 sensors. Each step is timed once
(best of ``--repeat``); files go to a temporary folder that is removed afterwards.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sensorguard.data import Readings, load_readings, write_frame
from sensorguard.data.simulator import simulate_pump


def best(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--days", type=float, default=700.0)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()

    t_week, _ = best(lambda: simulate_pump(days=7, seed=0), 5)
    print(f"simulate 7 days (10,080 rows): {t_week * 1000:.0f} ms")
    t_sim, df = best(lambda: simulate_pump(days=args.days, seed=0), 1)
    n = len(df)
    print(f"simulate {args.days:g} days ({n:,} rows): {t_sim:.2f} s ({n / t_sim:,.0f} rows/s)")
    t_frame, _ = best(lambda: Readings.from_frame(df), args.repeat)
    print(f"Readings.from_frame: {t_frame:.2f} s ({n / t_frame:,.0f} rows/s)")
    with tempfile.TemporaryDirectory(prefix="sg-bench-data-") as tmp:
        for suffix in ("csv", "parquet"):
            path = Path(tmp) / f"pump.{suffix}"
            t_write, _ = best(lambda p=path: write_frame(df, p), 1)
            size = path.stat().st_size / 1e6
            t_load, r = best(lambda p=path: load_readings(p), args.repeat)
            assert len(r) == n
            print(
                f"{suffix:8s} write {t_write:.2f} s, load+validate {t_load:.2f} s "
                f"({n / t_load:,.0f} rows/s), {size:.0f} MB"
            )


if __name__ == "__main__":
    main()
