"""Per-asset calibration: one fleet model for a machine type, each asset at its own baseline.

``AssetCalibrated`` (name ``"asset-calibrated"``) wraps any detector of the catalog
(``base``, default ``operating-states``). Pumps of one type sit at their own operating
points — another system curve, suction head, wear level, sensor offsets — so a model
trained on all of them pooled learns one wide blur of normal, too loose for every
single pump. The wrapper moves each asset onto the fleet's operating states first:

1. ``fit(X, assets=...)``: a base detector fitted on the pooled raw rows finds the
   fleet's operating states; each row's *reference* is the per-sensor median of its
   state over the fleet;
2. per asset (with at least ``min_rows`` training rows) and sensor, a gain and an offset
   with ``x ≈ gain · reference + offset`` (least squares; gain clipped to 0.5-2, or 1
   with ``scale=False``, then the offset is the median residual). Fitting against the
   state references, not the asset's plain median, keeps the baseline independent of
   how long the asset ran at each setpoint (the plain-median version measured worse
   than no calibration, docs/quality.md "Fleet calibration");
3. the base detector is fitted on the mapped fleet, ``x' = (x − offset) / gain``;
4. with ``per_asset_threshold=True`` each asset's score is divided by its own level,
   ``q_asset / q_fleet`` (the 99.5th percentiles of its smoothed training scores and of
   the fleet's) — a per-asset threshold of ``threshold_ × q_asset / q_fleet`` — while the
   base detector's alarm rule runs unchanged.

Scoring needs the asset: :meth:`for_asset` returns the detector bound to one asset
(a shallow copy sharing every array); readings-level scoring calls it per asset block.
Without an asset, or for an asset not seen in training, readings are scored unmapped,
which is what a fleet model without calibration would do. Saved pickle-free: gains,
offsets and levels in ``arrays.npz``, the asset ids in ``detector.json``, the base
detector in the sub-folder ``base/``.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import pandas as pd

from sensorguard.detectors.alarm import AlarmRule
from sensorguard.detectors.base import BaseDetector, Computed, DetectionResult, SensorSchema
from sensorguard.detectors.events import rolling_mean
from sensorguard.detectors.params import Rule, at_least, check_params
from sensorguard.errors import DataValidationError

_LEVEL_QUANTILE = 0.995


class AssetCalibrated(BaseDetector):
    """A fleet detector with per-asset robust centring/scaling (and optional thresholds)."""

    name = "asset-calibrated"
    param_rules: ClassVar[dict[str, Rule]] = {
        "base": Rule(
            "the name of another detector of the catalog",
            lambda v: isinstance(v, str) and v != "asset-calibrated",
        ),
        "min_rows": at_least(2),
    }
    uses_assets = True
    """Training passes each row's asset id to ``fit`` (``assets=``)."""

    def __init__(
        self,
        base: str = "operating-states",
        base_params: dict[str, Any] | None = None,
        scale: bool = True,
        per_asset_threshold: bool = False,
        min_rows: int = 200,
    ) -> None:
        self.base = base
        self.base_params = base_params
        self.scale = scale
        self.per_asset_threshold = per_asset_threshold
        self.min_rows = min_rows

    # ---------------------------------------------------------------- fit
    def fit(self, X: pd.DataFrame, y: Any = None, assets: Any = None) -> Self:
        """Learn each asset's baseline, then the base detector on the mapped fleet.

        ``assets``: one asset id per row of ``X`` (``None``: one unnamed asset).
        """
        from sensorguard.detectors.catalog import make_detector

        check_params(self.name, type(self), self.get_params(deep=False))
        self.schema_ = SensorSchema.from_training(X)
        A = self.schema_.prepare(X)
        n = A.shape[0]
        ids = _asset_array(assets, n)
        self.n_features_in_ = A.shape[1]
        self.feature_names_in_ = np.asarray(self.schema_.sensors, dtype=object)
        groups = _groups(ids)
        # 1. the fleet's operating states, from a detector fitted on the pooled raw rows
        params = dict(self.base_params or {})
        states = np.asarray(
            make_detector(self.base, **params)
            .fit(pd.DataFrame(A, columns=self.schema_.sensors))
            .compute(A, want_contrib=False)
            .states()
        )
        ref = np.empty_like(A)  # each row's fleet state centre (per-sensor median)
        for s in np.unique(states):
            m = states == s
            ref[m] = np.median(A[m], axis=0)
        # 2. per asset and sensor, x ≈ gain · state centre + offset (least squares)
        names: list[str] = []
        offsets, gains = [], []
        for asset, rows in groups.items():
            if rows.size < self.min_rows:
                continue  # too little data for its own baseline: scored uncalibrated
            names.append(asset)
            g, o = _affine(A[rows], ref[rows], fit_gain=bool(self.scale))
            gains.append(g)
            offsets.append(o)
        p = A.shape[1]
        self.assets_ = names
        self.offsets_ = np.asarray(offsets, dtype=np.float64).reshape(len(names), p)
        self.gains_ = np.asarray(gains, dtype=np.float64).reshape(len(names), p)
        self._index = {a: i for i, a in enumerate(names)}
        self._bound: int | None = None
        # 3. the base detector on the whole fleet, every asset moved onto the fleet's states
        mapped = np.empty_like(A)
        for asset, rows in groups.items():
            mapped[rows] = self._map(A[rows], self._index.get(asset))
        base = make_detector(self.base, **params)
        base.fit(pd.DataFrame(mapped, columns=self.schema_.sensors))
        self.base_ = base
        self.threshold_ = float(base.threshold_)
        self.levels_ = np.ones(len(names), dtype=np.float64)
        if self.per_asset_threshold and names:
            window = base.alarm_rule_.smooth_window
            pooled = rolling_mean(base.compute(mapped, False).score, window)
            fleet_q = float(np.quantile(pooled, _LEVEL_QUANTILE))
            if fleet_q > 0:
                for asset, rows in groups.items():
                    i = self._index.get(asset)
                    if i is None:
                        continue
                    s = rolling_mean(base.compute(mapped[rows], False).score, window)
                    q = float(np.quantile(s, _LEVEL_QUANTILE))
                    self.levels_[i] = q / fleet_q if q > 0 else 1.0
        self.alarm_rule_ = self._fit_alarm_rule()
        return self

    # ---------------------------------------------------------------- binding
    def for_asset(self, asset: Any) -> AssetCalibrated:
        """This detector bound to ``asset`` (uncalibrated for an unknown asset)."""
        self._require_fitted()
        bound = copy.copy(self)
        bound._bound = self._index.get(str(asset)) if asset is not None else None
        return bound

    @property
    def asset(self) -> str | None:
        """The asset this instance is bound to (``None``: uncalibrated)."""
        i = getattr(self, "_bound", None)
        return None if i is None else self.assets_[i]

    def _map(self, A: np.ndarray, i: int | None) -> np.ndarray:
        if i is None:
            return A
        return (A - self.offsets_[i]) / self.gains_[i]

    def _level(self) -> float:
        i = getattr(self, "_bound", None)
        return 1.0 if i is None else float(self.levels_[i])

    # ---------------------------------------------------------------- protocol
    def _fit(self, A: np.ndarray) -> None:  # pragma: no cover - fit() is overridden
        raise NotImplementedError("asset-calibrated fits through fit(X, assets=...)")

    def _compute(self, A: np.ndarray, want_contrib: bool = True) -> Computed:
        i = getattr(self, "_bound", None)
        c = self.base_.compute(self._map(A, i), want_contrib)
        level = self._level()
        if level == 1.0:
            return c
        return Computed(np.asarray(c.score, dtype=np.float64) / level, c.contributions, c.state)

    def _fit_alarm_rule(self) -> AlarmRule:
        """The base detector's rule (smoothing, hysteresis, on-delay) at ``threshold_``."""
        return AlarmRule(**{**self.base_.alarm_rule_.to_dict(), "threshold": self.threshold_})

    def detect_assets(self, X: pd.DataFrame | np.ndarray, assets: Any) -> DetectionResult:
        """``detect`` asset by asset (each with its own baseline), in row order."""
        A = self.prepare(X)
        ids = _asset_array(assets, A.shape[0])
        groups = _groups(ids)
        parts = {a: self.for_asset(a).detect(A[rows]) for a, rows in groups.items()}
        n, p = A.shape
        score, alarm = np.empty(n), np.zeros(n, dtype=bool)
        state, contrib = np.empty(n, dtype=np.int64), np.empty((n, p))
        blamed = np.empty((n, p))
        for a, rows in groups.items():
            r = parts[a]
            assert r.blame is not None
            score[rows], alarm[rows], state[rows], contrib[rows], blamed[rows] = (
                r.score,
                r.is_anomaly,
                r.state,
                r.contributions,
                r.blame,
            )
        return DetectionResult(
            score,
            alarm,
            state,
            contrib,
            list(self.schema_.sensors),
            float(self.threshold_),
            blamed,
        )

    # ---------------------------------------------------------------- persistence
    def _save_extra(self, path: Path) -> None:
        self.base_.save(path / "base")

    def _load_extra(self, path: Path) -> None:
        from sensorguard.detectors.catalog import load_detector

        self.base_ = load_detector(path / "base")
        self.assets_ = [str(a) for a in self.assets_]
        self._index = {a: i for i, a in enumerate(self.assets_)}
        self._bound = None


def _asset_array(assets: Any, n: int) -> np.ndarray:
    if assets is None:
        return np.full(n, "", dtype=object)
    ids = np.asarray(pd.Series(assets).astype(str).to_numpy(), dtype=object)
    if ids.shape[0] != n:
        raise DataValidationError(
            f"{ids.shape[0]} asset ids for {n} readings", "give one asset id per reading"
        )
    return ids


_GAIN_RANGE = (0.5, 2.0)


def _affine(X: np.ndarray, ref: np.ndarray, fit_gain: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per column ``gain, offset`` with ``X ≈ gain · ref + offset``.

    The gain needs the asset to have visited states with different centres; with one
    state (or ``fit_gain=False``) it is 1 and the offset is the median residual.
    """
    p = X.shape[1]
    gain = np.ones(p)
    if fit_gain:
        rc = ref - ref.mean(axis=0)
        var = (rc * rc).sum(axis=0)
        cov = (rc * (X - X.mean(axis=0))).sum(axis=0)
        spread = np.sqrt(var / max(1, X.shape[0]))
        ok = spread > 1e-9 * (np.abs(ref).mean(axis=0) + 1.0)
        gain = np.where(ok, np.clip(cov / np.where(var > 0, var, 1.0), *_GAIN_RANGE), 1.0)
    offset = np.median(X - gain * ref, axis=0)
    return gain, offset


def _groups(ids: np.ndarray) -> dict[str, np.ndarray]:
    """Row positions per asset, rows kept in order (first appearance order of assets)."""
    codes, uniques = pd.factorize(ids, sort=False)
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(len(uniques) + 1))
    return {str(uniques[k]): order[bounds[k] : bounds[k + 1]] for k in range(len(uniques))}
