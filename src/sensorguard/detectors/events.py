"""Turn per-reading scores into alarm events: causal smoothing plus hysteresis.

A failure should be one alarm with a start and an end, not a string of flickering points.
Rules 1-3 are causal, so batch scoring and live scoring agree (all vectorised):

1. ``smoothed[t]`` = mean of the last ``smooth_window`` scores (missing ones count as 0).
2. The alarm turns **on** at ``t`` once ``smoothed > threshold`` has held for
   ``min_duration`` consecutive readings.
3. It turns **off** once ``smoothed < off_ratio * threshold`` has held for
   ``release`` consecutive readings; between the two levels it keeps its state, so a
   score hovering around the threshold neither starts nor ends an alarm. A longer
   ``release`` merges alarms separated by short quiet gaps into one event.
4. Optionally an **on-delay** (``confirm``): an alarm is raised only once it has been on
   for ``confirm`` consecutive readings, so brief excursions never reach anyone (the
   on-delay of ISA-18.2 alarm management). Live scoring raises it ``confirm`` readings
   late; scoring a recorded batch (:func:`confirm_events`) drops the short alarms and
   dates each confirmed event back to where its score rose, which a live alarm can only
   report afterwards.

Live scoring in small batches keeps an :class:`AlarmTracker` per asset, which carries the
last scores and the alarm state so the flags equal those of one pass over the stream.
The state is carried without a Python loop: the alarm is on where the index of the last
"on" trigger is later than the index of the last "off" trigger
(``np.maximum.accumulate`` over trigger indices).
"""

from __future__ import annotations

from dataclasses import dataclass, field
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
    history: Any = None,
    initially_on: bool = False,
) -> np.ndarray:
    """Boolean alarm flags from raw scores (see the module docstring for the rules).

    For live scoring in batches, ``history`` holds the raw scores just before ``score``
    (used for smoothing and run lengths only) and ``initially_on`` the alarm state after
    them; :class:`AlarmTracker` keeps both between batches.
    """
    if not 0 < off_ratio <= 1:
        raise ValueError(f"off_ratio must be in (0, 1], got {off_ratio}")
    x = np.asarray(score, dtype=np.float64).ravel()
    h = np.zeros(0) if history is None else np.asarray(history, dtype=np.float64).ravel()
    n = x.size
    if n == 0:
        return np.zeros(0, dtype=bool)
    s = rolling_mean(np.concatenate([h, x]), smooth_window)
    on = (run_length(s > threshold) >= max(1, int(min_duration)))[h.size :]
    off = (run_length(s < off_ratio * threshold) >= max(1, int(release)))[h.size :]
    idx = np.arange(n)
    # with no trigger yet, the initial state decides: compare -1 with -2
    last_on = np.maximum.accumulate(np.where(on, idx, -1 if initially_on else -2))
    last_off = np.maximum.accumulate(np.where(off, idx, -2 if initially_on else -1))
    return last_on > last_off


def on_delay(flags: Any, confirm: int, on_for: int = 0) -> np.ndarray:
    """Causal on-delay: ``flags`` kept only where the alarm has been on for at least
    ``confirm`` consecutive readings; ``on_for`` = readings it was already on before."""
    f = np.asarray(flags, dtype=bool).ravel()
    if confirm <= 1 or f.size == 0:
        return f.copy()
    run = run_length(f)
    lead = run == np.arange(1, f.size + 1)  # the run that continues from before
    run = np.where(lead, run + on_for, run)
    return np.asarray(run >= confirm)


def confirm_events(
    flags: Any,
    score: Any,
    threshold: float,
    *,
    confirm: int,
    smooth_window: int = 1,
    backdate: float = 0.0,
    max_back: int | None = None,
) -> np.ndarray:
    """Retrospective on-delay for a recorded batch (not causal).

    Alarms shorter than ``confirm`` readings are dropped (an alarm still on at the end
    of the batch counts only once it is that long, as live). With ``backdate`` > 0 each
    confirmed event starts where its smoothed score last rose above ``backdate`` ×
    ``threshold`` (at most ``max_back`` readings earlier): the start a live alarm
    reports once it is confirmed.
    """
    f = np.asarray(flags, dtype=bool).ravel()
    out = np.zeros_like(f)
    if f.size == 0:
        return out
    s = rolling_mean(score, smooth_window)
    high = s > backdate * threshold
    # for each position, where the current stretch of "score above the backdate level"
    # began (vectorised: the last index where it was not above, plus one)
    idx = np.arange(f.size)
    rise = np.maximum.accumulate(np.where(high, -1, idx)) + 1
    starts, ends = flag_spans(f)
    limit = f.size if max_back is None else max(0, int(max_back))
    for a, b in zip(starts.tolist(), ends.tolist(), strict=True):
        if b - a + 1 < max(1, int(confirm)):
            continue
        a2 = max(int(rise[a]), a - limit) if backdate > 0 and high[a] else a
        out[a2 : b + 1] = True
    return out


@dataclass
class AlarmTracker:
    """Smoothing and hysteresis carried across batches of one asset (live scoring).

    ``update(scores)`` returns exactly the flags one call of :func:`hysteresis` on the
    whole stream would give for these readings. Keep one tracker per asset.
    """

    threshold: float
    smooth_window: int = 5
    min_duration: int = 3
    off_ratio: float = 0.8
    release: int = 5
    confirm: int = 0
    on: bool = False
    on_for: int = 0
    tail: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @classmethod
    def for_detector(cls, detector: Any) -> AlarmTracker:
        """A tracker with the detector's threshold and hysteresis parameters (a plain
        threshold for detectors without them)."""
        return cls(
            threshold=float(detector.threshold_),
            smooth_window=int(getattr(detector, "smooth_window", 1)),
            min_duration=int(getattr(detector, "min_duration", 1)),
            off_ratio=float(getattr(detector, "off_ratio", 1.0)),
            release=int(getattr(detector, "release", 1)),
            confirm=int(getattr(detector, "confirm", 0)),
        )

    def update(self, score: Any) -> np.ndarray:
        x = np.asarray(score, dtype=np.float64).ravel()
        flags = hysteresis(
            x,
            self.threshold,
            smooth_window=self.smooth_window,
            min_duration=self.min_duration,
            off_ratio=self.off_ratio,
            release=self.release,
            history=self.tail,
            initially_on=self.on,
        )
        out = self._delayed(flags)
        # enough past scores to smooth and count runs exactly at the next batch's start
        keep = max(1, self.smooth_window) - 1 + max(1, self.min_duration, self.release)
        self.tail = np.concatenate([self.tail, x])[-keep:]
        return out

    def _delayed(self, flags: np.ndarray) -> np.ndarray:
        """The on-delay applied to this batch's hysteresis flags; updates ``on`` and
        ``on_for`` (readings the alarm has been on, across batches)."""
        before = self.on_for if self.on else 0
        out = on_delay(flags, self.confirm, before)
        if flags.size:
            self.on = bool(flags[-1])
            tail_run = int(run_length(flags)[-1])
            self.on_for = min(tail_run + (before if tail_run == flags.size else 0), 1 << 30)
        return out


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
