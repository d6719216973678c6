"""Detection quality on NAB realKnownCause (``../shared/data/nab``), univariate series.

    .venv/bin/python benchmarks/quality_nab.py [DETECTOR ...] [--train-rows 400]

Each file: fit a fresh detector on its first ``--train-rows`` rows, predict the rest;
rows inside NAB's labelled anomaly windows are the positives. Point metrics and the
NAB-style changepoint score (true changepoints = window edges; scoring window = the
NAB window length of the file, i.e. ``--window-seconds`` is set per data set to 10 % of
the series span divided by the number of windows, as NAB does). Machine temperature is
also reported alone. Skips with a message when the data is absent.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from quality_common import dump, parse_args, point_table, run_all, shared_or_exit

from sensorguard.evaluation.readers import iter_nab

MACHINE = "realKnownCause/machine_temperature_system_failure.csv"


def main() -> None:
    args = parse_args(__doc__, train_rows=400)
    folder = shared_or_exit("nab")
    series = list(iter_nab(folder, ["realKnownCause"]))
    machine = [s for s in series if s.name == MACHINE]
    # NAB's window: 10 % of the file length shared among its anomaly windows; here one
    # window length for the machine-temperature file (4 windows over 22,695 5-min rows)
    window_s = 0.10 * 22695 * 300 / 4
    res_m = run_all(
        lambda: machine,
        args.detectors,
        params=args.params,
        train_rows=args.train_rows,
        window_seconds=window_s,
    )
    res_all = run_all(
        lambda: series,
        args.detectors,
        params=args.params,
        train_rows=args.train_rows,
        window_seconds=window_s,
    )
    dump({"machine_temperature": res_m, "realKnownCause": res_all}, args.json)
    print(f"NAB machine_temperature_system_failure (fit on first {args.train_rows} rows)\n")
    print(point_table(res_m))
    print(f"\nNAB realKnownCause, {len(series)} files (fit on first {args.train_rows} rows each)\n")
    print(point_table(res_all))


if __name__ == "__main__":
    main()
