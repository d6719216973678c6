"""Turn per-reading scores into alarm events: causal smoothing plus hysteresis.

A failure should be one alarm with a start and an end, not a string of flickering points.
Rules (all causal, so batch scoring and live scoring agree, and all vectorised):

1. ``smoothed[t]`` = mean of the last ``smooth_window`` scores (missing ones count as 0).
2. The alarm turns **on** at ``t`` once ``smoothed > threshold`` has held for
   ``min_duration`` consecutive readings.
3. It turns **off** once ``smoothed < off_ratio * threshold`` has held for
   ``release`` consecutive readings; between the two levels it keeps its state, so a
   score hovering around the threshold neither starts nor ends an alarm. A longer
   ``release`` merges alarms separated by short quiet gaps into one event.

The state is carried without a Python loop: the alarm is on where the index of the last
"on" trigger is later than the index of the last "off" trigger
(``np.maximum.accumulate`` over trigger indices).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def rolling_mean(x: Any, window: int) -> np.ndarray:
    """Causal rolling mean over ``window`` readings.

    Scores before the first reading and NaN scores count as 0, so one spike at the start
    of a batch or a dropout cannot start an alarm on its own."""
    a = np.nan_to_num(np.asarray(x, dtype=np.float64), nan=0.0)
    window = max(1, int(window))
    if window == 1 or a.size == 0:
        return a.copy()
    c = np.cumsum(a)
    out = c.copy()
    out[window:] = c[window:] - c[:-window]
    return out / window


def run_length(cond: Any) -> np.ndarray:
    """For each position, how many consecutive ``True`` values end there (0 if False)."""
    c = np.asarray(cond, dtype=bool)
    idx = np.arange(c.size)
    last_false = np.maximum.accumulate(np.where(c, -1, idx)) if c.size else idx
    return np.where(c, idx - last_false, 0)


def hysteresis(
    score: Any,
    threshold: float,
    *,
    smooth_window: int = 5,
    min_duration: int = 3,
    off_ratio: float = 0.8,
    release: int = 5,
) -> np.ndarray:
    """Boolean alarm flags from raw scores (see the module docstring for the rules)."""
    if not 0 < off_ratio <= 1:
        raise ValueError(f"off_ratio must be in (0, 1], got {off_ratio}")
    s = rolling_mean(score, smooth_window)
    n = s.size
    if n == 0:
        return np.zeros(0, dtype=bool)
    idx = np.arange(n)
    on = run_length(s > threshold) >= max(1, int(min_duration))
    off = run_length(s < off_ratio * threshold) >= max(1, int(release))
    last_on = np.maximum.accumulate(np.where(on, idx, -1))
    last_off = np.maximum.accumulate(np.where(off, idx, -1))
    return last_on > last_off


def merge_gaps(flags: Any, max_gap: int) -> np.ndarray:
    """Fill quiet gaps of at most ``max_gap`` readings between two alarms (not causal;
    for after-the-fact reports)."""
    f = np.asarray(flags, dtype=bool).copy()
    if max_gap <= 0 or f.size == 0:
        return f
    starts, ends = flag_spans(f)
    for s, e in zip(starts[1:], ends[:-1], strict=True):
        if s - e - 1 <= max_gap:
            f[e + 1 : s] = True
    return f


def flag_spans(flags: Any) -> tuple[np.ndarray, np.ndarray]:
    """Start and end (inclusive) row positions of each run of ``True``."""
    f = np.asarray(flags, dtype=bool).ravel()
    if f.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    d = np.diff(f.astype(np.int8), prepend=np.int8(0), append=np.int8(0))
    starts = np.flatnonzero(d == 1)
    ends = np.flatnonzero(d == -1) - 1
    return starts.astype(np.int64), ends.astype(np.int64)
