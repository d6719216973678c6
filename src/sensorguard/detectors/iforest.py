"""Isolation Forest baseline (Liu, Ting & Zhou, 2008) behind the detector protocol.

Readings are robustly standardised (median / MAD) with the training data and whitened
(rotated onto the principal axes of the training readings, each axis scaled to unit
variance, eigenvalues floored at 1 % of the largest): axis-parallel isolation trees
cannot see a reading that breaks a correlation between sensors otherwise, and the
isolation depth saturates for values outside the training range. The forest is fitted
on the whitened readings and the score is the negated ``score_samples`` of scikit-learn (higher =
easier to isolate = more anomalous). The threshold is the ``quantile`` of the training
scores times ``margin``. The forest gives no per-feature attribution, so contributions
are each sensor's absolute standardised deviation from its training median.

Persistence stays pickle-free: the forest is written with skops and loaded back only
if every type in the file is on the explicit trusted list below.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
from sklearn.ensemble import IsolationForest

from sensorguard.detectors._stats import robust_scale, smoothed_threshold
from sensorguard.detectors.base import BaseDetector, Computed
from sensorguard.detectors.params import ALARM_RULES, Rule, at_least
from sensorguard.errors import DataValidationError

_SKOPS_FILE = "iforest.skops"
_TRUSTED = {
    "sklearn.ensemble._iforest.IsolationForest",
    "sklearn.tree._classes.ExtraTreeRegressor",
    "sklearn.tree._tree.Tree",
    "numpy.random._mt19937.MT19937",
    "numpy.random.mtrand.RandomState",
    "builtins.slice",
    "numpy.dtype",
    "numpy.ndarray",
    "numpy.float64",
    "numpy.int64",
}


# the forest works in float32: whitened values beyond this (a huge reading) would
# become infinite there, which scikit-learn refuses; far outside any training value
_W_LIMIT = 1e30


class IsolationForestDetector(BaseDetector):
    name = "iforest"
    param_rules: ClassVar[dict[str, Rule]] = {
        "n_estimators": at_least(1),
        "max_samples": at_least(1),
        "random_state": at_least(0),
        **ALARM_RULES,
    }

    def __init__(
        self,
        n_estimators: int = 200,
        max_samples: int = 256,
        random_state: int = 0,
        quantile: float = 0.99,
        margin: float = 1.0,
        smooth_window: int = 1,
        min_duration: int = 1,
        off_ratio: float = 1.0,
        release: int = 1,
    ) -> None:
        self.n_estimators = n_estimators
        self.max_samples = max_samples
        self.random_state = random_state
        self.quantile = quantile
        self.margin = margin
        self.smooth_window = smooth_window
        self.min_duration = min_duration
        self.off_ratio = off_ratio
        self.release = release

    def _fit(self, A: np.ndarray) -> None:
        self.center_ = np.median(A, axis=0)
        self.scale_ = robust_scale(A)
        Z = (A - self.center_) / self.scale_
        cov = np.atleast_2d(np.cov(Z, rowvar=False)) if A.shape[0] > 1 else np.eye(A.shape[1])
        vals, vecs = np.linalg.eigh(cov)
        vals = np.maximum(vals, max(float(vals.max()), 1e-12) * 0.01)
        self.whiten_ = vecs / np.sqrt(vals)
        self.forest_ = IsolationForest(
            n_estimators=self.n_estimators,
            max_samples=min(self.max_samples, A.shape[0]),
            random_state=self.random_state,
        ).fit(self._w(A))
        score = self._compute(A, want_contrib=False).score
        self.threshold_ = smoothed_threshold(score, self.quantile, self.margin, self.smooth_window)

    def _z(self, A: np.ndarray) -> np.ndarray:
        return (A - self.center_) / self.scale_

    def _w(self, A: np.ndarray) -> np.ndarray:
        W = self._z(A) @ self.whiten_
        if not np.isfinite(W).all() or np.abs(W).max(initial=0.0) > _W_LIMIT:
            W = np.clip(np.nan_to_num(W, nan=_W_LIMIT), -_W_LIMIT, _W_LIMIT)
        return W

    def _compute(self, A: np.ndarray, want_contrib: bool = True) -> Computed:
        if A.shape[0] == 0:
            score = np.zeros(0)
        else:
            score = np.asarray(-self.forest_.score_samples(self._w(A)), dtype=np.float64)
        return Computed(score, np.abs(self._z(A)) if want_contrib else None)

    def _save_extra(self, path: Path) -> None:
        import skops.io as sio

        sio.dump(self.forest_, path / _SKOPS_FILE)

    def _load_extra(self, path: Path) -> None:
        import skops.io as sio

        file = path / _SKOPS_FILE
        untrusted = set(sio.get_untrusted_types(file=file)) - _TRUSTED
        if untrusted:
            raise DataValidationError(
                f"{file} holds types that are not trusted: {', '.join(sorted(untrusted))}",
                "re-save the model with this version of SensorGuard",
            )
        self.forest_ = sio.load(file, trusted=sorted(_TRUSTED))
