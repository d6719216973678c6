"""Fleet models with and without per-asset calibration vs. one model per asset (simulator).

    .venv/bin/python benchmarks/quality_fleet.py [--assets 20] [--days 7] [--train-days 3]
        [--seeds 2] [--base operating-states] [--json FILE]

A fleet of ``--assets`` simulated pumps of one type (``pipelines.fleet.simulate_fleet``):
each its own seed, failures and regimes, and its own operating point and wear (system
curve, suction head, wear raising vibration, bearing temperature and current, sensor
offsets). Every variant trains on the rows labelled normal in the first
``--train-days`` of every asset and is scored on the rest, asset by asset:

* ``fleet, pooled``: one ``--base`` detector on all assets' raw readings;
* ``fleet + calibration``: ``asset-calibrated`` (per-asset robust centring and scaling);
* ``fleet + calibration + thresholds``: the same with ``per_asset_threshold=True``;
* ``one model per asset``: a ``--base`` detector per asset on its own rows only.

Reported over all assets and seeds: false alarm events per asset-day, event recall
(BROKEN/RECOVERING runs with at least one alarm reading), mean detection delay, point
F1, fit time, and the models a predictor has to hold.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sensorguard.data.simulator import SENSORS
from sensorguard.detectors import make_detector
from sensorguard.evaluation.events import event_metrics
from sensorguard.evaluation.metrics import point_metrics
from sensorguard.pipelines.fleet import simulate_fleet

SENS = list(SENSORS)
FAST = {"max_states": 6, "silhouette_sample": 3000}


def _split(frame: pd.DataFrame, train_days: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    t = pd.to_datetime(frame["timestamp"])
    cut = t.groupby(frame["asset_id"]).transform("min") + pd.Timedelta(days=train_days)
    train = frame[(t < cut) & (frame["machine_status"] == "NORMAL")]
    return train, frame[t >= cut].reset_index(drop=True)


def _variants(base: str) -> dict[str, Any]:
    params = FAST if base == "operating-states" else {}
    return {
        "fleet, pooled": lambda: make_detector(base, **params),
        "fleet + calibration": lambda: make_detector(
            "asset-calibrated", base=base, base_params=params
        ),
        "fleet + calibration + thresholds": lambda: make_detector(
            "asset-calibrated", base=base, base_params=params, per_asset_threshold=True
        ),
        "one model per asset": None,
    }


def run(assets: int, days: float, train_days: float, seeds: int, base: str) -> dict[str, Any]:
    totals: dict[str, dict[str, Any]] = {}
    for seed in range(seeds):
        fleet = simulate_fleet(assets, days=days, seed=seed)
        train, test = _split(fleet, train_days)
        y = (test["machine_status"] != "NORMAL").to_numpy()
        groups = test["asset_id"].to_numpy()
        for name, make in _variants(base).items():
            t0 = time.perf_counter()
            pred = np.zeros(len(test), dtype=bool)
            if make is None:  # one model per asset, each on its own rows
                per_asset = test.groupby("asset_id").indices
                n_models = len(per_asset)
                for asset, rows in per_asset.items():
                    own = train[train["asset_id"] == asset]
                    params = FAST if base == "operating-states" else {}
                    det = make_detector(base, **params).fit(own[SENS])
                    pred[rows] = det.detect(test.iloc[rows][SENS]).is_anomaly
            else:
                det = make()
                if getattr(det, "uses_assets", False):
                    det.fit(train[SENS], assets=train["asset_id"])
                    pred = det.detect_assets(test[SENS], groups).is_anomaly
                else:
                    det.fit(train[SENS])
                    for _asset, rows in test.groupby("asset_id").indices.items():
                        pred[rows] = det.detect(test.iloc[rows][SENS]).is_anomaly
                n_models = 1
            seconds = time.perf_counter() - t0
            ev = event_metrics(y, pred, test["timestamp"], groups=groups)
            pm = point_metrics(y.astype(int), pred.astype(int))
            acc = totals.setdefault(
                name,
                {
                    "false": 0,
                    "days": 0.0,
                    "events": 0,
                    "detected": 0,
                    "delays": [],
                    "f1": [],
                    "seconds": 0.0,
                    "models": n_models,
                },
            )
            acc["false"] += ev["false_alarm_events"]
            acc["days"] += ev["days"]
            acc["events"] += ev["events_total"]
            acc["detected"] += ev["events_detected"]
            if ev["mean_detection_delay_s"] is not None:
                acc["delays"].append((ev["mean_detection_delay_s"], ev["events_detected"]))
            acc["f1"].append(pm["f1"])
            acc["seconds"] += seconds
    out = {}
    for name, a in totals.items():
        w = sum(n for _, n in a["delays"])
        delay = sum(d * n for d, n in a["delays"]) / w / 60 if w else None
        out[name] = {
            "false_alarms_per_asset_day": a["false"] / a["days"] if a["days"] else None,
            "event_recall": a["detected"] / a["events"] if a["events"] else None,
            "events": a["events"],
            "mean_detection_delay_min": delay,
            "f1": float(np.mean(a["f1"])),
            "fit_and_score_seconds": round(a["seconds"] / seeds, 1),
            "models": a["models"],
        }
    return out


def table(results: dict[str, Any]) -> str:
    lines = [
        "| variant | false alarms / asset-day | event recall | delay min | F1 | models | s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in results.items():
        delay = (
            "–" if r["mean_detection_delay_min"] is None else f"{r['mean_detection_delay_min']:.1f}"
        )
        lines.append(
            f"| {name} | {r['false_alarms_per_asset_day']:.3f} | {r['event_recall']:.3f} "
            f"({r['events']}) | {delay} | {r['f1']:.3f} | {r['models']} | "
            f"{r['fit_and_score_seconds']} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--assets", type=int, default=20)
    parser.add_argument("--days", type=float, default=7.0)
    parser.add_argument("--train-days", type=float, default=3.0)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--base", default="operating-states")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args()
    results = run(args.assets, args.days, args.train_days, args.seeds, args.base)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    print(
        f"fleet of {args.assets} simulated pumps × {args.seeds} seeds, {args.base}: trained on "
        f"the normal rows of the first {args.train_days:g} days, scored on the next "
        f"{args.days - args.train_days:g} days (2-min readings)\n"
    )
    print(table(results))


if __name__ == "__main__":
    main()
