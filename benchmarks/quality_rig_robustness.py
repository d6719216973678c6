"""Robustness of detection quality on the synthetic pump rig: seeds × generator variants.

    .venv/bin/python benchmarks/quality_rig_robustness.py [DETECTOR ...] [--files 30]
        [--seeds 0,1,2] [--variants base,linear,drift0.5,drift2,subtle] [--param K=V]

The benchmark protocol in memory (no CSV round trip; the same figures as
``sensorguard benchmark``): per file a fresh detector is fitted on the first 400 rows and
predicts the rest; TP/FP/FN/TN are summed over the files of one seed × variant. Variants
of :func:`sensorguard.evaluation.synthetic.pump_rig_file`:

* ``base``: the default generator;
* ``linear``: gradual kinds (leak, bearing heat) ramp from zero over the whole segment;
* ``drift0.5`` / ``drift2``: every slow normal change (warm-up, wander) halved / doubled;
* ``subtle``: anomaly strength drawn from 0.3-0.8 instead of 0.5-1.6.

Prints F1 / FAR % / MAR % per detector and variant (summed over seeds, with the range of
F1 over seeds), then F1 / FAR % per anomaly kind over all runs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from quality_common import detector_params

from sensorguard.detectors import available_detectors, make_detector
from sensorguard.evaluation.metrics import Confusion, confusion
from sensorguard.evaluation.synthetic import KINDS, SENSORS, pump_rig_file

VARIANTS: dict[str, dict[str, Any]] = {
    "base": {},
    "linear": {"onset": "linear"},
    "drift0.5": {"drift": 0.5},
    "drift2": {"drift": 2.0},
    "subtle": {"strength_range": (0.3, 0.8)},
}


def run_file(name: str, params: dict[str, Any], frame: Any, train_rows: int = 400) -> Confusion:
    det = make_detector(name, **params).fit(frame[SENSORS].iloc[:train_rows])
    pred = det.predict(frame[SENSORS].iloc[train_rows:])
    return confusion(frame["anomaly"].to_numpy()[train_rows:], pred)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("detectors", nargs="*")
    parser.add_argument("--files", type=int, default=30)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--param", action="append", default=[], help="DETECTOR:NAME=JSON")
    parser.add_argument("--json", help="also write the per-file confusions here")
    args = parser.parse_args()
    names = args.detectors or available_detectors()
    params: dict[str, dict[str, Any]] = defaultdict(dict, detector_params(parser, args.param))
    seeds = [int(s) for s in args.seeds.split(",")]
    variants = args.variants.split(",")
    per_var: dict[tuple[str, str], Confusion] = defaultdict(lambda: Confusion(0, 0, 0, 0))
    per_seed: dict[tuple[str, str], list[float]] = defaultdict(list)
    per_kind: dict[tuple[str, str], Confusion] = defaultdict(lambda: Confusion(0, 0, 0, 0))
    seconds: dict[str, float] = defaultdict(float)
    rows = []
    for variant in variants:
        for seed in seeds:
            rng = np.random.default_rng(seed)
            frames = [
                (
                    KINDS[i % len(KINDS)],
                    pump_rig_file(
                        int(rng.integers(0, 2**31)), kind=KINDS[i % len(KINDS)], **VARIANTS[variant]
                    ),
                )
                for i in range(args.files)
            ]
            for name in names:
                t0 = time.perf_counter()
                total = Confusion(0, 0, 0, 0)
                for i, (kind, frame) in enumerate(frames):
                    c = run_file(name, params[name], frame)
                    total = total + c
                    per_kind[(name, kind)] = per_kind[(name, kind)] + c
                    rows.append([name, variant, seed, i, kind, c.tp, c.fp, c.fn, c.tn])
                seconds[name] += time.perf_counter() - t0
                per_var[(name, variant)] = per_var[(name, variant)] + total
                per_seed[(name, variant)].append(total.f1)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh)
    print(f"{args.files} files × seeds {seeds}; cells: F1 / FAR % / MAR % (F1 range over seeds)\n")
    print("| detector | " + " | ".join(variants) + " | time s |")
    print("|---|" + "---:|" * (len(variants) + 1))
    for name in names:
        cells = []
        for v in variants:
            c, f = per_var[(name, v)], per_seed[(name, v)]
            cells.append(
                f"{c.f1:.3f} / {100 * c.far:.1f} / {100 * c.mar:.1f} ({min(f):.2f}-{max(f):.2f})"
            )
        print(f"| {name} | " + " | ".join(cells) + f" | {seconds[name]:.0f} |")
    print("\nF1 / FAR % per anomaly kind (all variants and seeds):\n")
    print("| detector | " + " | ".join(KINDS) + " |")
    print("|---|" + "---:|" * len(KINDS))
    for name in names:
        cells = [
            f"{per_kind[(name, k)].f1:.2f} / {100 * per_kind[(name, k)].far:.1f}" for k in KINDS
        ]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
