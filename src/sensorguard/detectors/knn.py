"""Nearest-neighbour (similarity-based) monitoring: each reading against the training
readings most like it.

The memory-based model of industrial condition monitoring (MSET, similarity-based
modelling), in its plainest form:

* readings are standardised with the training mean and standard deviation and
  re-centred slowly like ``pca-smoothed``'s (:mod:`sensorguard.detectors.recentre`,
  ``adapt``);
* the **memory** is at most ``memory`` training readings, evenly spaced in time;
* a reading's **estimate** is the mean of its ``k`` nearest memory readings (Euclidean,
  standardised); its score is the squared distance to that estimate, and each
  sensor's contribution its part of the sum: the sensors whose values the most similar
  normal readings do not explain. For readings near or above the threshold (score above
  ``off_ratio`` × threshold) each sensor is estimated from neighbours found without it,
  and the contributions are those residuals, squared and scaled to sum to the score;
* **training scores leave each row's own neighbourhood out**: a training row is
  compared with memory readings more than ``gap`` readings away in time, so the
  threshold is set on distances of readings the memory does not hold (with itself in
  the memory every training distance would be about 0, and any fresh reading would
  alarm);
* the alarm rule is ``pca-smoothed``'s: 1.25 × the 99.5th percentile of the smoothed
  training scores, smoothed over 5 readings, on after 3, off after 5 below 0.8 ×
  threshold.

Measured on the real-data suite (docs/quality.md): the best ranking of SMD's anomalous
minutes of all detectors (TSB-AD protocol VUS-PR with ``adapt=0``: 0.733 / 0.386 /
0.667 on machines 1-7 / 2-1 / 3-4, above the best published figure on 1-7 and 3-4) and
the fewest false alarms on RoSA's healthy runs after ``drift-robust``, but worse than
``pca-smoothed`` on short windows (NAB, Tennessee Eastman), so it is not the default.

Scoring costs one distance to each memory reading, so ``memory`` bounds it: 256 keeps
the scoring kernel above 1 M readings/s per core with 10 sensors (1.2-1.3; 500 readings:
0.65-0.87; docs/benchmarks.md, "Detector speed"), and a larger memory did not score
better on the suite except on SMD 2-1.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from sensorguard.detectors._stats import blas_controller, smoothed_threshold
from sensorguard.detectors.base import Computed
from sensorguard.detectors.params import ALARM_RULES, Rule, at_least, number
from sensorguard.detectors.recentre import RecentredDetector

_CHUNK = 1024  # readings per distance block: 1,024 × 256 float32 = 1 MB


class NeighbourDetector(RecentredDetector):
    name = "knn"
    param_rules: ClassVar[dict[str, Rule]] = {
        "k": at_least(1),
        "memory": at_least(2),
        "gap": at_least(0),
        "adapt": Rule("a number of at least 0 (0 = off)", lambda v: number(v) and v >= 0),
        **ALARM_RULES,
    }

    def __init__(
        self,
        k: int = 5,
        memory: int = 256,
        gap: int = 10,
        adapt: float = 4.0,
        quantile: float = 0.995,
        margin: float = 1.25,
        smooth_window: int = 5,
        min_duration: int = 3,
        off_ratio: float = 0.8,
        release: int = 5,
    ) -> None:
        self.k = k
        self.memory = memory
        self.gap = gap
        self.adapt = adapt
        self.quantile = quantile
        self.margin = margin
        self.smooth_window = smooth_window
        self.min_duration = min_duration
        self.off_ratio = off_ratio
        self.release = release

    def _fit(self, A: np.ndarray) -> None:
        n = A.shape[0]
        self.mean_ = A.mean(axis=0)
        std = A.std(axis=0)
        self.scale_ = np.where(std > 0, std, 1.0)
        self.n_train_ = int(n)
        Z = (A - self.mean_) / self.scale_
        keep = np.unique(np.linspace(0, n - 1, min(n, int(self.memory))).round().astype(np.int64))
        self.memory_ = Z[keep].copy()
        self.memory_index_ = keep
        # the widest gap that leaves every training row k memory readings outside it
        spacing = n / keep.size
        widest = ((keep.size - int(self.k) - 1) * spacing - 1) / 2
        self.gap_used_ = int(max(0, min(int(self.gap), np.floor(widest))))
        E = self._residuals(Z, rows=np.arange(n))
        self.threshold_ = smoothed_threshold(
            (E**2).sum(axis=1), self.quantile, self.margin, self.smooth_window
        )

    def _residuals(self, Z: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        """Each standardised reading minus the mean of its ``k`` nearest memory readings;
        ``rows`` (training row numbers) leaves out memory readings within the gap."""
        M = self.memory_
        terms = self._ranking_terms()
        out = np.empty_like(Z)
        with blas_controller().limit(limits=1, user_api="blas"):
            for lo in range(0, Z.shape[0], _CHUNK):
                z = Z[lo : lo + _CHUNK]
                d = _ranking(z, *terms)
                if not np.isfinite(d).all():  # an overflowing reading: NaN ranks last
                    d = np.nan_to_num(d, nan=np.inf)
                if rows is not None:
                    near = np.abs(rows[lo : lo + _CHUNK, None] - self.memory_index_[None, :])
                    d[near <= self.gap_used_] = np.inf
                out[lo : lo + _CHUNK] = z - _mean_of(M, self._nearest(d))
        return out

    def _left_out(self, Z: np.ndarray) -> np.ndarray:
        """Each sensor of each reading minus the mean of its ``k`` nearest memory readings
        found without that sensor: the ranking without sensor j is the full one less
        sensor j's term, ``−2 z_j m_j + m_j²`` (a rank-one correction, no new matmul)."""
        M = self.memory_
        M32 = M.astype(np.float32)
        terms = self._ranking_terms()
        R = np.empty_like(Z)
        with blas_controller().limit(limits=1, user_api="blas"):
            for lo in range(0, Z.shape[0], _CHUNK):
                z = Z[lo : lo + _CHUNK]
                full = _ranking(z, *terms)
                d = np.empty_like(full)
                for j in range(z.shape[1]):
                    np.multiply(2.0 * z[:, j : j + 1].astype(np.float32), M32[None, :, j], out=d)
                    d += full
                    d -= (M32[:, j] ** 2)[None, :]
                    R[lo : lo + _CHUNK, j] = z[:, j] - _mean_of(M[:, j], self._nearest(d))
        return R

    def _ranking_terms(self) -> tuple[np.ndarray, np.ndarray]:
        """``−2 Mᵀ`` and ``|m|²`` of the memory, in float32, for :func:`_ranking`."""
        M = self.memory_
        return (-2.0 * M.T).astype(np.float32), np.einsum("ij,ij->i", M, M).astype(np.float32)

    def _nearest(self, d: np.ndarray) -> np.ndarray:
        """Indices ``(n, k)`` of the k smallest of each row of ``d`` (which it overwrites):
        k passes of ``argmin`` for k ≤ 8 (5 passes cost a third of one ``argpartition``
        of 2,048 × 500, 1.0 vs 3.9 ms), ``argpartition`` above."""
        k = min(int(self.k), d.shape[1])
        if k > 8:
            return np.argpartition(d, k - 1, axis=1)[:, :k]
        r = np.arange(d.shape[0])
        idx = np.empty((d.shape[0], k), dtype=np.intp)
        for step in range(k):
            idx[:, step] = d.argmin(axis=1)
            if step < k - 1:
                d[r, idx[:, step]] = np.inf
        return idx

    def _score_shifted(self, A: np.ndarray, want_contrib: bool = True) -> Computed:
        Z = (A - self.mean_) / self.scale_
        E2 = self._residuals(Z) ** 2
        score = E2.sum(axis=1)
        if not want_contrib or Z.shape[1] < 2:
            return Computed(score, E2 if want_contrib else None)
        # Near or above the threshold, who is to blame comes from estimates made without
        # each sensor: with all of them, the neighbours of a reading with a stuck sensor
        # match the stuck value (the simulator's stuck motor current was in the top 3 of
        # none of its readings; 77 % now). Measured on the suite's explanations: simulator
        # top 3 0.618 → 0.889 (top 1 0.446 both), TEP top 3 0.799 → 0.807, SMD
        # HitRate@150 % 0.624 both (docs/quality.md, "Explanations"). Scores do not change.
        with np.errstate(over="ignore", invalid="ignore"):
            near = score > float(self.off_ratio) * float(self.threshold_)
            hot = np.flatnonzero(near & np.isfinite(score) & np.isfinite(Z).all(axis=1))
            if hot.size:
                R2 = self._left_out(Z[hot]) ** 2
                tot = R2.sum(axis=1, keepdims=True)
                E2[hot] = R2 * (score[hot, None] / np.where(tot > 0, tot, 1.0))
        return Computed(score, E2)


def _ranking(z: np.ndarray, W: np.ndarray, m2: np.ndarray) -> np.ndarray:
    """``|m|² − 2 z·m`` for every memory reading m, in float32: the squared distance less
    ``|z|²``, which is the same for every m (one matmul and one add). The callers pin BLAS
    to one thread: on blocks this small a second one costs more than it gives (CPU per
    reading 1.4-1.6× with it, docs/benchmarks.md)."""
    with np.errstate(over="ignore", invalid="ignore"):
        d = z.astype(np.float32) @ W
    d += m2
    return d


def _mean_of(M: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """The mean of ``M``'s rows ``idx[:, 0..k-1]`` for every row of ``idx``, by k gathers
    and adds: ``M[idx].mean(axis=1)`` scored 0.97-1.01 M readings/s per core against
    1.21 this way (10 sensors, scoring kernel)."""
    total = M[idx[:, 0]].copy()
    for step in range(1, idx.shape[1]):
        total += M[idx[:, step]]
    return np.asarray(total / idx.shape[1])
