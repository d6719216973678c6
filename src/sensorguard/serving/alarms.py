"""Alarm state carried across requests, one tracker per asset.

The detector's smoothing and hysteresis (:mod:`sensorguard.detectors.events`) need the
readings before the current one. Within one request that context is the request itself,
so streaming one reading per request could never raise an alarm. :class:`AssetAlarms`
keeps an :class:`~sensorguard.detectors.events.AlarmTracker` per ``asset_id``, so a
stream cut into requests of any size gets exactly the flags of one pass over it.

* Trackers belong to one served model version: a hot swap starts from fresh state
  (the threshold and the smoothing may have changed with the model).
* At most ``max_assets`` trackers are kept, least recently used dropped first; a
  dropped asset starts again as if its stream began at its next reading.
* Missing values (NaN) continue the asset's stream too: a gap takes the asset's last
  value from earlier requests, as one pass over the stream would fill it.
* Updates hold a lock: large batches are scored in worker threads.
* Detectors whose score has a filter state (drift-robust's baseline) keep it per asset
  too (:meth:`AssetAlarms.score_stream`), so their scores equal one pass over each
  asset's stream as well.

A one-reading update is a few float operations (:class:`StreamTracker` keeps the
running window and run lengths); larger updates use the vectorised ``hysteresis``.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sensorguard.detectors.base import BaseDetector
from sensorguard.detectors.events import AlarmTracker, hysteresis

DEFAULT_ASSET: Any = None
"""Key of the readings that carry no ``asset_id`` (never equal to a real asset id)."""

_HYSTERESIS_PARAMS = ("smooth_window", "min_duration", "off_ratio", "release")
_SMALL = 16  # readings per asset up to which the scalar loop beats numpy


@dataclass
class StreamTracker(AlarmTracker):
    """:class:`AlarmTracker` with an O(1) path for small updates.

    State: the last raw scores (``_hist``, enough to rebuild the vectorised path's
    context), the smoothing window (``_win``, NaN counted as 0 like ``rolling_mean``),
    the run lengths above the threshold and below the release level (capped), and
    ``on``. Both paths keep all of it up to date, so they can alternate freely.
    """

    _hist: deque[float] = field(init=False, repr=False)
    _win: deque[float] = field(init=False, repr=False)
    _run_on: int = field(init=False, default=0, repr=False)
    _run_off: int = field(init=False, default=0, repr=False)
    last: np.ndarray | None = field(init=False, default=None, repr=False)
    # a stateful detector's filter state for this asset (see AssetAlarms.score_stream)
    filter_state: Any = field(init=False, default=None, repr=False)

    def __post_init__(self) -> None:
        self._w = max(1, int(self.smooth_window))
        self._m = max(1, int(self.min_duration))
        self._r = max(1, int(self.release))
        self._off_level = self.off_ratio * self.threshold
        self._keep = self._w - 1 + max(self._m, self._r)
        self._hist = deque(maxlen=self._keep)
        # zeros stand for the readings before the stream began, as in rolling_mean
        self._win = deque([0.0] * self._w, maxlen=self._w)

    @classmethod
    def for_detector(cls, detector: Any) -> StreamTracker:
        base = AlarmTracker.for_detector(detector)
        return cls(
            threshold=base.threshold,
            smooth_window=base.smooth_window,
            min_duration=base.min_duration,
            off_ratio=base.off_ratio,
            release=base.release,
            confirm=base.confirm,
        )

    def update(self, score: Any) -> np.ndarray:
        x = np.asarray(score, dtype=np.float64).ravel()
        if x.size <= _SMALL:
            return np.array([self._step(v) for v in x.tolist()], dtype=bool)
        if not 0 < self.off_ratio <= 1:
            raise ValueError(f"off_ratio must be in (0, 1], got {self.off_ratio}")
        hist = np.fromiter(self._hist, dtype=np.float64, count=len(self._hist))
        flags = hysteresis(
            x,
            self.threshold,
            smooth_window=self._w,
            min_duration=self._m,
            off_ratio=self.off_ratio,
            release=self._r,
            history=hist,
            initially_on=self.on,
        )
        out = self._delayed(flags)
        self._resync(np.concatenate([hist, x])[-self._keep :])
        return out

    def _step(self, v: float) -> bool:
        self._hist.append(v)
        self._win.append(0.0 if math.isnan(v) else v)
        s = sum(self._win) / self._w
        self._run_on = self._run_on + 1 if s > self.threshold else 0
        self._run_off = self._run_off + 1 if s < self._off_level else 0
        # an off trigger wins a tie, as in hysteresis (last_on > last_off is False)
        if self._run_off >= self._r:
            self.on = False
        elif self._run_on >= self._m:
            self.on = True
        self.on_for = self.on_for + 1 if self.on else 0
        return self.on and self.on_for >= self.confirm

    def _resync(self, tail: np.ndarray) -> None:
        """Window and run lengths after a vectorised update, from the last raw scores."""
        self._hist.clear()
        self._hist.extend(tail.tolist())
        vals = [0.0 if math.isnan(v) else v for v in self._hist]
        pad = [0.0] * max(0, self._w - 1 + max(self._m, self._r) - len(vals))
        vals = pad + vals
        self._win.clear()
        self._win.extend(vals[-self._w :])
        run_on = run_off = 0
        # smoothed values of the last max(m, r) readings, oldest first
        for end in range(len(vals) - max(self._m, self._r), len(vals)):
            s = sum(vals[end - self._w + 1 : end + 1]) / self._w
            run_on = run_on + 1 if s > self.threshold else 0
            run_off = run_off + 1 if s < self._off_level else 0
        self._run_on = min(run_on, self._m)
        self._run_off = min(run_off, self._r)


@dataclass
class PlainThreshold:
    """For detectors without smoothing: the alarm is ``score > threshold``, no state."""

    threshold: float
    on: bool = False
    last: np.ndarray | None = field(default=None, repr=False)
    filter_state: Any = field(default=None, repr=False)

    def update(self, score: Any) -> np.ndarray:
        x = np.asarray(score, dtype=np.float64).ravel()
        flags = x > self.threshold
        if flags.size:
            self.on = bool(flags[-1])
        return flags


def alarm_kind(detector: BaseDetector) -> str:
    """``hysteresis`` for detectors with the smoothing parameters, ``threshold`` for
    detectors using the plain default alarm or an alarm rule of their own without them."""
    if all(hasattr(detector, p) for p in _HYSTERESIS_PARAMS):
        return "hysteresis"
    return "threshold"


class AssetAlarms:
    """LRU-bounded per-asset alarm trackers of one served model version."""

    def __init__(self, detector: BaseDetector, max_assets: int = 10_000) -> None:
        self.kind = alarm_kind(detector)
        self.max_assets = max(1, int(max_assets))
        self._detector = detector
        self._trackers: OrderedDict[Any, StreamTracker | PlainThreshold] = OrderedDict()
        self._lock = threading.Lock()
        self.evicted = 0

    def _new(self) -> StreamTracker | PlainThreshold:
        if self.kind == "hysteresis":
            return StreamTracker.for_detector(self._detector)
        return PlainThreshold(float(self._detector.threshold_))

    def _tracker(self, key: Any) -> StreamTracker | PlainThreshold:
        t = self._trackers.get(key)
        if t is None:
            t = self._trackers[key] = self._new()
            if len(self._trackers) > self.max_assets:
                self._trackers.popitem(last=False)
                self.evicted += 1
        else:
            self._trackers.move_to_end(key)
        return t

    def __len__(self) -> int:
        return len(self._trackers)

    def __contains__(self, key: Any) -> bool:
        return key in self._trackers

    def _groups(self, assets: list[Any]) -> dict[Any, list[int]]:
        groups: dict[Any, list[int]] = {}
        for i, a in enumerate(assets):
            groups.setdefault(DEFAULT_ASSET if a is None else a, []).append(i)
        return groups

    def _blocks(self, assets: list[Any] | None) -> dict[Any, list[int] | None]:
        """Rows of each asset, ``None`` standing for "all rows" when only one asset
        is present (the common case, which then needs no indexing)."""
        if assets is None:
            return {DEFAULT_ASSET: None}
        if len(assets) == 1:
            return {DEFAULT_ASSET if assets[0] is None else assets[0]: None}
        by_asset = self._groups(assets)
        if len(by_asset) == 1:
            return {next(iter(by_asset)): None}
        return dict(by_asset)

    def fill(self, A: np.ndarray, assets: list[Any] | None, missing: bool) -> np.ndarray:
        """Fill gaps in ``A`` (in place) from each asset's earlier readings and remember
        each asset's last (filled) reading. ``missing``: whether ``A`` has any NaN."""
        schema = self._detector.schema_
        with self._lock:
            for key, rows in self._blocks(assets).items():
                t = self._tracker(key)
                sub = A if rows is None else A[rows]
                if missing and np.isnan(sub).any():
                    if t.last is not None:
                        sub = schema.prepare(np.vstack([t.last, sub]))[1:]
                    else:
                        sub = schema.prepare(sub)
                    if rows is None:
                        A[:] = sub
                    else:
                        A[rows] = sub
                t.last = sub[-1].copy()
        return A

    def score_stream(
        self, stream: Any, A: np.ndarray, assets: list[Any] | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Scores and contributions from a detector whose score has a filter state
        (``stream(A, state) -> (score, contributions, state)``, e.g. drift-robust's
        ``score_stream``), each asset continuing from its own state. ``A`` holds no NaN."""
        n = A.shape[0]
        with self._lock:
            score = np.empty(n)
            contrib = np.empty(A.shape)
            for key, rows in self._blocks(assets).items():
                t = self._tracker(key)
                sub = A if rows is None else A[rows]
                sc, ct, t.filter_state = stream(sub, t.filter_state)
                if rows is None:
                    score[:], contrib[:] = sc, ct
                else:
                    idx = np.asarray(rows, dtype=np.intp)
                    score[idx], contrib[idx] = sc, ct
        return score, contrib

    def update_one(self, score: float, asset: Any = None) -> bool:
        """One reading of one asset (the common live case)."""
        key = DEFAULT_ASSET if asset is None else asset
        with self._lock:
            t = self._tracker(key)
            if isinstance(t, StreamTracker):
                return t._step(score)
            return bool(t.update([score])[0])

    def update(self, score: np.ndarray, assets: list[Any] | None) -> np.ndarray:
        """Alarm flags for ``score`` in request order; ``assets`` gives each reading's
        asset (``None`` = the default asset). Readings of one asset keep their order."""
        n = score.shape[0]
        with self._lock:
            if assets is None:
                return self._tracker(DEFAULT_ASSET).update(score)
            groups = self._groups(assets)
            if len(groups) == 1:
                return self._tracker(next(iter(groups))).update(score)
            out = np.empty(n, dtype=bool)
            for key, rows in groups.items():
                idx = np.asarray(rows, dtype=np.intp)
                out[idx] = self._tracker(key).update(score[idx])
            return out
