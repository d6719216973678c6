"""Detector speed: training and batch scoring of a detector (default: operating-states).

Synthetic readings (default 1,000,000 × 50 sensors) from several operating regimes:
each sensor follows the regime's load level through its own gain and curvature, plus a
slow drift and noise, so the states are real clusters and the sensors are correlated.

Measures
* fit time (robust scaling, k-means for every k, silhouette on the sample, refinement,
  per-state models, threshold on all rows), wall and CPU seconds;
* peak resident memory of the whole process (data included), from getrusage;
* batch scoring with per-sensor contributions: ``detect`` on the DataFrame (schema
  check and gap filling included) and the scoring kernel on the prepared array,
  best of ``--repeat`` runs.

    .venv/bin/python benchmarks/bench_detector_speed.py [--rows 1000000 --sensors 50]
        [--detector NAME] [--param NAME=JSON ...]   # e.g. --detector knn --sensors 10

The machine's load average is printed: on a shared machine the figures are noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from sensorguard.detectors import make_detector


def synthetic(rows: int, sensors: int, regimes: int = 5, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    # regimes hold for 30-300 readings, like setpoints held for a while
    lengths = rng.integers(30, 300, rows // 30 + 1)
    levels = rng.integers(0, regimes, lengths.size)
    regime = np.repeat(levels, lengths)[:rows]
    load = (0.4 + 0.6 * regime / max(1, regimes - 1)).astype(np.float64)
    load += rng.normal(0, 0.01, rows)
    drift = np.sin(np.linspace(0, 20 * np.pi, rows))
    gain = rng.uniform(0.5, 50.0, sensors)
    curve = rng.uniform(1.0, 3.0, sensors)
    base = rng.uniform(-10, 100, sensors)
    out = np.empty((rows, sensors))
    for j in range(sensors):
        out[:, j] = base[j] + gain[j] * load ** curve[j]
        out[:, j] += 0.02 * gain[j] * drift * (j % 3 == 0)
        out[:, j] += rng.normal(0, 0.01 * gain[j], rows)
    return pd.DataFrame(out, columns=[f"s{j:02d}" for j in range(sensors)])


def best_of(fn, repeat: int) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """Best wall time and the CPU time (all threads) of that run."""
    best = (float("inf"), float("inf"))
    for _ in range(repeat):
        c, t = time.process_time(), time.perf_counter()
        fn()
        run = (time.perf_counter() - t, time.process_time() - c)
        best = min(best, run)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--sensors", type=int, default=50)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--detector", default="operating-states")
    ap.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=JSON",
        help="a detector parameter, e.g. --param memory=500 (repeatable)",
    )
    args = ap.parse_args()
    params = {k: json.loads(v) for k, v in (p.split("=", 1) for p in args.param)}
    con = Console()
    load0 = os.getloadavg()[0]

    X = synthetic(args.rows, args.sensors)
    rss_data = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    det = make_detector(args.detector, **params)
    cpu0, t0 = time.process_time(), time.perf_counter()
    det.fit(X)
    fit_s, fit_cpu = time.perf_counter() - t0, time.process_time() - cpu0
    rss_fit = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    A = det.prepare(X)
    det.detect(X.head(1000))  # warm-up (thread pool, caches)
    detect_s, detect_cpu = best_of(lambda: det.detect(X), args.repeat)
    kernel_s, kernel_cpu = best_of(lambda: det.compute(A, want_contrib=True), args.repeat)
    prepare_s, prepare_cpu = best_of(lambda: det.prepare(X), args.repeat)
    rss_all = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    load1 = os.getloadavg()[0]

    n = args.rows
    label = args.detector + (f"[{', '.join(args.param)}]" if args.param else "")
    table = Table(title=f"{label} detector, {n:,} readings x {args.sensors} sensors")
    table.add_column("measure")
    table.add_column("value", justify="right")
    if hasattr(det, "n_states_"):
        table.add_row("states chosen (silhouette)", f"{det.n_states_} ({det.silhouette_:.3f})")
        table.add_row(
            "silhouette by k",
            ", ".join(f"{k}:{v:.3f}" for k, v in det.silhouette_by_k_.items()),
        )
    table.add_row("fit, wall", f"{fit_s:.1f} s")
    table.add_row("fit, CPU (all threads)", f"{fit_cpu:.1f} s")
    table.add_row("peak RSS after data", f"{rss_data:,.0f} MB")
    table.add_row("peak RSS after fit", f"{rss_fit:,.0f} MB")
    table.add_row("peak RSS overall", f"{rss_all:,.0f} MB")
    table.add_row(
        "detect (DataFrame in, contributions)",
        f"{detect_s:.3f} s = {n / detect_s / 1e6:.2f} M/s (CPU {detect_cpu:.2f} s "
        f"= {n / detect_cpu / 1e6:.2f} M/s per core)",
    )
    table.add_row(
        "  of which prepare (schema, gaps)", f"{prepare_s:.3f} s (CPU {prepare_cpu:.2f} s)"
    )
    table.add_row(
        "scoring kernel (array in, contributions)",
        f"{kernel_s:.3f} s = {n / kernel_s / 1e6:.2f} M/s (CPU {kernel_cpu:.2f} s "
        f"= {n / kernel_cpu / 1e6:.2f} M/s per core)",
    )
    table.add_row("load average before / after", f"{load0:.1f} / {load1:.1f} (2 cores)")
    con.print(table)


if __name__ == "__main__":
    main()
