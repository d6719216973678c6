"""NAB-style changepoint score, written from the published definition.

Definitions (Lavin & Ahmad, "Evaluating Real-time Anomaly Detection Algorithms — the
Numenta Anomaly Benchmark", 2015), implemented here from the formulas:

* Every **true changepoint** opens a scoring window reaching ``window`` to its right:
  ``[t_cp, t_cp + window]``. Overlapping windows are merged.
* **Predicted changepoints** are the times where the 0/1 alarm output changes value
  (both 0→1 and 1→0), see :func:`changepoints_from_flags`.
* Inside a window only the **first** predicted changepoint counts, as a true positive
  worth ``A_tp * sigma(y)``; later ones in the same window are ignored.
* A predicted changepoint outside every window is a false positive worth
  ``A_fp * sigma(y)`` (negative), where ``y`` is its distance after the end of the
  preceding window in window lengths; before the first window it is worth ``-A_fp``.
* A window without a predicted changepoint is a false negative worth ``-A_fn``.
* ``y`` is the relative position: ``y = (t - t_end) / (t_end - t_start)``, i.e. -1 at the
  start of the window, 0 at its end, positive after it.
* ``sigma(y) = 2 / (1 + exp(5 y)) - 1`` (the scaled sigmoid: ≈ 0.987 at -1, 0 at 0,
  → -1 far after a window).
* Normalised score = ``100 * (S - S_null) / (S_perfect - S_null)`` where ``S_null`` is the
  detector that never alarms (every window missed) and ``S_perfect`` the one that raises
  exactly one changepoint at the start of every window. Perfect → 100, silent → 0, and
  a detector that raises many false changepoints goes negative.

Profiles: standard ``(A_tp, A_fp, A_fn) = (1, 0.11, 1)``, reward_low_FP ``(1, 0.22, 1)``,
reward_low_FN ``(1, 0.11, 2)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from sensorguard.timeutil import to_utc_naive


@dataclass(frozen=True)
class Profile:
    a_tp: float
    a_fp: float
    a_fn: float


PROFILES: dict[str, Profile] = {
    "standard": Profile(1.0, 0.11, 1.0),
    "reward_low_FP": Profile(1.0, 0.22, 1.0),
    "reward_low_FN": Profile(1.0, 0.11, 2.0),
}


def scaled_sigmoid(y: float) -> float:
    """``2 / (1 + e^(5y)) - 1``, guarded against overflow for large ``y``."""
    z = 5.0 * y
    if z > 700:
        return -1.0
    return 2.0 / (1.0 + math.exp(z)) - 1.0


def changepoints_from_flags(flags: Any, times: Any) -> np.ndarray:
    """Times at which a 0/1 sequence changes value (the time of the changed reading)."""
    t = _as_ns(times)
    return t[_transitions(flags, t.size)]


def _transitions(flags: Any, n: int) -> np.ndarray:
    f = np.asarray(flags).astype(np.int8).ravel()
    if f.size != n:
        raise ValueError(f"{f.size} flags but {n} times")
    if f.size < 2:
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(np.diff(f) != 0) + 1


def _as_ns(times: Any) -> np.ndarray:
    """Times as int64 nanoseconds; numbers are taken as seconds.

    Integer nanoseconds rather than :func:`~sensorguard.timeutil.to_seconds`' float
    seconds: a float epoch second is exact only to ~0.2 µs today, and window membership
    here is an exact comparison. Datetimes are read by the one time rule
    (:func:`~sensorguard.timeutil.to_utc_naive`)."""
    arr = times.to_numpy() if isinstance(times, pd.Series | pd.Index) else np.asarray(times)
    if arr.dtype.kind in "fiu":
        return np.round(arr.astype(np.float64) * 1e9).astype(np.int64)
    return to_utc_naive(arr, what="times").asi8


def windows_from_changepoints(true_cps: Any, window: int) -> list[tuple[int, int]]:
    """``[t, t + window]`` per true changepoint, sorted, overlapping ones merged."""
    cps = np.sort(np.asarray(true_cps, dtype=np.int64).ravel())
    out: list[tuple[int, int]] = []
    for c in cps:
        start, end = int(c), int(c) + int(window)
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


@dataclass
class RawScore:
    """Counts and per-profile raw scores; add them across files, then normalise."""

    windows: int
    tp: int
    fp: int
    fn: int
    raw: dict[str, float]
    perfect: dict[str, float]
    null: dict[str, float]

    def __add__(self, other: RawScore) -> RawScore:
        return RawScore(
            self.windows + other.windows,
            self.tp + other.tp,
            self.fp + other.fp,
            self.fn + other.fn,
            {k: self.raw[k] + other.raw[k] for k in self.raw},
            {k: self.perfect[k] + other.perfect[k] for k in self.perfect},
            {k: self.null[k] + other.null[k] for k in self.null},
        )

    def normalised(self) -> dict[str, float]:
        out = {}
        for k in self.raw:
            den = self.perfect[k] - self.null[k]
            out[k] = 100.0 * (self.raw[k] - self.null[k]) / den if den else 0.0
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "windows": self.windows,
            "detected_windows": self.tp,
            "false_changepoints": self.fp,
            "missed_windows": self.fn,
            "scores": self.normalised(),
        }


def raw_score(
    true_cps: Any,
    predicted_cps: Any,
    window: int,
    profiles: dict[str, Profile] | None = None,
) -> RawScore:
    """Score predicted changepoint times against true ones (same time unit as ``window``)."""
    profiles = profiles or PROFILES
    wins = windows_from_changepoints(true_cps, window)
    preds = np.sort(np.asarray(predicted_cps, dtype=np.int64).ravel())
    raw = dict.fromkeys(profiles, 0.0)
    detected = [False] * len(wins)
    fp = 0
    starts = np.asarray([w[0] for w in wins], dtype=np.int64)
    for p in preds:
        # index of the last window starting at or before p
        i = int(np.searchsorted(starts, p, side="right")) - 1
        if i >= 0 and p <= wins[i][1]:
            if detected[i]:
                continue
            detected[i] = True
            y = _relative(int(p), wins[i])
            for k, prof in profiles.items():
                raw[k] += prof.a_tp * scaled_sigmoid(y)
            continue
        fp += 1
        if i < 0:  # before any window
            for k, prof in profiles.items():
                raw[k] -= prof.a_fp
        else:
            y = _relative(int(p), wins[i])
            for k, prof in profiles.items():
                raw[k] += prof.a_fp * scaled_sigmoid(y)
    fn = detected.count(False)
    for k, prof in profiles.items():
        raw[k] -= prof.a_fn * fn
    best = scaled_sigmoid(-1.0)
    n = len(wins)
    return RawScore(
        windows=n,
        tp=n - fn,
        fp=fp,
        fn=fn,
        raw=raw,
        perfect={k: prof.a_tp * best * n for k, prof in profiles.items()},
        null={k: -prof.a_fn * n for k, prof in profiles.items()},
    )


def _relative(t: int, win: tuple[int, int]) -> float:
    start, end = win
    length = end - start
    if length <= 0:
        return -1.0 if t <= end else math.inf
    return (t - end) / length


def changepoint_score(
    times: Sequence[Any] | np.ndarray | pd.Series,
    y_pred: Any,
    *,
    true_changepoints: Any = None,
    y_true: Any = None,
    window_seconds: float = 60.0,
) -> RawScore:
    """Raw NAB-style score of one series of alarms.

    True changepoints are the rows where ``true_changepoints`` is 1 when given, else the
    transitions of ``y_true``. ``times`` are datetimes; the window is in seconds.
    """
    t = _as_ns(times)
    if true_changepoints is not None:
        mask = np.asarray(true_changepoints).astype(float).ravel() == 1
        true = t[mask]
    elif y_true is not None:
        true = t[_transitions(y_true, t.size)]
    else:
        raise ValueError("give true_changepoints or y_true")
    pred = t[_transitions(y_pred, t.size)]
    return raw_score(true, pred, round(window_seconds * 1e9))
