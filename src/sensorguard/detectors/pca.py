"""PCA monitoring: Hotelling's T² in the principal subspace plus Q (SPE) in the residual.

The classic multivariate statistical process control baseline (MacGregor & Kourti):

* readings are standardised with the training mean and standard deviation;
* ``k`` principal components keep ``n_components`` of the variance (a fraction) or a
  fixed count, never all of them, so Q is not identically zero;
* ``T² = Σ t_i² / λ_i`` measures distance inside the model plane, ``Q = ‖z − ẑ‖²`` the
  distance from it;
* the score is the combined index ``T²/T²_lim + Q/Q_lim`` with both limits set to the
  ``limit_quantile`` of the training values, and the alarm threshold is the
  ``quantile`` of the training scores times ``margin``.

Per-sensor contributions add the sensor's share of T² (``z_j (P Λ⁻¹ Pᵀ z)_j``, clipped
at 0) and of Q (``e_j²``), each divided by its limit, so they sum to about the score.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from sensorguard.detectors._stats import smoothed_threshold
from sensorguard.detectors.base import BaseDetector, Computed
from sensorguard.detectors.params import ALARM_RULES, Rule, between, number
from sensorguard.detectors.recentre import RecentredDetector


def _components(v: object) -> bool:
    # a fraction of the variance to keep (0 < v < 1) or a whole number of components
    return number(v) and v > 0 and (v < 1 or float(v).is_integer())  # type: ignore[operator, arg-type]


class PCADetector(BaseDetector):
    name = "pca"
    param_rules: ClassVar[dict[str, Rule]] = {
        "n_components": Rule(
            "a fraction of the variance between 0 and 1 (exclusive) or a whole number "
            "of components of at least 1",
            _components,
        ),
        "limit_quantile": between(0, 1, lo_open=True, hi_open=True),
        **ALARM_RULES,
    }

    def __init__(
        self,
        n_components: float = 0.9,
        limit_quantile: float = 0.99,
        quantile: float = 0.99,
        margin: float = 1.0,
        smooth_window: int = 1,
        min_duration: int = 1,
        off_ratio: float = 1.0,
        release: int = 1,
    ) -> None:
        self.n_components = n_components
        self.limit_quantile = limit_quantile
        self.quantile = quantile
        self.margin = margin
        self.smooth_window = smooth_window
        self.min_duration = min_duration
        self.off_ratio = off_ratio
        self.release = release

    def _fit(self, A: np.ndarray) -> None:
        self.mean_ = A.mean(axis=0)
        std = A.std(axis=0)
        self.scale_ = np.where(std > 0, std, 1.0)
        Z = (A - self.mean_) / self.scale_
        p = Z.shape[1]
        _, s, vt = np.linalg.svd(Z, full_matrices=False)
        var = s**2 / max(Z.shape[0] - 1, 1)
        if self.n_components >= 1:
            k = int(self.n_components)
        else:
            frac = np.cumsum(var) / max(var.sum(), 1e-12)
            k = int(np.searchsorted(frac, self.n_components) + 1)
        k = max(1, min(k, p - 1)) if p > 1 else 1
        self.k_ = k
        self.components_ = vt[:k].T.copy()  # (p, k)
        self.eigenvalues_ = np.maximum(var[:k], 1e-12)
        t2, q = self._t2_q(Z)
        self.t2_limit_ = float(max(np.quantile(t2, self.limit_quantile), 1e-12))
        self.q_limit_ = float(max(np.quantile(q, self.limit_quantile), 1e-12))
        score = t2 / self.t2_limit_ + q / self.q_limit_
        self.threshold_ = smoothed_threshold(score, self.quantile, self.margin, self.smooth_window)

    def _t2_q(self, Z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        T = Z @ self.components_
        t2 = np.sum(T**2 / self.eigenvalues_, axis=1)
        if self.components_.shape[0] == self.components_.shape[1]:
            return t2, np.zeros(Z.shape[0])
        E = Z - T @ self.components_.T
        return t2, np.sum(E**2, axis=1)

    def _compute(self, A: np.ndarray, want_contrib: bool = True) -> Computed:
        Z = (A - self.mean_) / self.scale_
        T = Z @ self.components_
        t2 = np.sum(T**2 / self.eigenvalues_, axis=1)
        full = self.components_.shape[0] == self.components_.shape[1]
        E = np.zeros_like(Z) if full else Z - T @ self.components_.T
        q = np.zeros(Z.shape[0]) if full else np.sum(E**2, axis=1)
        score = np.asarray(t2 / self.t2_limit_ + q / self.q_limit_)
        if not want_contrib:
            return Computed(score)
        t2_part = np.maximum(Z * ((T / self.eigenvalues_) @ self.components_.T), 0.0)
        return Computed(score, np.asarray(t2_part / self.t2_limit_ + E**2 / self.q_limit_))


class SmoothedPCADetector(RecentredDetector, PCADetector):
    """PCA monitoring with the alarm rule of an operator's screen, on slowly re-centred
    readings.

    * **Alarm rule**: the same score as ``pca``, judged against 1.25 × the 99.5th
      percentile of the smoothed training scores, smoothed over 5 readings, on after 3,
      off after 5 below 0.8 × threshold.
    * **Slow re-centring** (``adapt``, :mod:`sensorguard.detectors.recentre`): before
      scoring, each sensor is shifted by how far its running mean (time constant
      ``adapt`` × the training length) has moved from the training mean; a rig that
      drifts slowly after a short training window stops looking anomalous, a faster
      change still does. ``adapt=0`` turns it off; the running mean is the stream's
      filter state.

    ``pca`` keeps the textbook rule (every reading above the 99th percentile alarms) for
    comparison with published figures. Both settings here were chosen by the real-data
    quality suite (docs/quality.md, "Choosing the default").
    """

    name = "pca-smoothed"
    param_rules: ClassVar[dict[str, Rule]] = {
        **PCADetector.param_rules,
        "adapt": Rule("a number of at least 0 (0 = off)", lambda v: number(v) and v >= 0),
    }

    def __init__(
        self,
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
            n_components=n_components,
            limit_quantile=limit_quantile,
            quantile=quantile,
            margin=margin,
            smooth_window=smooth_window,
            min_duration=min_duration,
            off_ratio=off_ratio,
            release=release,
        )
        self.adapt = adapt

    def _fit(self, A: np.ndarray) -> None:
        super()._fit(A)  # training scores are in-sample, not re-centred
        self.n_train_ = int(A.shape[0])

    def _score_shifted(self, A: np.ndarray, want_contrib: bool = True) -> Computed:
        return PCADetector._compute(self, A, want_contrib)
