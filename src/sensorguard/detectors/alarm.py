"""The alarm rule: one fitted value that turns scores into alarm flags, batch or live.

Every detector decides alarms the same way (the rules are in
:mod:`sensorguard.detectors.events`): a causal rolling mean over ``smooth_window``
scores, on after ``min_duration`` smoothed readings above ``threshold``, off after
``release`` readings below ``off_ratio × threshold``, and optionally an on-delay of
``confirm`` readings. A detector fits its rule as ``alarm_rule_`` (the threshold is
learned, the rest are its parameters); scoring and deciding stay apart, as in river's
anomaly filters.

* ``rule.flags(score)`` — the flags of a recorded batch. With an on-delay, short alarms
  are dropped and each confirmed event is dated back to where its smoothed score rose
  above ``backdate × threshold`` (at most ``max_back`` readings earlier).
* ``rule.tracker()`` — a fresh :class:`AlarmTracker` for one live stream (one per
  asset): ``update(scores)`` gives, chunk after chunk, exactly the flags one causal pass
  over the stream gives (an on-delayed alarm is raised ``confirm`` readings late
  instead of dated back). Its state is a small JSON-able dict (``state()`` /
  ``AlarmTracker.restore``), so a live service can checkpoint it.

A rule with the defaults (no smoothing, no hysteresis band, no on-delay) is the plain
``score > threshold``; only a score exactly equal to the threshold keeps the previous
state instead of counting as "off".
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from sensorguard.detectors.events import (
    SCORE_CAP,
    confirm_events,
    hysteresis,
    on_delay,
    run_length,
)

ALARM_FIELDS = (
    "smooth_window",
    "min_duration",
    "off_ratio",
    "release",
    "confirm",
    "backdate",
    "max_back",
)
"""Detector parameters that belong to the alarm rule (a detector has some or all)."""

_SMALL = 16  # readings per update up to which the scalar path beats numpy
# readings per stream up to which update_trackers lays streams out as rows of one array:
# 100 trackers, 20 / 150 / 2,000 scores each, one by one 4.4 / 5.0 / 11.4 ms, at once
# 0.7 / 1.3 / 18.6 ms (the rows' temporaries outgrow the cache); they cross near 670
_AT_ONCE = 512


@dataclass(frozen=True)
class AlarmRule:
    """Threshold, smoothing, hysteresis and on-delay of one fitted detector."""

    threshold: float
    smooth_window: int = 1
    min_duration: int = 1
    off_ratio: float = 1.0
    release: int = 1
    confirm: int = 0
    backdate: float = 0.0
    max_back: int | None = None

    def __post_init__(self) -> None:
        if not 0 < self.off_ratio <= 1:
            raise ValueError(f"off_ratio must be in (0, 1], got {self.off_ratio}")

    @classmethod
    def from_params(cls, threshold: float, params: dict[str, Any]) -> AlarmRule:
        """The rule of a detector: its threshold plus those of its parameters that are
        alarm fields (``ALARM_FIELDS``); the others keep the defaults."""
        kw: dict[str, Any] = {k: params[k] for k in ALARM_FIELDS if k in params}
        for k in ("smooth_window", "min_duration", "release", "confirm"):
            if k in kw:
                kw[k] = int(kw[k])
        for k in ("off_ratio", "backdate"):
            if k in kw:
                kw[k] = float(kw[k])
        return cls(threshold=float(threshold), **kw)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def history(self) -> int:
        """Past raw scores needed to continue smoothing and run lengths exactly."""
        return max(1, self.smooth_window) - 1 + max(1, self.min_duration, self.release)

    def flags(self, score: Any) -> np.ndarray:
        """Alarm flags of a recorded batch (causal hysteresis, then the retrospective
        on-delay with back-dating when ``confirm`` > 1)."""
        x = np.asarray(score, dtype=np.float64).ravel()
        flags = hysteresis(
            x,
            self.threshold,
            smooth_window=self.smooth_window,
            min_duration=self.min_duration,
            off_ratio=self.off_ratio,
            release=self.release,
        )
        if self.confirm <= 1:
            return flags
        return confirm_events(
            flags,
            x,
            self.threshold,
            confirm=self.confirm,
            smooth_window=self.smooth_window,
            backdate=self.backdate,
            max_back=self.max_back,
        )

    def tracker(self) -> AlarmTracker:
        """A fresh live tracker for one stream (one per asset)."""
        return AlarmTracker(self)


class AlarmTracker:
    """The alarm rule carried across chunks of one stream (live scoring).

    ``update(scores)`` returns exactly the flags of one causal pass over the whole
    stream, for any chunking. Small updates take an O(1)-per-reading scalar path (the
    running window and run lengths), larger ones the vectorised ``hysteresis`` with the
    last raw scores as context; both keep all the state up to date, so they alternate
    freely. The state (``state()``) is plain JSON: the last raw scores, the run lengths
    and the alarm's on-state and age.
    """

    __slots__ = (
        "_confirm",
        "_hist",
        "_min_off",
        "_min_on",
        "_off_level",
        "_run_off",
        "_run_on",
        "_threshold",
        "_win",
        "on",
        "on_for",
        "rule",
    )

    def __init__(self, rule: AlarmRule) -> None:
        self.rule = rule
        self._off_level = rule.off_ratio * rule.threshold
        # the rule's fields as plain slots: ``step`` is the predictor's per-reading path,
        # and each attribute chain or max() there costs about 40 ns
        self._threshold = rule.threshold
        self._min_on = max(1, rule.min_duration)
        self._min_off = max(1, rule.release)
        self._confirm = rule.confirm
        self._hist: deque[float] = deque(maxlen=rule.history)
        # zeros stand for the readings before the stream began, as in rolling_mean
        self._win: deque[float] = deque([0.0] * max(1, rule.smooth_window))
        self._run_on = 0
        self._run_off = 0
        self.on = False
        self.on_for = 0

    # ---- state (JSON-able) for checkpoints
    def state(self) -> dict[str, Any]:
        """The tracker's state as a strict-JSON dict: NaN scores as ``None``, infinite
        ones as ``±SCORE_CAP`` (what the smoothing counts them as)."""
        return {
            "scores": [None if math.isnan(v) else _cap(v) for v in self._hist],
            "run_on": self._run_on,
            "run_off": self._run_off,
            "on": self.on,
            "on_for": self.on_for,
        }

    @classmethod
    def restore(cls, rule: AlarmRule, state: dict[str, Any]) -> AlarmTracker:
        """A tracker continuing from ``state`` (as returned by :meth:`state`)."""
        t = cls(rule)
        scores = [math.nan if v is None else float(v) for v in state["scores"]]
        t._hist.extend(scores)
        w = max(1, rule.smooth_window)
        last = [0.0 if math.isnan(v) else _cap(v) for v in scores][-w:]
        t._win = deque([0.0] * (w - len(last)) + last)
        t._run_on = int(state["run_on"])
        t._run_off = int(state["run_off"])
        t.on = bool(state["on"])
        t.on_for = int(state["on_for"])
        return t

    # ---- updates
    def update(self, score: Any) -> np.ndarray:
        x = np.asarray(score, dtype=np.float64).ravel()
        if x.size <= _SMALL:
            return np.array([self.step(v) for v in x.tolist()], dtype=bool)
        r = self.rule
        hist = np.fromiter(self._hist, dtype=np.float64, count=len(self._hist))
        flags = hysteresis(
            x,
            r.threshold,
            smooth_window=r.smooth_window,
            min_duration=r.min_duration,
            off_ratio=r.off_ratio,
            release=r.release,
            history=hist,
            initially_on=self.on,
        )
        before = self.on_for if self.on else 0
        out = on_delay(flags, r.confirm, before)
        self.on = bool(flags[-1])
        tail_run = int(run_length(flags)[-1])
        self.on_for = min(tail_run + (before if tail_run == flags.size else 0), 1 << 30)
        self._resync(np.concatenate([hist, x])[-r.history :])
        return out

    def step(self, v: float) -> bool:
        """One reading: its alarm flag (the common live case). The same arithmetic as
        ``_cap`` and ``_window_mean``, inlined (this runs once per served reading)."""
        self._hist.append(v)
        win = self._win
        win.popleft()
        if v != v:  # NaN
            win.append(0.0)
        elif -SCORE_CAP <= v <= SCORE_CAP:
            win.append(v)
        else:
            win.append(math.copysign(SCORE_CAP, v))
        total = 0.0
        for x in win:  # oldest first, like rolling_mean (sum() differs on Python 3.12+)
            total += x
        s = total / len(win)
        self._run_on = self._run_on + 1 if s > self._threshold else 0
        self._run_off = self._run_off + 1 if s < self._off_level else 0
        # an off trigger wins a tie, as in hysteresis (last_on > last_off is False)
        if self._run_off >= self._min_off:
            self.on = False
        elif self._run_on >= self._min_on:
            self.on = True
        if self.on:
            on_for = self.on_for + 1
            if on_for > 1 << 30:
                on_for = 1 << 30
            self.on_for = on_for
            return on_for >= self._confirm
        self.on_for = 0
        return False

    def _resync(self, tail: np.ndarray) -> None:
        """Window and run lengths after a vectorised update, from the last raw scores."""
        r = self.rule
        w, m, rel = max(1, r.smooth_window), max(1, r.min_duration), max(1, r.release)
        self._hist.clear()
        self._hist.extend(tail.tolist())
        vals = [0.0 if math.isnan(v) else _cap(v) for v in self._hist]
        vals = [0.0] * max(0, w - 1 + max(m, rel) - len(vals)) + vals
        self._win = deque(vals[-w:])
        run_on = run_off = 0
        # smoothed values of the last max(m, rel) readings, oldest first
        for end in range(len(vals) - max(m, rel), len(vals)):
            s = _window_mean(vals[end - w + 1 : end + 1])
            run_on = run_on + 1 if s > r.threshold else 0
            run_off = run_off + 1 if s < self._off_level else 0
        self._run_on = min(run_on, m)
        self._run_off = min(run_off, rel)


def _cap(v: float) -> float:
    return v if -SCORE_CAP <= v <= SCORE_CAP else math.copysign(SCORE_CAP, v)


def _window_mean(values: Any) -> float:
    # summed oldest first, like the windowed mean of rolling_mean, so both paths agree
    total = 0.0
    for v in values:
        total += v
    return total / len(values)


def update_trackers(trackers: list[AlarmTracker], scores: list[np.ndarray]) -> list[np.ndarray]:
    """:meth:`AlarmTracker.update` of several trackers of one rule, ``scores[i]`` the
    new raw scores of ``trackers[i]``: the same flags and the same new states, with the
    streams of 17 to 512 scores laid out as the rows of one array (the watch service
    updates up to 100 per pass; one by one, ``update`` cost 44-50 µs of numpy calls per
    tracker at 20-150 scores)."""
    out: list[np.ndarray | None] = [None] * len(trackers)
    xs = [np.asarray(x, dtype=np.float64).ravel() for x in scores]
    big = []
    for i, (t, x) in enumerate(zip(trackers, xs, strict=True)):
        if x.size <= _SMALL or x.size > _AT_ONCE:
            out[i] = t.update(x)
        else:
            big.append(i)
    if len(big) > 1 and all(trackers[i].rule == trackers[big[0]].rule for i in big):
        flags = _update_rows([trackers[i] for i in big], [xs[i] for i in big])
        for i, f in zip(big, flags, strict=True):
            out[i] = f
    else:  # one stream, or trackers of different rules: one by one
        for i in big:
            out[i] = trackers[i].update(xs[i])
    return out  # type: ignore[return-value]


def _run_rows(c: np.ndarray) -> np.ndarray:
    """:func:`run_length` along each row."""
    idx = np.arange(c.shape[1])[None, :]
    return np.where(c, idx - np.maximum.accumulate(np.where(c, -1, idx), axis=1), 0)


def _update_rows(trackers: list[AlarmTracker], xs: list[np.ndarray]) -> list[np.ndarray]:
    r = trackers[0].rule
    w, m, rel = max(1, r.smooth_window), max(1, r.min_duration), max(1, r.release)
    H = r.history
    hist = [np.fromiter(t._hist, dtype=np.float64, count=len(t._hist)) for t in trackers]
    hl = np.array([h.size for h in hist])
    xl = np.array([x.size for x in xs])
    tot = hl + xl
    nb, L = len(trackers), int(tot.max())
    # each stream's [history, new scores] from column 0: the zeros rolling_mean puts
    # before a stream's first reading are the zero columns left of it
    raw = np.zeros((nb, L))
    for b in range(nb):
        raw[b, : hl[b]] = hist[b]
        raw[b, hl[b] : tot[b]] = xs[b]
    pad = np.zeros((nb, w - 1 + L))
    pad[:, w - 1 :] = np.clip(np.nan_to_num(raw, nan=0.0), -SCORE_CAP, SCORE_CAP)
    if w == 1:
        s = pad.copy()
    else:  # summed oldest first, as rolling_mean does
        s = pad[:, :L].copy()
        for k in range(1, w):
            s += pad[:, k : k + L]
        s = s / w
    run_on = _run_rows(s > r.threshold)
    run_off = _run_rows(s < r.off_ratio * r.threshold)
    t = np.arange(L)[None, :] - hl[:, None]  # the index within the new scores
    new = (t >= 0) & (t < xl[:, None])
    # with no trigger yet the state before decides, as in hysteresis: -1 against -2
    was_on = np.array([tr.on for tr in trackers])[:, None]
    on_at = np.where((run_on >= m) & new, t, np.where(was_on, -1, -2))
    off_at = np.where((run_off >= rel) & new, t, np.where(was_on, -2, -1))
    last_on = np.maximum.accumulate(on_at, axis=1)
    last_off = np.maximum.accumulate(off_at, axis=1)
    flags = (last_on > last_off) & new
    frun = _run_rows(flags)  # runs that start with the new scores
    before = np.array([tr.on_for if tr.on else 0 for tr in trackers])[:, None]
    # the on-delay: the run that continues from before counts the readings it was on
    lead = np.where(frun == t + 1, frun + before, frun)
    delayed = flags if r.confirm <= 1 else lead >= r.confirm
    out = []
    for b, tr in enumerate(trackers):
        lo, end = int(hl[b]), int(tot[b])
        out.append(delayed[b, lo:end].copy())
        tr.on = bool(flags[b, end - 1])
        tail_run = int(frun[b, end - 1])
        bf = int(before[b, 0])
        tr.on_for = min(tail_run + (bf if tail_run == xl[b] else 0), 1 << 30)
        # the state _resync would rebuild from the last raw scores, read off the rows
        tr._hist.clear()
        tr._hist.extend(raw[b, max(0, end - H) : end].tolist())
        tr._win = deque(pad[b, end - 1 : end - 1 + w].tolist())
        tr._run_on = min(int(run_on[b, end - 1]), m)
        tr._run_off = min(int(run_off[b, end - 1]), rel)
    return out
