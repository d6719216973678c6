"""Detection quality on the built-in pump simulator (operating regimes, five failure modes).

    .venv/bin/python benchmarks/quality_simulator.py [DETECTOR ...] [--seeds 5] [--days 7]

Per seed: fit on the first 2 days of the same pump simulated without failures (normal
operation only), then predict days 2-7 of the run with failures; BROKEN and RECOVERING
rows are positives. Point metrics and the NAB-style score (60-minute window, as the
simulator samples every minute) summed over seeds.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from quality_common import dump, parse_args, point_table, run_all

from sensorguard.data.simulator import SENSORS, simulate_pump
from sensorguard.evaluation.readers import LabelledSeries

TRAIN_DAYS = 2


def series(seeds: int, days: float) -> list[LabelledSeries]:
    out = []
    for seed in range(seeds):
        normal = simulate_pump(days=TRAIN_DAYS, seed=seed, failures=False)
        run = simulate_pump(days=days, seed=seed)
        test = run.iloc[len(normal) :].reset_index(drop=True)
        times = pd.Series(pd.to_datetime(test["timestamp"]))
        out.append(
            LabelledSeries(
                name=f"seed{seed}.csv",
                time_column="timestamp",
                raw_times=test["timestamp"].astype(str),
                times=times,
                X=test[list(SENSORS)].astype(np.float64),
                y=(test["machine_status"] != "NORMAL").to_numpy().astype(np.int8),
                train=normal[list(SENSORS)].astype(np.float64),
            )
        )
    return out


def main() -> None:
    args = parse_args(__doc__, seeds=5, days=7.0)
    data = series(args.seeds, args.days)
    results = run_all(lambda: data, args.detectors, params=args.params, window_seconds=3600)
    dump(results, args.json)
    print(
        f"pump simulator: {args.seeds} seeds, fit on {TRAIN_DAYS} normal days, "
        f"predict the next {args.days - TRAIN_DAYS:g} days (1-min readings)\n"
    )
    print(point_table(results))


if __name__ == "__main__":
    main()
