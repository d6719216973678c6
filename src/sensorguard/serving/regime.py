"""The regime-change verdict on ``POST /v1/predict``: the same rule as ``sensorguard
score``, the watch service and the gate (:class:`~sensorguard.evaluation.regime.RegimeStream`
against the per-sensor range of the served version's training profile), per asset
across requests.

A request/response API cannot hold answers back the way the watch service holds the
head's failure flags, so the predictor states its rule:

* The first ``head`` (60) readings of an asset under a served version are answered as
  they come (``is_anomaly`` as the detector's alarm says); the verdict is reached at
  the ``head``-th reading.
* From the request that completes a head judged ``regime_change`` on, the response
  carries ``regime`` (the asset, the moved sensors with their training range and head
  median, the retrain hint), and ``is_anomaly`` is false for the readings of the alarm
  the new regime carries, as :func:`~sensorguard.evaluation.regime.suppress_regime_alarms`
  drops it in batch: an alarm run that started within the head, to its end (in that
  request also its earlier readings); an alarm that starts later is reported.
  ``above_threshold`` stays the plain comparison.
* ``regime`` is present while the regime is open and in the request whose readings
  close it (``"state": "closed"``: ``release`` (60) consecutive readings with no moved
  sensor out); absent otherwise, so a normal response is unchanged.
* ``?stateless=true``: a batch of at least ``head`` readings is judged on its own (one
  stream, as ``sensorguard score`` judges a file); shorter stateless batches are not
  judged (a single reading out of range is what a failure looks like too).
* A version without a training profile (folder models, versions from older code) is
  not judged. A swap starts every asset afresh, as the alarm state does.

Cost: after an asset's head is judged and nothing is suppressed, one dict lookup per
request (benchmarked with the predictor, docs/benchmarks.md).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np

from sensorguard.errors import DataValidationError
from sensorguard.evaluation.regime import (
    DONE,
    REGIME_CHANGE,
    RETRAIN_HINT,
    RegimeStream,
    SensorShift,
    ranges_from_profile,
    regime_check,
    suppress_regime_alarms,
)


class _AssetRegime:
    """One asset's rule under one served version."""

    __slots__ = ("idle", "regime", "report", "run_start", "stream")

    def __init__(self, stream: RegimeStream) -> None:
        self.stream = stream
        self.run_start = -1  # stream row where the current alarm run started (-1: none)
        self.regime = False  # the head was judged a regime change
        self.report: dict[str, Any] | None = None
        self.idle = False  # nothing left to do for this asset


class PredictorRegimes:
    """The rule of the module docstring for one served version (thread-safe)."""

    def __init__(
        self, sensors: list[str], ranges: dict[str, tuple[float, float]], max_assets: int
    ) -> None:
        self.sensors = list(sensors)
        self.ranges = ranges
        self.max_assets = max(1, int(max_assets))
        self.head = RegimeStream(self.sensors, ranges).head
        self._assets: OrderedDict[Any, _AssetRegime] = OrderedDict()
        self._lock = threading.Lock()
        self.on_open: Callable[[], Any] | None = None  # called once per regime change

    @classmethod
    def of_profile(
        cls, sensors: list[str], profile: dict[str, Any] | None, max_assets: int
    ) -> PredictorRegimes | None:
        """``None`` when the profile has no per-sensor range (nothing to judge)."""
        try:
            ranges = ranges_from_profile(profile or {})
        except DataValidationError:
            return None
        if not any(s in ranges for s in sensors):
            return None
        return cls(sensors, ranges, max_assets)

    def _get(self, key: Any) -> _AssetRegime:
        r = self._assets.get(key)
        if r is None:
            r = self._assets[key] = _AssetRegime(RegimeStream(self.sensors, self.ranges))
            if len(self._assets) > self.max_assets:
                self._assets.popitem(last=False)
        else:
            self._assets.move_to_end(key)
        return r

    # ---- per asset, across requests
    def apply(
        self, A: np.ndarray, assets: list[Any] | None, flags: np.ndarray
    ) -> tuple[np.ndarray, list[dict[str, Any]] | None]:
        """Feed a request's readings (schema order, rows in request order; ``assets``
        one key per row or ``None``) and its alarm flags; returns the flags without the
        alarm a regime change carries and the ``regime`` entries of the response."""
        n = A.shape[0]
        with self._lock:
            # one asset (the usual request): no grouping (list.count runs in C)
            if assets is None or n == 1 or assets.count(assets[0]) == n:
                key = None if assets is None else assets[0]
                r = self._get(key)
                if r.idle:  # the common case: one lookup
                    return flags, None
                if n == 1:
                    return self._one(r, key, A, flags)
                blocks: list[tuple[Any, _AssetRegime, Any]] = [(key, r, None)]
            else:
                rows: dict[Any, list[int]] = {}
                for i, a in enumerate(assets):
                    rows.setdefault(a, []).append(i)
                blocks = [(k, self._get(k), ix) for k, ix in rows.items()]
            out: np.ndarray | None = None
            reports: list[dict[str, Any]] = []
            for key, r, ix in blocks:
                if r.idle:
                    continue
                f = flags if ix is None else flags[ix]
                kept = self._step(r, A if ix is None else A[ix], f)
                if kept is not f:
                    if out is None:
                        out = flags.copy()
                    if ix is None:
                        out[:] = kept
                    else:
                        out[ix] = kept
                if r.report is not None:
                    reports.append({"asset_id": key, **r.report})
                    if r.report["state"] == "closed":
                        r.report = None
        return (flags if out is None else out), (reports or None)

    def _decide(self, r: _AssetRegime, decisions: list[tuple[str, int]]) -> None:
        for what, _row in decisions:
            if what == "opened":
                r.regime = True
                r.report = _report(r.stream.sensor_shifts(), "open")
                if self.on_open is not None:
                    self.on_open()
            elif what == "closed" and r.report is not None:
                r.report = {**r.report, "state": "closed"}

    def _settle(self, r: _AssetRegime) -> None:
        """Idle once the head is judged, no regime is open or being reported, and the
        alarm the regime carried (a run that started within the head) has ended."""
        r.idle = (
            r.stream.phase == DONE
            and (not r.regime or not (0 <= r.run_start < self.head))
            and (r.report is None or r.report["state"] == "closed")
        )

    def _one(
        self, r: _AssetRegime, key: Any, A: np.ndarray, flags: np.ndarray
    ) -> tuple[np.ndarray, list[dict[str, Any]] | None]:
        """:meth:`_step` of one reading in plain Python (the predictor's hot path: an
        asset in a regime change is in this branch for every request)."""
        g = r.stream.n
        self._decide(r, r.stream.feed_one(A[0].tolist()))
        f = bool(flags[0])
        if not f:
            r.run_start = -1
        elif r.run_start < 0:
            r.run_start = g
        out = flags
        if f and r.regime and 0 <= r.run_start < self.head:
            out = np.zeros(1, dtype=bool)
        self._settle(r)
        report = None
        if r.report is not None:
            report = [{"asset_id": key, **r.report}]
            if r.report["state"] == "closed":
                r.report = None
        return out, report

    def _step(self, r: _AssetRegime, X: np.ndarray, f: np.ndarray) -> np.ndarray:
        st = r.stream
        g0 = st.n  # stream row of this piece's first reading
        self._decide(r, st.feed(X))
        # where each alarm run of this piece started (a run may continue the last piece's)
        m = f.size
        f = np.asarray(f, dtype=bool)
        prev = np.empty(m, dtype=bool)
        prev[1:] = f[:-1]
        prev[0] = r.run_start >= 0
        starts = np.where(f & ~prev, g0 + np.arange(m), -1)
        if f[0] and r.run_start >= 0:
            starts[0] = r.run_start
        start_at = np.maximum.accumulate(starts)
        r.run_start = int(start_at[-1]) if f[-1] else -1
        kept = f
        if r.regime:
            drop = f & (start_at >= 0) & (start_at < self.head)
            if drop.any():
                kept = f & ~drop
        self._settle(r)
        return kept

    # ---- a batch on its own
    def judge_batch(
        self, A: np.ndarray, flags: np.ndarray
    ) -> tuple[np.ndarray, list[dict[str, Any]] | None]:
        """``?stateless=true``: a batch of at least ``head`` readings judged alone."""
        if A.shape[0] < self.head:
            return flags, None
        v = regime_check(A, self.ranges, sensors=self.sensors)
        if not v.regime_change:
            return flags, None
        kept, _removed = suppress_regime_alarms(flags, v)
        state = "open" if v.until is None else "closed"
        return kept, [{"asset_id": None, **_report(v.sensors, state)}]


def _report(shifts: list[SensorShift], state: str) -> dict[str, Any]:
    """A ``regime`` entry of the response (without its asset): the schema's RegimeEntry."""
    return {
        "verdict": REGIME_CHANGE,
        "state": state,
        "sensors": [
            {
                "sensor": s.sensor,
                "train_min": s.train_min,
                "train_max": s.train_max,
                "median": s.median,
            }
            for s in shifts
        ],
        "hint": RETRAIN_HINT,
    }
