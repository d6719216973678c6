"""Protocol code of the real-data quality suite (``benchmarks/quality_suite.py``).

Rules of this module: pure functions on arrays and frames, no file paths and no data
sets (the loaders live in ``benchmarks/suite/``), so the tests can check every rule on
hand-made cases with known answers. Detectors are used only through their public API
(``make_detector``, ``fit``, ``detect``).

* **Splits**: the first rows of a series (the benchmark contract), the TSB-AD split
  (fit on the first ``tr`` rows, score the *whole* series, training rows included),
  leave-one-out over groups of files.
* **Labels**: 0/1 points, segments (half-open row ranges), short gaps merged
  (RoSA's label flicker), per-cycle aggregation (hydraulic rig).
* **Scores**: point F1 / FAR / MAR (no point-adjust, ever), event-level recall,
  precision, F1 and detection delay, ROC-AUC and Spearman from ranks, the oracle
  best F1 (labelled as such wherever it is shown), and VUS-PR through the ``tsb-ad``
  package's own implementation (a benchmark-only extra: :func:`vus_pr` raises
  :class:`VusUnavailable` when it is not installed).
* **Regime checks**: how much of a test series lies outside the training range,
  per sensor — the number that tells "the data moved" from "the machine failed".
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from sensorguard.detectors import make_detector
from sensorguard.detectors.events import flag_spans
from sensorguard.errors import DataValidationError
from sensorguard.evaluation.metrics import confusion

# ---------------------------------------------------------------- cases and splits


@dataclass
class Case:
    """One scored series of a protocol.

    ``train`` is what the detector is fitted on, ``test`` what it scores, ``y`` the 0/1
    truth per test row. Cases with the same ``train_key`` share one fitted detector
    (RoSA R1 fits once per speed, not once per fault file).
    """

    dataset: str
    protocol: str
    name: str
    train: pd.DataFrame
    test: pd.DataFrame
    y: np.ndarray
    group: str = ""
    train_key: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def split_first_rows(
    X: pd.DataFrame, y: np.ndarray, train_rows: int
) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    """The benchmark contract: fit on the first ``train_rows`` rows, score the rest."""
    if train_rows < 1 or len(X) <= train_rows:
        raise DataValidationError(
            f"{len(X)} rows cannot be split after {train_rows} training rows",
            "use fewer training rows",
        )
    y = np.asarray(y)
    return X.iloc[:train_rows], X.iloc[train_rows:], y[train_rows:]


def split_tsb(
    X: pd.DataFrame, y: np.ndarray, train_rows: int
) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    """TSB-AD's split: fit on the first ``train_rows`` rows (they precede the first
    anomaly), score the whole series, training rows included, as its VUS-PR does."""
    y = np.asarray(y)
    if train_rows < 1 or train_rows > len(X):
        raise DataValidationError(f"bad TSB-AD training length {train_rows} for {len(X)} rows")
    if y[:train_rows].any():
        raise DataValidationError("the TSB-AD training rows must precede the first anomaly")
    return X.iloc[:train_rows], X, y


def leave_one_out(keys: Sequence[str]) -> list[tuple[str, list[str]]]:
    """``(held_out, the_others)`` for every key, in order."""
    return [(k, [o for o in keys if o != k]) for k in keys]


def spread_pick(items: Sequence[Any], sizes: Sequence[int], budget: int) -> list[Any]:
    """Whole items, evenly spread over ``items``, until their sizes reach ``budget``.

    Used to cap a training pool of whole files (a sequential detector must not see
    rows subsampled out of their order)."""
    if not items:
        return []
    order: list[int] = []
    n = len(items)
    # 0, n/2, n/4, 3n/4, ... : a van der Corput order keeps any prefix spread out
    for i in range(n):
        x, f, j = 0.0, 0.5, i
        while j:
            x += f * (j & 1)
            j >>= 1
            f /= 2
        order.append(int(x * n))
    picked: list[int] = []
    total = 0
    for idx in dict.fromkeys(order):
        if total >= budget:
            break
        picked.append(idx)
        total += int(sizes[idx])
    for idx in range(n):  # order may skip indices for non powers of two
        if total >= budget:
            break
        if idx not in picked:
            picked.append(idx)
            total += int(sizes[idx])
    return [items[i] for i in sorted(picked)]


# ---------------------------------------------------------------- labels


def segments(y: Any) -> np.ndarray:
    """Runs of ones as ``(k, 2)`` half-open ``[start, end)`` row ranges."""
    starts, last = flag_spans(np.asarray(y).astype(bool))
    return np.stack([starts, last + 1], axis=1)


def merge_gaps(y: Any, max_gap: int) -> np.ndarray:
    """Fill runs of zeros shorter than ``max_gap`` rows *between* two runs of ones
    (label flicker); leading and trailing zeros are kept."""
    v = np.asarray(y).astype(bool).ravel().copy()
    seg = segments(v)
    for (_, end), (start, _) in itertools.pairwise(seg):
        if start - end < max_gap:
            v[end:start] = True
    return v.astype(np.int8)


def per_group_mean(values: Any, groups: Any) -> tuple[np.ndarray, np.ndarray]:
    """Mean of ``values`` per distinct group id (sorted): (ids, means)."""
    g = np.asarray(groups)
    ids, inv = np.unique(g, return_inverse=True)
    sums = np.bincount(inv, weights=np.asarray(values, dtype=np.float64))
    return ids, sums / np.bincount(inv)


# ---------------------------------------------------------------- scores


def point_scores(y: Any, flags: Any) -> dict[str, float | int]:
    """Counts, F1, FAR % and MAR % of 0/1 flags against 0/1 truth (no point-adjust)."""
    c = confusion(y, flags)
    return {
        "tp": c.tp,
        "fp": c.fp,
        "fn": c.fn,
        "tn": c.tn,
        "f1": c.f1,
        "far_percent": 100.0 * c.far,
        "mar_percent": 100.0 * c.mar,
    }


def pooled(parts: Sequence[dict[str, Any]]) -> dict[str, float | int]:
    """Point scores of several series pooled: counts summed, then the ratios."""
    tp, fp, fn, tn = (sum(int(p[k]) for p in parts) for k in ("tp", "fp", "fn", "tn"))

    def r(a: float, b: float) -> float:
        return a / b if b else 0.0

    return {
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
        "f1": r(tp, tp + (fp + fn) / 2),
        "far_percent": 100.0 * r(fp, fp + tn),
        "mar_percent": 100.0 * r(fn, fn + tp),
    }


def event_scores(y: Any, flags: Any) -> dict[str, Any]:
    """Event-level figures: a true event is detected when an alarm row falls inside it;
    an alarm event is false when it overlaps no true event. Delay = rows from the
    event start to its first alarm row (0 when an earlier alarm is still on)."""
    t = np.asarray(y).astype(bool).ravel()
    p = np.asarray(flags).astype(bool).ravel()
    true_ev = segments(t)
    alarm_ev = segments(p)
    delays = []
    for s, e in true_ev:
        hit = np.flatnonzero(p[s:e])
        if hit.size:
            delays.append(int(hit[0]))
    false_alarms = sum(1 for s, e in alarm_ev if not t[s:e].any())
    n_true, n_alarm = len(true_ev), len(alarm_ev)
    recall = len(delays) / n_true if n_true else 0.0
    precision = (n_alarm - false_alarms) / n_alarm if n_alarm else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "events": n_true,
        "detected": len(delays),
        "alarm_events": n_alarm,
        "false_alarm_events": false_alarms,
        "recall": recall,
        "precision": precision,
        "f1": f1,
        "mean_delay_rows": float(np.mean(delays)) if delays else None,
    }


def pooled_events(parts: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Event figures of several series: counts summed, then the ratios; the delay is
    the mean over all detected events."""
    n_true = sum(p["events"] for p in parts)
    det = sum(p["detected"] for p in parts)
    n_alarm = sum(p["alarm_events"] for p in parts)
    fa = sum(p["false_alarm_events"] for p in parts)
    recall = det / n_true if n_true else 0.0
    precision = (n_alarm - fa) / n_alarm if n_alarm else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    wsum = sum(p["mean_delay_rows"] * p["detected"] for p in parts if p["detected"])
    return {
        "events": n_true,
        "detected": det,
        "alarm_events": n_alarm,
        "false_alarm_events": fa,
        "recall": recall,
        "precision": precision,
        "f1": f1,
        "mean_delay_rows": wsum / det if det else None,
    }


def roc_auc(y: Any, score: Any) -> float | None:
    """ROC-AUC from ranks (Mann-Whitney U, ties count half); None with one class only."""
    from scipy.stats import rankdata

    t = np.asarray(y).astype(bool).ravel()
    s = np.asarray(score, dtype=np.float64).ravel()
    n_pos, n_neg = int(t.sum()), int((~t).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = rankdata(s)
    return float((ranks[t].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def spearman(a: Any, b: Any) -> float | None:
    """Spearman rank correlation; None when either side is constant."""
    from scipy.stats import rankdata

    ra = rankdata(np.asarray(a, dtype=np.float64))
    rb = rankdata(np.asarray(b, dtype=np.float64))
    if ra.std() == 0 or rb.std() == 0:
        return None
    return float(np.corrcoef(ra, rb)[0, 1])


def best_f1(y: Any, score: Any) -> float:
    """F1 at the best threshold chosen *with the labels* (an oracle: never a detector's
    figure, only a ceiling for its score; shown labelled as such)."""
    t = np.asarray(y).astype(bool).ravel()
    s = np.asarray(score, dtype=np.float64).ravel()
    n_pos = int(t.sum())
    if n_pos == 0:
        return 0.0
    order = np.argsort(-s, kind="stable")
    ts, ss = t[order], s[order]
    tp = np.cumsum(ts)
    fp = np.cumsum(~ts)
    last = np.r_[ss[1:] != ss[:-1], True]  # only cut between distinct scores
    tp, fp = tp[last], fp[last]
    f1 = tp / (tp + (fp + (n_pos - tp)) / 2)
    return float(f1.max())


# ---------------------------------------------------------------- VUS-PR (tsb-ad)


class VusUnavailable(RuntimeError):
    """The ``tsb-ad`` package (benchmark-only extra) is not installed."""


def tsb_window(x: Any) -> int:
    """The sliding window TSB-AD uses for VUS (``find_length_rank(x, rank=1)`` on the
    first channel): the lag of the highest local maximum of the autocorrelation over
    lags 3..400 of the first 20,000 values; 125 when there is none or it lies outside
    3..300. Re-implemented on NumPy because TSB-AD computes the autocorrelation with
    statsmodels (``acf(..., fft=True)``, the biased estimator, reproduced here), a
    dependency its metric does not otherwise need."""
    v = np.asarray(x, dtype=np.float64).ravel()[:20_000]
    n = v.size
    nlags = 400
    if n < 8 or v.std() == 0:
        return 125
    d = v - v.mean()
    size = 1 << math.ceil(math.log2(2 * n - 1))
    f = np.fft.rfft(d, size)
    acov = np.fft.irfft(f * np.conj(f), size)[: nlags + 1] / n
    acf = acov / acov[0]
    base = 3
    ac = acf[base:]
    # scipy.signal.argrelextrema(ac, np.greater): strictly greater than both neighbours
    inner = np.flatnonzero((ac[1:-1] > ac[:-2]) & (ac[1:-1] > ac[2:])) + 1
    if inner.size == 0:
        return 125
    best = int(inner[int(np.argmax(ac[inner]))])
    if best < 3 or best > 300:
        return 125
    return best + base


def vus_available() -> bool:
    try:
        import TSB_AD.evaluation.basic_metrics  # noqa: F401
    except ImportError:
        return False
    return True


def vus_pr(y: Any, score: Any, window: int) -> float:
    """VUS-PR of ``score`` against 0/1 ``y`` computed by TSB-AD's own code
    (``generate_curve(labels, score, window, version="opt", thre=250)``, exactly what
    its ``get_metrics`` reports as ``VUS-PR``), so the figures compare with the
    published ones. Scores are min-max scaled first, as TSB-AD does for every method."""
    try:
        from TSB_AD.evaluation.basic_metrics import generate_curve
    except ImportError:
        raise VusUnavailable(
            "VUS-PR needs the benchmark-only extra 'tsb-ad' "
            "(.venv/bin/uv pip install --python .venv/bin/python --no-deps tsb-ad)"
        ) from None
    t = np.asarray(y).astype(int).ravel()
    s = np.asarray(score, dtype=np.float64).ravel()
    lo, hi = float(np.min(s)), float(np.max(s))
    s = (s - lo) / (hi - lo) if hi > lo else np.zeros_like(s)
    out = generate_curve(t, s, int(window), "opt", 250)
    return float(out[-1])


# ---------------------------------------------------------------- regime checks


def out_of_range(
    train: pd.DataFrame, test: pd.DataFrame, tolerance: float = 0.05
) -> dict[str, Any]:
    """How much of ``test`` lies outside the training range.

    A reading is out of range when it is below ``min - tolerance·(max - min)`` or above
    ``max + tolerance·(max - min)`` of the training data (a sensor constant in training
    gets a band of ``tolerance·max(|value|, 1)``). Returns the share of test rows with
    any sensor out, that share for the first 10 % of the test rows (a regime change is
    there from the start, a failure usually is not) and the per-sensor shares, largest
    first."""
    cols = [c for c in train.columns if c in test.columns]
    a = train[cols].to_numpy(dtype=np.float64)
    b = test[cols].to_numpy(dtype=np.float64)
    lo, hi = np.nanmin(a, axis=0), np.nanmax(a, axis=0)
    band = np.where(hi > lo, hi - lo, np.maximum(np.abs(hi), 1.0)) * tolerance
    out = (b < lo - band) | (b > hi + band)
    any_out = out.any(axis=1)
    head = max(1, len(b) // 10)
    share = out.mean(axis=0) if len(b) else np.zeros(len(cols))
    order = np.argsort(-share, kind="stable")
    return {
        "rows_out_share": float(any_out.mean()) if len(b) else 0.0,
        "first_tenth_out_share": float(any_out[:head].mean()) if len(b) else 0.0,
        "sensors": {str(cols[j]): float(share[j]) for j in order if share[j] > 0},
    }


# ---------------------------------------------------------------- running detectors


@dataclass
class Scored:
    """What one detector said about one case."""

    score: np.ndarray
    flags: np.ndarray
    ranking: np.ndarray | None
    """What ``top_sensors`` ranks (``DetectionResult.blame``); ``None`` when not asked."""
    sensors: list[str]
    fit_seconds: float
    score_seconds: float


class CaseRunner:
    """Fit (once per ``train_key``) and score cases with one detector, public API only."""

    def __init__(self, detector: str, params: dict[str, Any] | None = None) -> None:
        self.detector = detector
        self.params = dict(params or {})
        self._key: str | None = None
        self._fitted: Any = None
        self._fit_s = 0.0

    def run(self, case: Case, *, contributions: bool = False) -> Scored:
        import time

        fit_s = 0.0
        if case.train_key is None or case.train_key != self._key or self._fitted is None:
            t0 = time.perf_counter()
            self._fitted = make_detector(self.detector, **self.params).fit(case.train)
            fit_s = time.perf_counter() - t0
            self._key = case.train_key
        det = self._fitted
        t0 = time.perf_counter()
        res = det.detect(case.test)
        score_s = time.perf_counter() - t0
        return Scored(
            score=np.asarray(res.score, dtype=np.float64),
            flags=np.asarray(res.is_anomaly).astype(np.int8),
            ranking=np.asarray(res.blame) if contributions else None,
            sensors=list(res.sensors),
            fit_seconds=fit_s,
            score_seconds=score_s,
        )
