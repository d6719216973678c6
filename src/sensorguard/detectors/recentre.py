"""Slow re-centring: a detector scored on readings shifted by how far each sensor's
running mean has moved since training (``pca-smoothed``, ``knn``).

``x' = x − (m[t−1] − mean_train)``, ``m`` an exponentially weighted mean of the median
of the last 3 readings (a one-reading glitch does not move it; each reading is clipped
to ±``_CLIP`` training standard deviations) with a time constant of ``adapt`` × the
training length (in readings, so it scales with the sampling rate), starting at the
training mean. Normal operation that drifts slowly after a short training window (a
rig warming up for hours) stops looking anomalous; a change faster than that time
constant still does. It is not frozen during alarms: a failure lasting several training
windows is absorbed too (freezing it kept the hydraulic rig's drift in one alarm,
docs/quality.md "What was tried and not kept"). ``adapt=0`` turns it off. The running
mean is the stream's filter state (one per asset live; any chunking scores like one
pass).
"""

from __future__ import annotations

import abc
from typing import Any

import numpy as np
import pandas as pd

from sensorguard.detectors.base import BaseDetector, Computed, _safe

_CLIP = 1000.0  # training std-devs: the most one reading counts in the running mean

State = tuple[np.ndarray, np.ndarray]


class RecentredDetector(BaseDetector):
    """A detector whose score hook sees re-centred readings. Subclasses set ``mean_``,
    ``scale_`` (training mean and standard deviation per sensor) and ``n_train_`` in
    ``_fit``, have an ``adapt`` parameter and implement ``_score_shifted``."""

    adapt: float
    mean_: np.ndarray
    scale_: np.ndarray
    n_train_: int

    @abc.abstractmethod
    def _score_shifted(self, A: np.ndarray, want_contrib: bool = True) -> Computed:
        """Score (and contributions) of readings already re-centred."""

    def _start(self) -> State:
        """The filter state where training ended: the running mean and the two readings
        before the next one, all at the training mean."""
        mu = np.asarray(self.mean_, dtype=np.float64)
        return mu, np.vstack([mu, mu])

    def _recentre(self, A: np.ndarray, state: State) -> tuple[np.ndarray, State]:
        """Readings shifted by the running mean's move, and the filter state after them.

        The running mean follows the median of the last 3 readings, each clipped to
        ±``_CLIP`` training standard deviations: a one-reading glitch (even 1e300) does
        not move it, a longer one by at most ``_CLIP / (adapt × n_train)`` standard
        deviations per reading (drift of the hydraulic rig's temperatures reaches ~480).
        The state keeps the last two readings, so any chunking of a stream gives the
        same result."""
        level, tail = state
        adapt = float(self.adapt)
        if adapt <= 0 or A.shape[0] == 0:
            return A, state
        from scipy.signal import lfilter

        a = 1.0 / max(1.0, adapt * int(getattr(self, "n_train_", 1)))
        band = _CLIP * self.scale_
        ext = np.vstack([tail, np.clip(A, self.mean_ - band, self.mean_ + band)])
        x0, x1, x2 = ext[:-2], ext[1:-1], ext[2:]
        med = np.maximum(np.minimum(x0, x1), np.minimum(np.maximum(x0, x1), x2))
        m, _ = lfilter([a], [1.0, -(1.0 - a)], med, axis=0, zi=((1.0 - a) * level)[None, :])
        prev = np.vstack([level[None, :], m[:-1]])
        return A - (prev - self.mean_), (np.asarray(m[-1], dtype=np.float64), ext[-2:].copy())

    def _compute(self, A: np.ndarray, want_contrib: bool = True) -> Computed:
        return self._score_shifted(self._recentre(A, self._start())[0], want_contrib)

    def score_stream(
        self, X: pd.DataFrame | np.ndarray, state: State | None = None
    ) -> tuple[Computed, State]:
        """Scores and contributions of readings that continue a stream, and the filter
        state after them (``None``: the stream starts where training ended)."""
        A = self.prepare(X)
        shifted, end = self._recentre(A, self._start() if state is None else state)
        with np.errstate(over="ignore", invalid="ignore"):
            return _safe(self._score_shifted(shifted, True)), end

    def stream_state_to_dict(self, state: State | None) -> dict[str, Any]:
        level, tail = self._start() if state is None else state
        return {"level": np.asarray(level).tolist(), "tail": np.asarray(tail).tolist()}

    def stream_state_from_dict(self, data: dict[str, Any]) -> State:
        level = np.asarray(data["level"], dtype=np.float64)
        return level, np.asarray(data["tail"], dtype=np.float64).reshape(2, level.shape[0])
