"""Variants of the detectors that were measured on the quality suite and not kept.

docs/quality.md, "What was tried and not kept", gives their figures. They live here, not
in the library, so that those figures can be reproduced:

    .venv/bin/python benchmarks/quality_tried.py pca-smoothed 'tried-lags[lags=1]' \\
        'tried-folds' 'tried-bulk[z=4.0,mix="min"]' --json tried.json
    .venv/bin/python benchmarks/quality_defaults.py tried.json

Every argument after the script's name goes to ``quality_suite.py`` unchanged; the
names below are added to the detector table for this process only
(``quality_gate_seeds.py`` uses them too).

* ``tried-lags``: dynamic PCA, each reading joined with ``lags`` earlier ones
  (``mode="diff"``: its change from each, ``"lag"``: the readings themselves);
  contributions folded back onto the sensors.
* ``tried-folds``: the alarm threshold set on out-of-fold training scores
  (``folds`` contiguous folds, each scored by a PCA fitted on the others).
* ``tried-bulk``: the threshold extrapolated from the bulk of the smoothed training
  scores, ``margin · exp(median + z · MAD)`` of their logarithm (``mix="robust"``), or
  the lower (``"min"``) or higher (``"max"``) of that and the quantile rule.
* ``tried-states-adapt``: ``operating-states`` on readings re-centred like
  ``pca-smoothed``'s (``adapt`` × the training length).
* ``tried-ensemble``: ``pca-smoothed`` and ``operating-states`` side by side, each score
  over its own threshold, combined by ``mix`` (mean, max, geometric mean).
* ``tried-states-folds``: ``operating-states`` with its threshold on out-of-fold
  training scores.
* ``tried-freeze``: ``pca-smoothed`` whose running mean stops (``slow=0``) or slows
  while the smoothed score is in an excursion.
* ``tried-knn``: the first form of the ``knn`` detector (float64 ranking, a memory of
  2,000 readings), kept for the memory-size and ``k``/``gap`` figures.
* ``tried-knn-loo``: ``knn`` whose left-out residuals are divided by their typical size
  on training rows (``norm``).
* ``tried-knn-cover``: ``knn`` with half its memory chosen by farthest-point sampling.

Not a test: nothing is asserted.
"""

from __future__ import annotations

import itertools
import runpy
import sys
from pathlib import Path
from typing import ClassVar

import numpy as np

from sensorguard.detectors import names
from sensorguard.detectors._stats import MAD_TO_STD, smoothed_threshold
from sensorguard.detectors.base import Computed
from sensorguard.detectors.events import rolling_mean
from sensorguard.detectors.knn import NeighbourDetector
from sensorguard.detectors.params import Rule, number
from sensorguard.detectors.pca import PCADetector, SmoothedPCADetector
from sensorguard.detectors.recentre import _CLIP
from sensorguard.detectors.states import OperatingStateDetector

HERE = Path(__file__).resolve().parent


def _lagged(A: np.ndarray, lags: int, mode: str) -> np.ndarray:
    parts = [A]
    for lag in range(1, lags + 1):
        prev = np.vstack([np.repeat(A[:1], lag, axis=0), A[:-lag]])
        parts.append(A - prev if mode == "diff" else prev)
    return np.hstack(parts)


# Each variant spells out pca-smoothed's parameters in its own signature: get_params
# (scikit-learn) and the catalog's parameter check read them from ``__init__``, which
# is also why the library's detectors do the same.


class LaggedPCA(SmoothedPCADetector):
    name = "tried-lags"
    param_rules: ClassVar[dict[str, Rule]] = {
        **SmoothedPCADetector.param_rules,
        "lags": Rule("a whole number of at least 1", lambda v: number(v) and v >= 1),
        "mode": Rule("'diff' or 'lag'", lambda v: v in ("diff", "lag")),
    }

    def __init__(
        self,
        lags: int = 1,
        mode: str = "diff",
        n_components: float = 0.9,
        limit_quantile: float = 0.99,
        quantile: float = 0.995,
        margin: float = 1.25,
        smooth_window: int = 5,
        min_duration: int = 3,
        off_ratio: float = 0.8,
        release: int = 5,
        adapt: float = 4.0,
    ) -> None:
        super().__init__(
            n_components, limit_quantile, quantile, margin, smooth_window, min_duration,
            off_ratio, release, adapt,
        )  # fmt: skip
        self.lags = lags
        self.mode = mode

    def _fit(self, A: np.ndarray) -> None:
        self.p_ = A.shape[1]
        PCADetector._fit(self, _lagged(A, int(self.lags), self.mode))
        self.n_train_ = int(A.shape[0])
        self.rmean_, self.rscale_ = self.mean_[: self.p_].copy(), self.scale_[: self.p_].copy()

    def _start(self) -> tuple[np.ndarray, np.ndarray]:
        mu = np.asarray(self.rmean_, dtype=np.float64)
        return mu, np.vstack([mu, mu])

    def _recentre(
        self, A: np.ndarray, state: tuple[np.ndarray, np.ndarray]
    ) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
        # the running mean works on the sensors, not on the lagged columns
        kept = self.mean_, self.scale_
        self.mean_, self.scale_ = self.rmean_, self.rscale_
        try:
            return super()._recentre(A, state)
        finally:
            self.mean_, self.scale_ = kept

    def _compute(self, A: np.ndarray, want_contrib: bool = True) -> Computed:
        shifted = self._recentre(A, self._start())[0]
        c = PCADetector._compute(self, _lagged(shifted, int(self.lags), self.mode), want_contrib)
        if c.contributions is None:
            return c
        p = self.p_
        folded = sum(c.contributions[:, k * p : (k + 1) * p] for k in range(int(self.lags) + 1))
        return Computed(c.score, np.asarray(folded))


class OutOfFoldPCA(SmoothedPCADetector):
    name = "tried-folds"
    param_rules: ClassVar[dict[str, Rule]] = {
        **SmoothedPCADetector.param_rules,
        "folds": Rule("a whole number of at least 2", lambda v: number(v) and v >= 2),
    }

    def __init__(
        self,
        folds: int = 5,
        n_components: float = 0.9,
        limit_quantile: float = 0.99,
        quantile: float = 0.995,
        margin: float = 1.25,
        smooth_window: int = 5,
        min_duration: int = 3,
        off_ratio: float = 0.8,
        release: int = 5,
        adapt: float = 4.0,
    ) -> None:
        super().__init__(
            n_components, limit_quantile, quantile, margin, smooth_window, min_duration,
            off_ratio, release, adapt,
        )  # fmt: skip
        self.folds = folds

    def _fit(self, A: np.ndarray) -> None:
        super()._fit(A)
        edges = np.linspace(0, A.shape[0], int(self.folds) + 1).astype(int)
        oof = np.empty(A.shape[0])
        for lo, hi in itertools.pairwise(edges):
            part = PCADetector(n_components=self.n_components, limit_quantile=self.limit_quantile)
            part._fit(np.vstack([A[:lo], A[hi:]]))
            oof[lo:hi] = part._compute(A[lo:hi], False).score
        self.threshold_ = smoothed_threshold(oof, self.quantile, self.margin, self.smooth_window)


class BulkThresholdPCA(SmoothedPCADetector):
    name = "tried-bulk"
    param_rules: ClassVar[dict[str, Rule]] = {
        **SmoothedPCADetector.param_rules,
        "z": Rule("a number above 0", lambda v: number(v) and v > 0),
        "mix": Rule("'robust', 'min' or 'max'", lambda v: v in ("robust", "min", "max")),
    }

    def __init__(
        self,
        z: float = 2.576,
        mix: str = "robust",
        n_components: float = 0.9,
        limit_quantile: float = 0.99,
        quantile: float = 0.995,
        margin: float = 1.25,
        smooth_window: int = 5,
        min_duration: int = 3,
        off_ratio: float = 0.8,
        release: int = 5,
        adapt: float = 4.0,
    ) -> None:
        super().__init__(
            n_components, limit_quantile, quantile, margin, smooth_window, min_duration,
            off_ratio, release, adapt,
        )  # fmt: skip
        self.z = z
        self.mix = mix

    def _fit(self, A: np.ndarray) -> None:
        super()._fit(A)
        t2, q = self._t2_q((A - self.mean_) / self.scale_)
        smooth = rolling_mean(t2 / self.t2_limit_ + q / self.q_limit_, self.smooth_window)
        logs = np.log(np.maximum(smooth[np.isfinite(smooth)], 1e-12))
        med = float(np.median(logs))
        mad = MAD_TO_STD * float(np.median(np.abs(logs - med)))
        bulk = float(self.margin * np.exp(med + float(self.z) * mad))
        quantile_rule = float(self.threshold_)
        pick = {"robust": bulk, "min": min(bulk, quantile_rule), "max": max(bulk, quantile_rule)}
        self.threshold_ = pick[self.mix]


class RecentredStates(OperatingStateDetector):
    """``operating-states`` on readings re-centred like ``pca-smoothed``'s (the same
    running mean of the 3-reading median, time constant ``adapt`` × the training
    length); training scores and the threshold stay in-sample, as there."""

    name = "tried-states-adapt"
    param_rules: ClassVar[dict[str, Rule]] = {
        **OperatingStateDetector.param_rules,
        "adapt": Rule("a number of at least 0", lambda v: number(v) and v >= 0),
    }

    def __init__(
        self,
        adapt: float = 4.0,
        min_states: int = 3,
        max_states: int = 8,
        silhouette_sample: int = 20_000,
        fit_sample: int = 200_000,
        scale_floor: float = 0.05,
        quantile: float = 0.995,
        margin: float = 1.25,
        smooth_window: int = 5,
        min_duration: int = 3,
        off_ratio: float = 0.8,
        release: int = 5,
        shrinkage: float = 0.05,
        refine_iter: int = 5,
        random_state: int = 0,
    ) -> None:
        super().__init__(
            min_states, max_states, silhouette_sample, fit_sample, scale_floor, quantile,
            margin, smooth_window, min_duration, off_ratio, release, shrinkage, refine_iter,
            random_state,
        )  # fmt: skip
        self.adapt = adapt

    def _fit(self, A: np.ndarray) -> None:
        self._fitting = True
        try:
            super()._fit(A)
        finally:
            self._fitting = False
        self.rmean_ = A.mean(axis=0)
        std = A.std(axis=0)
        self.rscale_ = np.where(std > 0, std, 1.0)

    def _compute(self, A: np.ndarray, want_contrib: bool = True) -> Computed:
        if getattr(self, "_fitting", False):
            return super()._compute(A, want_contrib)
        helper = SmoothedPCADetector(adapt=self.adapt)
        helper.mean_, helper.scale_, helper.n_train_ = self.rmean_, self.rscale_, self.n_train_
        return super()._compute(helper._recentre(A, helper._start())[0], want_contrib)


class StatesPlusPCA(SmoothedPCADetector):
    """An ensemble: ``pca-smoothed`` and ``operating-states`` fitted on the same window,
    each score divided by its own threshold, combined by ``mix`` (``"mean"``, ``"max"``
    or ``"geo"``, the geometric mean); contributions = the mean of the two detectors'
    shares; the alarm rule (pca-smoothed's) on the combined training scores."""

    name = "tried-ensemble"
    param_rules: ClassVar[dict[str, Rule]] = {
        **SmoothedPCADetector.param_rules,
        "mix": Rule("'mean', 'max' or 'geo'", lambda v: v in ("mean", "max", "geo")),
        "states_adapt": Rule("a number of at least 0", lambda v: number(v) and v >= 0),
    }

    def __init__(
        self,
        mix: str = "mean",
        states_adapt: float = 0.0,
        n_components: float = 0.9,
        limit_quantile: float = 0.99,
        quantile: float = 0.995,
        margin: float = 1.25,
        smooth_window: int = 5,
        min_duration: int = 3,
        off_ratio: float = 0.8,
        release: int = 5,
        adapt: float = 4.0,
    ) -> None:
        super().__init__(
            n_components, limit_quantile, quantile, margin, smooth_window, min_duration,
            off_ratio, release, adapt,
        )  # fmt: skip
        self.mix = mix
        self.states_adapt = states_adapt

    def _combine(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        if self.mix == "max":
            return np.maximum(a, b)
        if self.mix == "geo":
            return np.sqrt(np.maximum(a, 0.0) * np.maximum(b, 0.0))
        return 0.5 * (a + b)

    def _fit(self, A: np.ndarray) -> None:
        super()._fit(A)
        self.pca_threshold_ = float(self.threshold_)
        states = RecentredStates(adapt=self.states_adapt)
        states._fit(A)
        self.states_ = states
        t2, q = self._t2_q((A - self.mean_) / self.scale_)
        pca_train = (t2 / self.t2_limit_ + q / self.q_limit_) / self.pca_threshold_
        states._fitting = True
        os_train = states._compute(A, False).score / float(states.threshold_)
        states._fitting = False
        combined = self._combine(pca_train, os_train)
        self.threshold_ = smoothed_threshold(
            combined, self.quantile, self.margin, self.smooth_window
        )

    def _compute(self, A: np.ndarray, want_contrib: bool = True) -> Computed:
        p = super()._compute(A, want_contrib)
        s = self.states_._compute(A, want_contrib)
        score = self._combine(
            p.score / self.pca_threshold_, s.score / float(self.states_.threshold_)
        )
        if not want_contrib or p.contributions is None or s.contributions is None:
            return Computed(score)
        tot = p.contributions.sum(axis=1, keepdims=True)
        shares = p.contributions / np.where(tot > 0, tot, 1.0)
        return Computed(score, 0.5 * (shares + s.contributions))


class OutOfFoldStates(OperatingStateDetector):
    """``operating-states`` whose threshold is set on out-of-fold training scores
    (``folds`` contiguous folds, each scored by a model fitted on the others), the
    same rule as ``tried-folds`` for PCA."""

    name = "tried-states-folds"
    param_rules: ClassVar[dict[str, Rule]] = {
        **OperatingStateDetector.param_rules,
        "folds": Rule("a whole number of at least 2", lambda v: number(v) and v >= 2),
    }

    def __init__(
        self,
        folds: int = 5,
        min_states: int = 3,
        max_states: int = 8,
        silhouette_sample: int = 20_000,
        fit_sample: int = 200_000,
        scale_floor: float = 0.05,
        quantile: float = 0.995,
        margin: float = 1.25,
        smooth_window: int = 5,
        min_duration: int = 3,
        off_ratio: float = 0.8,
        release: int = 5,
        shrinkage: float = 0.05,
        refine_iter: int = 5,
        random_state: int = 0,
    ) -> None:
        super().__init__(
            min_states, max_states, silhouette_sample, fit_sample, scale_floor, quantile,
            margin, smooth_window, min_duration, off_ratio, release, shrinkage, refine_iter,
            random_state,
        )  # fmt: skip
        self.folds = folds

    def _fit(self, A: np.ndarray) -> None:
        super()._fit(A)
        params = {k: v for k, v in self.get_params(deep=False).items() if k != "folds"}
        edges = np.linspace(0, A.shape[0], int(self.folds) + 1).astype(int)
        smooth = np.empty(A.shape[0])
        for lo, hi in itertools.pairwise(edges):
            part = OperatingStateDetector(**params)
            part._fit(np.vstack([A[:lo], A[hi:]]))
            smooth[lo:hi] = rolling_mean(
                part._compute(A[lo:hi], False).score, int(self.smooth_window)
            )
        self.threshold_ = float(self.margin) * float(np.quantile(smooth, float(self.quantile)))


class FrozenPCA(SmoothedPCADetector):
    """``pca-smoothed`` whose running mean stops (``slow`` = 0) or slows to ``slow`` ×
    its rate while the score is in an excursion: on when the mean of the last
    ``smooth_window`` scores passes the threshold, off when it falls below
    ``off_ratio`` × the threshold. Exact and causal (a reading's gate uses the score it
    gets from the running mean before it), computed in blocks that restart at each
    switch of the gate. One pass per batch: the suite's protocol scores each file in one
    ``detect``."""

    name = "tried-freeze"
    param_rules: ClassVar[dict[str, Rule]] = {
        **SmoothedPCADetector.param_rules,
        "slow": Rule("a number between 0 and 1", lambda v: number(v) and 0 <= v <= 1),
    }

    def __init__(
        self,
        slow: float = 0.0,
        n_components: float = 0.9,
        limit_quantile: float = 0.99,
        quantile: float = 0.995,
        margin: float = 1.25,
        smooth_window: int = 5,
        min_duration: int = 3,
        off_ratio: float = 0.8,
        release: int = 5,
        adapt: float = 4.0,
    ) -> None:
        super().__init__(
            n_components, limit_quantile, quantile, margin, smooth_window, min_duration,
            off_ratio, release, adapt,
        )  # fmt: skip
        self.slow = slow

    def _scores(self, shifted: np.ndarray) -> np.ndarray:
        t2, q = self._t2_q((shifted - self.mean_) / self.scale_)
        return np.asarray(t2 / self.t2_limit_ + q / self.q_limit_)

    def _compute(self, A: np.ndarray, want_contrib: bool = True) -> Computed:
        from scipy.signal import lfilter

        adapt = float(self.adapt)
        if adapt <= 0 or A.shape[0] == 0:
            return PCADetector._compute(self, A, want_contrib)
        n = A.shape[0]
        a_free = 1.0 / max(1.0, adapt * int(self.n_train_))
        band = _CLIP * self.scale_
        level, tail = self._start()
        ext = np.vstack([tail, np.clip(A, self.mean_ - band, self.mean_ + band)])
        x0, x1, x2 = ext[:-2], ext[1:-1], ext[2:]
        med = np.maximum(np.minimum(x0, x1), np.minimum(np.maximum(x0, x1), x2))
        w = max(1, int(self.smooth_window))
        thr, off = float(self.threshold_), float(self.off_ratio) * float(self.threshold_)
        prev_levels = np.empty_like(A, dtype=np.float64)
        recent = np.zeros(w - 1)  # scores before the block, for the causal mean
        gate, i, block = False, 0, 512
        while i < n:
            j = min(n, i + block)
            a = a_free * (float(self.slow) if gate else 1.0)
            if a > 0:
                m, _ = lfilter([a], [1.0, -(1.0 - a)], med[i:j], axis=0,
                               zi=((1.0 - a) * level)[None, :])  # fmt: skip
            else:
                m = np.repeat(level[None, :], j - i, axis=0)
            prev = np.vstack([level[None, :], m[:-1]])
            sc = self._scores(A[i:j] - (prev - self.mean_))
            sc = np.clip(np.nan_to_num(sc, nan=0.0, posinf=1e12), 0, 1e12)
            full = np.concatenate([recent, sc])
            sm = np.convolve(full, np.ones(w) / w, mode="valid") if w > 1 else full
            flip = np.flatnonzero(sm < off) if gate else np.flatnonzero(sm > thr)
            if flip.size:
                k = int(flip[0])  # the gate switches at reading i + k
                prev_levels[i : i + k + 1] = prev[: k + 1]
                # reading i+k's own update follows the new gate
                a_new = a_free * (1.0 if gate else float(self.slow))
                level = prev[k] + a_new * (med[i + k] - prev[k])
                gate = not gate
                used = np.concatenate([recent, sc[: k + 1]])
                i += k + 1
            else:
                prev_levels[i:j] = prev
                level = m[-1]
                used = full
                i = j
            recent = used[len(used) - (w - 1) :] if w > 1 else recent
        return PCADetector._compute(self, A - (prev_levels - self.mean_), want_contrib)


class NeighbourPCA(SmoothedPCADetector):
    """A memory-based detector on ``pca-smoothed``'s re-centred readings and alarm
    rule: each reading (standardised by the training mean and deviation) against the
    mean of its ``k`` nearest training readings (a memory of at most ``memory`` evenly
    spaced training rows); score = the squared distance to that mean over the sensors,
    contributions = each sensor's part of it. Training scores leave out each row's own
    neighbourhood in time (``gap`` readings either side), so the threshold is set on
    scores of rows the memory does not hold, not on in-sample distances of 0."""

    name = "tried-knn"
    param_rules: ClassVar[dict[str, Rule]] = {
        **SmoothedPCADetector.param_rules,
        "k": Rule("a whole number of at least 1", lambda v: number(v) and v >= 1),
        "memory": Rule("a whole number of at least 10", lambda v: number(v) and v >= 10),
        "gap": Rule("a whole number of at least 0", lambda v: number(v) and v >= 0),
    }

    def __init__(
        self,
        k: int = 5,
        memory: int = 2000,
        gap: int = 10,
        n_components: float = 0.9,
        limit_quantile: float = 0.99,
        quantile: float = 0.995,
        margin: float = 1.25,
        smooth_window: int = 5,
        min_duration: int = 3,
        off_ratio: float = 0.8,
        release: int = 5,
        adapt: float = 4.0,
    ) -> None:
        super().__init__(
            n_components, limit_quantile, quantile, margin, smooth_window, min_duration,
            off_ratio, release, adapt,
        )  # fmt: skip
        self.k = k
        self.memory = memory
        self.gap = gap

    def _nearest(self, Z: np.ndarray, exclude: np.ndarray | None = None) -> np.ndarray:
        """Per sensor, each row minus the mean of its k nearest memory rows."""
        M, m2 = self.memory_, self.m2_
        out = np.empty_like(Z)
        k = min(int(self.k), M.shape[0])
        for lo in range(0, Z.shape[0], 4096):
            z = Z[lo : lo + 4096]
            d = (z**2).sum(axis=1)[:, None] - 2.0 * z @ M.T + m2[None, :]
            if exclude is not None:
                t = exclude[lo : lo + 4096]
                d[np.abs(t[:, None] - self.mem_time_[None, :]) <= int(self.gap)] = np.inf
            idx = np.argpartition(d, k - 1, axis=1)[:, :k]
            out[lo : lo + 4096] = z - M[idx].mean(axis=1)
        return out

    def _fit(self, A: np.ndarray) -> None:
        super()._fit(A)  # mean_, scale_, n_train_ (and PCA's, unused)
        Z = (A - self.mean_) / self.scale_
        n = Z.shape[0]
        keep = np.unique(np.linspace(0, n - 1, min(n, int(self.memory))).astype(int))
        self.memory_, self.mem_time_ = Z[keep].copy(), keep
        self.m2_ = (self.memory_**2).sum(axis=1)
        E = self._nearest(Z, exclude=np.arange(n))
        score = (E**2).sum(axis=1)
        self.threshold_ = smoothed_threshold(score, self.quantile, self.margin, self.smooth_window)

    def _compute(self, A: np.ndarray, want_contrib: bool = True) -> Computed:
        shifted = self._recentre(A, self._start())[0]
        E = self._nearest((shifted - self.mean_) / self.scale_) ** 2
        return Computed(E.sum(axis=1), E if want_contrib else None)


class LeaveSensorOutKnn(NeighbourDetector):
    """``knn`` whose contributions, on readings scoring above ``off_ratio`` × the
    threshold, are each sensor's residual against an estimate from neighbours found
    without it, divided by that residual's typical size on training rows (``norm=True``;
    up to 2,000 evenly spaced rows, their own neighbourhood in time left out), rescaled
    to sum to the score; elsewhere as ``knn``. Scores and alarms are ``knn``'s."""

    name = "tried-knn-loo"
    param_rules: ClassVar[dict[str, Rule]] = {
        **NeighbourDetector.param_rules,
        "norm": Rule("true or false", lambda v: isinstance(v, bool)),
    }

    def __init__(
        self,
        norm: bool = True,
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
        super().__init__(
            k, memory, gap, adapt, quantile, margin, smooth_window, min_duration, off_ratio,
            release,
        )  # fmt: skip
        self.norm = norm

    def _loo(self, Zh: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        M = self.memory_
        k = min(int(self.k), M.shape[0])
        full = (Zh.astype(np.float32) @ (-2.0 * M.T).astype(np.float32)).astype(np.float64)
        full += np.einsum("ij,ij->i", M, M)[None, :]
        if rows is not None:
            full[np.abs(rows[:, None] - self.memory_index_[None, :]) <= self.gap_used_] = np.inf
        R = np.empty_like(Zh)
        r = np.arange(Zh.shape[0])
        for j in range(Zh.shape[1]):
            # the distance without sensor j: a rank-one correction of the full one
            d = full + 2.0 * Zh[:, j : j + 1] * M[None, :, j] - (M[:, j] ** 2)[None, :]
            total = np.zeros(Zh.shape[0])
            for step in range(k):
                i = d.argmin(axis=1)
                total += M[i, j]
                if step < k - 1:
                    d[r, i] = np.inf
            R[:, j] = Zh[:, j] - total / k
        return R

    def _fit(self, A: np.ndarray) -> None:
        super()._fit(A)
        n = A.shape[0]
        rows = np.unique(np.linspace(0, n - 1, min(n, 2000)).round().astype(np.int64))
        R = self._loo(((A - self.mean_) / self.scale_)[rows], rows)
        rms = np.sqrt((R**2).mean(axis=0))
        self.loo_scale_ = np.where(rms > 0, rms, 1.0)

    def _score_shifted(self, A: np.ndarray, want_contrib: bool = True) -> Computed:
        Z = (A - self.mean_) / self.scale_
        E2 = self._residuals(Z) ** 2
        score = E2.sum(axis=1)
        if not want_contrib:
            return Computed(score)
        hot = np.flatnonzero(score > float(self.off_ratio) * float(self.threshold_))
        if hot.size and Z.shape[1] > 1:
            R = self._loo(Z[hot])
            if self.norm:
                R = R / self.loo_scale_
            R2 = R**2
            tot = R2.sum(axis=1, keepdims=True)
            E2[hot] = R2 * (score[hot, None] / np.where(tot > 0, tot, 1.0))
        return Computed(score, E2)


class CoverKnn(NeighbourDetector):
    """``knn`` whose memory covers the training readings instead of sampling them evenly
    in time: half the memory evenly spaced, the other half added greedily, each time the
    training reading farthest from the memory so far (farthest-point sampling, on the
    standardised readings). Rare normal states get memory readings; so do the training
    window's own outliers."""

    name = "tried-knn-cover"

    def _fit(self, A: np.ndarray) -> None:
        super()._fit(A)
        n = A.shape[0]
        m = min(n, int(self.memory))
        if m >= n:
            return
        Z = (A - self.mean_) / self.scale_
        even = np.unique(np.linspace(0, n - 1, max(1, m // 2)).round().astype(np.int64))
        chosen = list(even)
        d = np.full(n, np.inf)
        for i in even:
            d = np.minimum(d, ((Z - Z[i]) ** 2).sum(axis=1))
        while len(chosen) < m:
            i = int(d.argmax())
            chosen.append(i)
            d = np.minimum(d, ((Z - Z[i]) ** 2).sum(axis=1))
        keep = np.array(sorted(set(chosen)), dtype=np.int64)
        self.memory_ = Z[keep].copy()
        self.memory_index_ = keep
        E = self._residuals(Z, rows=np.arange(n))
        self.threshold_ = smoothed_threshold(
            (E**2).sum(axis=1), self.quantile, self.margin, self.smooth_window
        )


TRIED = (
    LaggedPCA, OutOfFoldPCA, BulkThresholdPCA, RecentredStates, StatesPlusPCA,
    OutOfFoldStates, FrozenPCA, NeighbourPCA, LeaveSensorOutKnn, CoverKnn,
)  # fmt: skip


def register() -> None:
    """Add the variants to the detector table of this process."""
    for cls in TRIED:
        # the suite imports the class by module path: this file as a module, not __main__
        names.DETECTORS[cls.name] = f"quality_tried:{cls.__name__}"
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))


def main() -> None:
    register()
    sys.argv = [str(HERE / "quality_suite.py"), *sys.argv[1:]]
    runpy.run_path(str(HERE / "quality_suite.py"), run_name="__main__")


if __name__ == "__main__":
    main()
