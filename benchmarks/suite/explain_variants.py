"""Sensor rankings compared on the suite's three explanation sets, with a
leave-one-data-set-out choice (docs/quality.md, "Explanations: which sensor is to blame").

    .venv/bin/python benchmarks/suite/explain_variants.py [DETECTOR ...] [--json FILE]

Every detector is fitted and scored once per case exactly as the suite does (SMD standard
protocol, TEP faults with root-cause variables, the simulator's sensor faults); the
rankings are then computed from its contributions, alarm flags, scores and threshold:

* ``own``: each reading's own contributions (what ``top_sensors`` ranked before the
  ranking below was adopted);
* ``raw meanW`` / ``share meanW``: causal mean over the last W readings of the
  contributions / of their shares (contributions divided by the row sum);
* ``share alarmW``: shares averaged since the alarm started inside an alarm, over the
  last W readings elsewhere;
* ``share excursionW``: the same with excursion = alarmed or above the threshold (at
  W = 10 the first ranking adopted);
* ``share ewmaA`` / ``share excursion-ewmaA``: an exponentially weighted mean of the
  shares (decay A) everywhere / outside excursions, the mean since the excursion
  started inside;
* ``product``: ``sensorguard.detectors.blame``, what ``top_sensors`` ranks now
  (excursion-ewma0.8, computed by the product's code);
* ``relative-mean`` / ``relative-med`` (``own``, ``product``, ``sqrt product``): the
  contributions divided by each sensor's mean / median contribution on its training
  rows (or its square root) first (tried, not kept: docs/quality.md).

Figures: SMD HitRate@150 % (mean of the three machines), TEP top-3 hit over all faulty
samples (mean of the six faults), simulator top-3 hit over the injected sensor-fault rows;
each averaged over the detectors. The best candidate on all three sets is in-sample; the
leave-one-out line picks the best on two sets and scores the third.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from quality_common import SHARED

from sensorguard.detectors import make_detector
from sensorguard.detectors.blame import blame as product_blame
from sensorguard.evaluation.explain import hit_rate, top_k_hit
from sensorguard.evaluation.readers import TEP_FAULT_START
from suite import simulator, smd, tep

SETS = ("smd150", "tep3", "sim3")
DETECTORS = ["pca-smoothed", "operating-states", "pca", "iforest", "drift-robust"]


def _mean(R: np.ndarray, w: int) -> np.ndarray:
    cs = np.vstack([np.zeros((1, R.shape[1])), np.cumsum(R, axis=0)])
    idx = np.arange(1, R.shape[0] + 1)
    lo = np.maximum(idx - w, 0)
    return (cs[idx] - cs[lo]) / (idx - lo)[:, None]  # type: ignore[no-any-return]


def _share(C: np.ndarray) -> np.ndarray:
    tot = C.sum(axis=1, keepdims=True)
    tot[~(tot > 0)] = 1.0
    return C / tot  # type: ignore[no-any-return]


Ranker = Callable[[dict[str, Any]], np.ndarray]


def blame(C: np.ndarray, excursion: np.ndarray, window: int) -> np.ndarray:
    """Shares since the excursion started inside one, their mean over the last
    ``window`` readings elsewhere (the first ranking adopted, kept here to compare)."""
    S = _share(C)
    n = S.shape[0]
    cs = np.vstack([np.zeros((1, S.shape[1])), np.cumsum(S, axis=0)])
    idx = np.arange(1, n + 1)
    lo = np.maximum(idx - max(1, int(window)), 0)
    f = np.asarray(excursion, dtype=bool)
    if f.any():
        start = np.flatnonzero(f & ~np.r_[False, f[:-1]])
        run = np.zeros(n, dtype=np.int64)
        run[start] = start
        lo = np.where(f, np.maximum.accumulate(run), lo)
    return (cs[idx] - cs[lo]) / (idx - lo)[:, None]  # type: ignore[no-any-return]


def _floor(scale: np.ndarray) -> np.ndarray:
    """A per-sensor divisor: at least 1e-3 of the largest (a sensor silent in training
    does not divide by zero)."""
    s = np.asarray(scale, dtype=np.float64)
    return np.maximum(s, 1e-3 * max(float(s.max()), 1e-12))


def _ewma(S: np.ndarray, a: float) -> np.ndarray:
    """Causal exponentially weighted mean of each column (the first row as its start)."""
    from scipy.signal import lfilter

    y, _ = lfilter([1 - a], [1, -a], S, axis=0, zi=(a * S[:1])[None, :].reshape(1, -1))
    return y  # type: ignore[no-any-return]


def _excursion_ewma(r: dict[str, Any], a: float) -> np.ndarray:
    """Shares since the excursion started inside one, their EWMA elsewhere."""
    S = _share(r["contrib"])
    f = r["flags"] | (r["score"] > r["threshold"])
    out = _ewma(S, a)
    inside = blame(r["contrib"], f, 10**9)  # since the excursion started (window unused)
    out[f] = inside[f]
    return out


def candidates() -> dict[str, Ranker]:
    out: dict[str, Ranker] = {"own": lambda r: r["contrib"]}
    for w in (3, 5, 10, 20, 40):
        out[f"raw mean{w}"] = lambda r, w=w: _mean(r["contrib"], w)
        out[f"share mean{w}"] = lambda r, w=w: _mean(_share(r["contrib"]), w)
        out[f"share alarm{w}"] = lambda r, w=w: blame(r["contrib"], r["flags"], w)
        out[f"share excursion{w}"] = lambda r, w=w: blame(
            r["contrib"], r["flags"] | (r["score"] > r["threshold"]), w
        )
    # what top_sensors ranks (sensorguard.detectors.blame): excursion-ewma0.8
    out["product"] = lambda r: product_blame(
        r["contrib"], r["flags"] | (r["score"] > r["threshold"])
    )
    # contributions relative to the sensor's typical training contribution (a sensor
    # that is always loud in the model's residual no longer tops every ranking)
    for k in ("mean", "med"):
        out[f"relative-{k} own"] = lambda r, k=k: r["contrib"] / _floor(r[f"scale_{k}"])
        out[f"relative-{k} product"] = lambda r, k=k: product_blame(
            r["contrib"] / _floor(r[f"scale_{k}"]), r["flags"] | (r["score"] > r["threshold"])
        )
        out[f"relative-{k} sqrt product"] = lambda r, k=k: product_blame(
            r["contrib"] / np.sqrt(_floor(r[f"scale_{k}"])),
            r["flags"] | (r["score"] > r["threshold"]),
        )
    for a in (0.8, 0.9, 0.95):
        out[f"share ewma{a}"] = lambda r, a=a: _ewma(_share(r["contrib"]), a)
        out[f"share excursion-ewma{a}"] = lambda r, a=a: _excursion_ewma(r, a)
    return out


def collect(detector: str) -> dict[str, list[dict[str, Any]]]:
    """Contributions, flags, scores and the truth of every explanation case."""
    out: dict[str, list[dict[str, Any]]] = {}
    for mod in (smd, tep, simulator):
        cases = [c for c in mod.load(SHARED / mod.NAME, False) if mod.wants_contributions(c)]
        if mod is tep:
            cases = [c for c in cases if int(c.group) in tep.ROOT_CAUSE]
        recs = []
        fitted: dict[str, Any] = {}
        for c in cases:
            key = c.train_key or f"{c.protocol}/{c.name}"
            if key not in fitted:
                det = make_detector(detector).fit(c.train)
                # each sensor's typical contribution on its training rows (the
                # ``relative`` rankings divide by it)
                Ct = np.asarray(det.contributions(c.train), dtype=np.float64)
                fitted = {key: (det, Ct.mean(axis=0), np.median(Ct, axis=0))}
            det, scale_mean, scale_med = fitted[key]
            res = det.detect(c.test)
            recs.append(
                {
                    "contrib": np.asarray(res.contributions, dtype=np.float64),
                    "flags": np.asarray(res.is_anomaly, dtype=bool),
                    "score": np.asarray(res.score, dtype=np.float64),
                    "threshold": float(res.threshold),
                    "sensors": list(res.sensors),
                    "scale_mean": scale_mean,
                    "scale_med": scale_med,
                    "case": c,
                }
            )
        out[mod.NAME] = recs
        print(f"[{detector}] {mod.NAME}: {len(recs)} cases", flush=True)
    return out


def evaluate(data: dict[str, list[dict[str, Any]]], rank: Ranker) -> dict[str, float]:
    smd150, smd100, tep3, t1, t3, w = [], [], [], [], [], []
    for r in data["smd"]:
        R, T = rank(r), r["case"].meta["truth"]
        smd150.append(hit_rate(R, T, 1.5)[0])
        smd100.append(hit_rate(R, T, 1.0)[0])
    for r in data["tep"]:
        c = r["case"]
        targets = [r["sensors"].index(v) for v in tep.ROOT_CAUSE[int(c.group)]]
        faulty = np.arange(len(c.y)) >= TEP_FAULT_START
        tep3.append(top_k_hit(rank(r), targets, 3, faulty))
    for r in data["simulator"]:
        R = rank(r)
        for s, e, sensor, _ in r["case"].meta["injected"]:
            rows = np.zeros(len(r["case"].y), dtype=bool)
            rows[s:e] = True
            j = r["sensors"].index(sensor)
            t1.append(top_k_hit(R, [j], 1, rows))
            t3.append(top_k_hit(R, [j], 3, rows))
            w.append(int(rows.sum()))
    return {
        "smd150": float(np.mean(smd150)),
        "smd100": float(np.mean(smd100)),
        "tep3": float(np.mean(tep3)),
        "sim1": float(np.average(t1, weights=w)),
        "sim3": float(np.average(t3, weights=w)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("detectors", nargs="*", default=DETECTORS)
    ap.add_argument("--json")
    args = ap.parse_args()
    cands = candidates()
    rows: dict[str, dict[str, dict[str, float]]] = {c: {} for c in cands}
    for det in args.detectors:
        data = collect(det)
        for c, rank in cands.items():
            rows[c][det] = evaluate(data, rank)

    def agg(c: str, keys: tuple[str, ...] | list[str]) -> float:
        return float(np.mean([np.mean([rows[c][d][k] for d in args.detectors]) for k in keys]))

    keys = ["smd150", "smd100", "tep3", "sim1", "sim3"]
    print("\nmean over detectors (all = mean of smd150, tep3, sim3; in-sample)")
    for c in sorted(rows, key=lambda c: -agg(c, SETS)):
        figures = " ".join(f"{k} {agg(c, [k]):.3f}" for k in keys)
        print(f"{c:20s} all {agg(c, SETS):.3f}  {figures}")
    best = max(rows, key=lambda c: agg(c, SETS))
    print(f"\nin-sample best: {best}")
    for left in SETS:
        others = [s for s in SETS if s != left]
        b = max(rows, key=lambda c: agg(c, others))
        print(
            f"leave out {left}: chosen '{b}' on {others}; {left} = {agg(b, [left]):.3f} "
            f"(own {agg('own', [left]):.3f})"
        )
    for c in ("own", best):
        print(f"\n{c}, per detector:")
        for d in args.detectors:
            print(f"  {d:18s} " + " ".join(f"{k} {rows[c][d][k]:.3f}" for k in keys))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
