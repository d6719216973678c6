"""Data drift of recent readings against the profile of a model's training data.

Two measures per sensor, both computed against a *training profile* (a small JSON
document stored with the training run, so drift needs no access to the training data):

* **Standardised mean shift**: ``|mean_recent - mean_train| / std_train``.
* **PSI** (population stability index) over ten quantile bins of the training data plus
  one bin for missing readings (a sensor that stops reporting drifts):
  ``sum((p_recent - p_train) * ln(p_recent / p_train))``.

Overall values are the means over sensors. Which one decides is ``metric``: the default
is the mean shift (threshold 0.75 standard deviations). On simulated pump data a day of
steady operation scored 0.05-0.46 and a 30 % change of four process sensors 1.1-1.3,
whereas PSI on the same steady days ranged 0.36-1.7: sensor readings are strongly
autocorrelated and a machine spends hours in one operating state, so a day's histogram
differs from the training histogram even when nothing changed. PSI (``metric="psi"``)
still tells a change of shape (e.g. more noise at the same mean) and is always reported.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from sensorguard.errors import DataValidationError, SchemaMismatchError
from sensorguard.jsonsafe import json_safe

PROFILE_FORMAT = 1

DEFAULT_BINS = 10
METRICS = ("mean_shift", "psi")
DEFAULT_METRIC = "mean_shift"
DEFAULT_THRESHOLDS = {"mean_shift": 0.75, "psi": 1.0}
DEFAULT_THRESHOLD = DEFAULT_THRESHOLDS[DEFAULT_METRIC]
_EPS = 1e-4  # floor for empty bins so PSI stays finite


def training_profile(X: pd.DataFrame, *, bins: int = DEFAULT_BINS) -> dict[str, Any]:
    """Per-sensor statistics of training readings ``X`` (sensor columns only), as JSON.

    Bin edges are the training quantiles, so each bin holds about ``1/bins`` of the
    training readings; repeated edges (near-constant sensors) are merged.
    """
    if len(X) == 0:
        raise DataValidationError("no readings to profile", "provide at least one row")
    if bins < 2:
        raise DataValidationError(f"bins must be at least 2, got {bins}", "use e.g. 10")
    sensors: dict[str, Any] = {}
    for col in X.columns:
        raw = pd.to_numeric(X[col], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        values = raw[np.isfinite(raw)]
        if values.size == 0:
            raise DataValidationError(
                f"sensor column '{col}' has no values to profile",
                "drop the column or provide readings for it",
            )
        inner = np.unique(np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1]))
        counts = np.append(_bin_counts(values, inner), raw.size - values.size)
        sensors[str(col)] = {
            "mean": float(values.mean()),
            "std": float(values.std()),
            "min": float(values.min()),
            "max": float(values.max()),
            "edges": [float(e) for e in inner],
            # one fraction per bin, the last one for missing readings (dropouts count)
            "fractions": [float(c) for c in counts / raw.size],
        }
    return {"format": PROFILE_FORMAT, "rows": len(X), "bins": bins, "sensors": sensors}


@dataclass
class SensorDrift:
    sensor: str
    psi: float
    mean_shift: float
    mean_train: float
    mean_recent: float


@dataclass
class DriftReport:
    """Drift of one window of readings: ``drifted`` is ``score > threshold``, where
    ``score`` is the overall value of ``metric`` (mean over sensors)."""

    overall_psi: float
    max_psi: float
    overall_mean_shift: float
    threshold: float
    rows: int
    sensors: list[SensorDrift] = field(default_factory=list)
    metric: str = DEFAULT_METRIC
    only_in_reference: list[str] = field(default_factory=list)
    """Sensors of the reference (training) data that the recent readings lack: not compared."""
    only_in_recent: list[str] = field(default_factory=list)
    """Sensors of the recent readings that the reference lacks: not compared."""

    @property
    def note(self) -> str | None:
        """Which sensors were left out of the comparison, or None when all were compared."""
        parts = []
        if self.only_in_recent:
            parts.append(f"not in the reference: {', '.join(self.only_in_recent)}")
        if self.only_in_reference:
            parts.append(f"not in the recent readings: {', '.join(self.only_in_reference)}")
        if not parts:
            return None
        return (
            f"compared only the {len(self.sensors)} sensor(s) both data sets have; "
            f"left out sensor(s) {'; '.join(parts)} — give both the same sensor columns "
            "to compare them all"
        )

    @property
    def score(self) -> float:
        return self.overall_psi if self.metric == "psi" else self.overall_mean_shift

    @property
    def drifted(self) -> bool:
        # NaN (no sensor has a mean any more) counts as drift: nothing is as trained
        return not self.score <= self.threshold

    def top(self, k: int = 3) -> list[SensorDrift]:
        """The ``k`` sensors that moved most (by the deciding metric)."""

        def key(s: SensorDrift) -> float:
            v = s.psi if self.metric == "psi" else s.mean_shift
            return math.inf if math.isnan(v) else v

        return sorted(self.sensors, key=key, reverse=True)[:k]

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: NaN/inf (a sensor that stopped reporting has no mean) become None."""
        out = json_safe(asdict(self))
        out["score"] = json_safe(self.score)
        out["drifted"] = self.drifted
        out["note"] = self.note
        return out

    def metrics(self) -> dict[str, float]:
        """Flat metrics for MLflow (metric names may not contain every character)."""
        m = {
            "drift_score": self.score,
            "drift_overall_psi": self.overall_psi,
            "drift_max_psi": self.max_psi,
            "drift_overall_mean_shift": self.overall_mean_shift,
            "drift_threshold": self.threshold,
            "drift_rows": float(self.rows),
            "drift_detected": float(self.drifted),
        }
        for s in self.sensors:
            m[f"psi.{_metric_safe(s.sensor)}"] = s.psi
            m[f"mean_shift.{_metric_safe(s.sensor)}"] = s.mean_shift
        return m

    def summary(self) -> str:
        verdict = "DRIFT" if self.drifted else "no drift"
        worst = ", ".join(
            f"{s.sensor} (shift {s.mean_shift:.2f}σ, PSI {s.psi:.2f})" for s in self.top()
        )
        name = "PSI" if self.metric == "psi" else "mean shift"
        return (
            f"{verdict}: overall {name} {self.score:.3f} vs threshold {self.threshold:g} "
            f"(PSI {self.overall_psi:.2f}, mean shift {self.overall_mean_shift:.2f}σ) "
            f"over {self.rows} readings; most moved: {worst}"
        )


def compute_drift(
    profile: dict[str, Any],
    X: pd.DataFrame,
    *,
    threshold: float | None = None,
    metric: str = DEFAULT_METRIC,
) -> DriftReport:
    """Compare recent readings ``X`` with a training ``profile`` (from :func:`training_profile`).

    Every profiled sensor must be present in ``X``; extra columns are ignored.
    ``threshold`` defaults to the metric's default (:data:`DEFAULT_THRESHOLDS`).
    """
    _check_profile(profile)
    if metric not in METRICS:
        raise DataValidationError(
            f"unknown drift metric {metric!r}", f"choose one of: {', '.join(METRICS)}"
        )
    if threshold is None:
        threshold = DEFAULT_THRESHOLDS[metric]
    if not threshold > 0:
        raise DataValidationError(
            f"drift threshold must be positive, got {threshold}",
            f"use e.g. {DEFAULT_THRESHOLDS[metric]} for {metric}",
        )
    names = list(profile["sensors"])
    missing = [s for s in names if s not in X.columns]
    if missing:
        raise SchemaMismatchError(
            f"recent readings lack sensor column(s): {', '.join(missing)}",
            f"the training profile covers: {', '.join(names)}",
            missing=missing,
        )
    if len(X) == 0:
        raise DataValidationError(
            "no recent readings to compare", "widen the monitoring window or check ingestion"
        )
    results: list[SensorDrift] = []
    for name in names:
        p = profile["sensors"][name]
        raw = pd.to_numeric(X[name], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        values = raw[np.isfinite(raw)]
        counts = np.append(
            _bin_counts(values, np.asarray(p["edges"], dtype=np.float64)),
            raw.size - values.size,
        )
        expected = np.maximum(np.asarray(p["fractions"], dtype=np.float64), _EPS)
        actual = np.maximum(counts / raw.size, _EPS)
        psi = float(np.sum((actual - expected) * np.log(actual / expected)))
        # a sensor that stopped reporting has no mean; its PSI (missing bin) still counts
        mean_recent = float(values.mean()) if values.size else math.nan
        scale = p["std"] if p["std"] > 0 else max(abs(p["mean"]) * 1e-3, 1e-9)
        shift = abs(mean_recent - p["mean"]) / scale
        results.append(SensorDrift(name, psi, float(shift), float(p["mean"]), mean_recent))
    psis = np.array([r.psi for r in results])
    # NaN when a sensor stopped reporting: then the overall shift is undefined, which
    # counts as drift (the model would see only filled-in values)
    shifts = np.array([r.mean_shift for r in results])
    return DriftReport(
        overall_psi=float(psis.mean()),
        max_psi=float(psis.max()),
        overall_mean_shift=float(shifts.mean()),
        threshold=float(threshold),
        rows=len(X),
        sensors=results,
        metric=metric,
    )


def _bin_counts(values: np.ndarray, inner_edges: np.ndarray) -> np.ndarray:
    # bins (-inf, e0], (e0, e1], ..., (e_last, inf)
    idx = np.searchsorted(inner_edges, values, side="left")
    return np.bincount(idx, minlength=len(inner_edges) + 1).astype(np.float64)


def _check_profile(profile: dict[str, Any]) -> None:
    ok = (
        isinstance(profile, dict)
        and profile.get("format") == PROFILE_FORMAT
        and isinstance(profile.get("sensors"), dict)
        and profile["sensors"]
        and all(
            len(p.get("fractions", ())) == len(p.get("edges", ())) + 2
            for p in profile["sensors"].values()
        )
    )
    if not ok:
        raise DataValidationError(
            "not a SensorGuard training profile",
            "build one with sensorguard.pipelines.drift.training_profile",
        )


def _metric_safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "_-. /" else "_" for c in name)
