"""Drift-residual detector: the drift-robust filter on sensors *and* cross-sensor residuals.

Physical relations between sensors (flow, pressure and current along the pump curve,
vibration with load) keep holding while the machine warms up and its operating point
wanders, so the part of each sensor that the others do not explain drifts far less than
the sensor itself — and a failure that breaks a relation (a leak: pressure falls while
flow rises; a closing valve; a load-free vibration rise) shows there even when each
sensor on its own stays inside its normal drift.

* **Relations.** On the training window every sensor is regressed on all the others
  with ridge shrinkage (``ridge`` × n on standardised predictors). The regression is
  fitted on readings with each sensor's quadratic time trend removed, so coefficients
  come from sensors moving *together* (wander, load changes), not from two unrelated
  warm-up curves that happen to rise at the same time.
* **Residual channels.** ``r_j = x_j − x̂_j`` (in the sensor's units) joins the raw
  sensors as ``p`` extra channels of :class:`~sensorguard.detectors.robust.DriftRobustDetector`
  (baseline frozen while alarmed, learnt drift allowance, spread, hysteresis): each
  channel gets its own tracking error, drift allowance and spread statistics from the
  training window, so a residual that still drifts is judged accordingly.
* **Contributions**: a residual channel's share is credited to the sensor it belongs to.

Everything else (parameters, threshold from training scores, saved filter state,
deterministic scoring) is that of the drift-robust detector.
"""

from __future__ import annotations

import numpy as np

from sensorguard.detectors.robust import DriftRobustDetector


class DriftResidualDetector(DriftRobustDetector):
    name = "drift-residual"

    def __init__(
        self,
        ridge: float = 0.05,
        window: int = 20,
        center: str = "median",
        alpha: float = 0.005,
        clip: float = 3.0,
        freeze_share: float = 0.25,
        sensor_gate: float = 3.0,
        spread: bool = True,
        quantile: float = 0.99,
        margin: float = 1.2,
        warmup: int = 30,
        smooth_window: int = 3,
        min_duration: int = 2,
        off_ratio: float = 0.7,
        release: int = 2,
    ) -> None:
        super().__init__(
            window=window,
            center=center,
            alpha=alpha,
            clip=clip,
            freeze_share=freeze_share,
            sensor_gate=sensor_gate,
            spread=spread,
            quantile=quantile,
            margin=margin,
            warmup=warmup,
            smooth_window=smooth_window,
            min_duration=min_duration,
            off_ratio=off_ratio,
            release=release,
        )
        self.ridge = ridge

    def _relations(self, A: np.ndarray) -> None:
        n, p = A.shape
        self.center_ = A.mean(axis=0)
        if p < 2:
            self.residual_map_ = np.zeros((p, p))
            return
        t = np.linspace(-1.0, 1.0, n)
        T = np.column_stack([np.ones(n), t, t * t])
        D = A - T @ np.linalg.lstsq(T, A, rcond=None)[0]  # quadratic trends removed
        sd = D.std(axis=0)
        sd = np.where(sd > 0, sd, 1.0)
        Z = D / sd
        G = Z.T @ Z
        lam = max(float(self.ridge), 1e-6) * n
        M = np.eye(p)
        for j in range(p):
            o = np.flatnonzero(np.arange(p) != j)
            beta = np.linalg.solve(G[np.ix_(o, o)] + lam * np.eye(p - 1), G[o, j])
            # x_j − Σ_k b_k x_k with b_k = beta_k · sd_j / sd_k (back to sensor units)
            M[o, j] = -beta * sd[j] / sd[o]
        self.residual_map_ = M

    def _augment(self, A: np.ndarray) -> np.ndarray:
        return np.hstack([A, (A - self.center_) @ self.residual_map_])

    def _fit(self, A: np.ndarray) -> None:
        self._relations(A)
        super()._fit(self._augment(A))

    def _score(self, A: np.ndarray) -> np.ndarray:
        return super()._score(self._augment(A))

    def _contributions(self, A: np.ndarray) -> np.ndarray:
        c = super()._contributions(self._augment(A))
        p = A.shape[1]
        return np.asarray(c[:, :p] + c[:, p:])
