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

The rules are applied through one fitted value, :class:`~sensorguard.detectors.alarm.AlarmRule`
(batch flags and the live tracker). The state is carried without a Python loop: the
alarm is on where the index of the last "on" trigger is later than the index of the last
"off" trigger (``np.maximum.accumulate`` over trigger indices). ``history`` and
``initially_on`` let a live tracker continue a stream exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

SCORE_CAP = 1e100
"""Scores are capped at this value ("off the scale") before smoothing and in detector
output: far above any threshold, yet a window of them sums without overflowing."""


def rolling_mean(x: Any, window: int) -> np.ndarray:
    """Causal rolling mean over ``window`` readings.

    Scores before the first reading and NaN scores count as 0, so one spike at the start
    of a batch or a dropout cannot start an alarm on its own. Each window is summed on
    its own (oldest first), never as a difference of running sums: a running sum lets
    one huge or infinite score cancel or overflow every mean after it (one ``inf`` made
    the rest of a batch blind). Infinite scores count as ``SCORE_CAP``."""
    a = np.asarray(x, dtype=np.float64).ravel()
    a = np.clip(np.nan_to_num(a, nan=0.0), -SCORE_CAP, SCORE_CAP)
    window = max(1, int(window))
    n = a.size
    if window == 1 or n == 0:
        return a.copy()
    pad = np.concatenate([np.zeros(window - 1), a])
    total = pad[:n].copy()
    for k in range(1, window):
        total += pad[k : k + n]
    return total / window


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
    them; :class:`~sensorguard.detectors.alarm.AlarmTracker` keeps both between batches.
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


@dataclass(frozen=True)
class Event:
    """A run of flagged readings; ``start_idx``/``end_idx`` are inclusive row positions."""

    start: Any
    end: Any
    start_idx: int
    end_idx: int

    @property
    def n_readings(self) -> int:
        return self.end_idx - self.start_idx + 1

    def as_dict(self) -> dict[str, Any]:
        def iso(t: Any) -> Any:
            return t.isoformat() if hasattr(t, "isoformat") else t

        return {
            "start": iso(self.start),
            "end": iso(self.end),
            "start_idx": self.start_idx,
            "end_idx": self.end_idx,
            "n_readings": self.n_readings,
        }


def events_from_flags(flags: Any, times: Any = None) -> list[Event]:
    """Events (runs of true flags) with their start/end times (row index when no times)."""
    f = np.asarray(flags).astype(bool).ravel()
    starts, ends = flag_spans(f)
    if times is None:
        return [Event(int(s), int(e), int(s), int(e)) for s, e in zip(starts, ends, strict=True)]
    tv = times.reset_index(drop=True) if isinstance(times, pd.Series) else times
    if len(tv) != f.size:
        raise ValueError(f"{len(tv)} times for {f.size} flags")
    return [Event(tv[s], tv[e], int(s), int(e)) for s, e in zip(starts, ends, strict=True)]
