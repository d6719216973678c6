"""Regime change: readings that leave the training range from the first reading on.

When a machine moved to a new operating point, a sensor was replaced or recalibrated,
or the model was trained on another regime, every reading looks anomalous to a
detector and scoring raises one alarm over the whole file. That is not a failure to
report but a model that does not apply: the verdict here says so, names the sensors
that moved and hints to retrain. One function decides it for every caller (batch
scoring, the quality gate, the live service), from the per-sensor training range:
the drift profile stored with a training run (``ranges_from_profile``) or the
training readings themselves (``ranges_from_training``).

Rule (``regime_check``): a sensor **moved** when at least ``head_share`` (90 %) of the
first ``head`` readings *and* at least ``share`` (50 %) of all readings lie outside its
training range widened by ``tolerance`` (5 %) of that range on each side (a sensor
constant in training gets ``tolerance · max(|value|, 1)``). Any moved sensor makes the
verdict ``regime_change``. A failure begins after the data started (the head is normal),
so it does not trigger the verdict; a sensor that is broken from the first reading does,
and the hint names it. Measured on the real suite (docs/quality.md): SMD machine 3-4,
whose test split leaves the training range (88 % of its rows), gets the verdict;
no Tennessee Eastman run, NAB file, RoSA healthy run or hydraulic cycle stream does.

``suppress_head_alarms`` removes the alarms that were already open within the head of
a regime-change series (they are the regime change, reported once by the verdict);
later alarms are kept.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from sensorguard.errors import DataValidationError

OK = "ok"
REGIME_CHANGE = "regime_change"
RETRAIN_HINT = (
    "the readings left the training range from the first reading on: the machine may run "
    "at a new operating point, a sensor may have been replaced, or the model was trained "
    "on another regime; check the named sensors, then retrain on recent normal readings"
)


@dataclass(frozen=True)
class SensorShift:
    sensor: str
    train_min: float
    train_max: float
    median: float  # median of the checked readings
    share_out: float  # of all checked readings
    share_out_head: float  # of the first ``head`` readings


@dataclass
class RegimeVerdict:
    verdict: str  # OK or REGIME_CHANGE
    rows: int
    head: int
    sensors: list[SensorShift] = field(default_factory=list)  # the sensors that moved
    hint: str | None = None

    @property
    def regime_change(self) -> bool:
        return self.verdict == REGIME_CHANGE

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "rows": self.rows,
            "head": self.head,
            "sensors": [asdict(s) for s in self.sensors],
            "hint": self.hint,
        }

    def summary(self) -> str:
        if not self.regime_change:
            return "readings within the training range"
        names = ", ".join(s.sensor for s in self.sensors[:5])
        more = f" (+{len(self.sensors) - 5} more)" if len(self.sensors) > 5 else ""
        return f"regime change: {names}{more} outside the training range from the first reading"


def ranges_from_training(X: pd.DataFrame) -> dict[str, tuple[float, float]]:
    """Per-sensor ``(min, max)`` of training readings (NaN ignored)."""
    out: dict[str, tuple[float, float]] = {}
    for col in X.columns:
        v = pd.to_numeric(X[col], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        v = v[np.isfinite(v)]
        if v.size:
            out[str(col)] = (float(v.min()), float(v.max()))
    return out


def ranges_from_profile(profile: dict[str, Any]) -> dict[str, tuple[float, float]]:
    """Per-sensor ``(min, max)`` from a training (drift) profile: ``sensors[s]`` holds
    ``min`` and ``max``, as stored with every training run."""
    try:
        return {str(s): (float(d["min"]), float(d["max"])) for s, d in profile["sensors"].items()}
    except (KeyError, TypeError, ValueError):
        raise DataValidationError(
            "the training profile has no per-sensor min/max",
            "retrain the model so its training profile records the sensor ranges",
        ) from None


def regime_check(
    X: pd.DataFrame | np.ndarray,
    ranges: dict[str, tuple[float, float]],
    *,
    sensors: list[str] | None = None,
    head: int = 60,
    head_share: float = 0.9,
    share: float = 0.5,
    tolerance: float = 0.05,
) -> RegimeVerdict:
    """The verdict for readings ``X`` (rows in time order) against training ``ranges``.

    ``X`` is a frame (columns matched by name; sensors without a range are not judged)
    or an array with columns in the order of ``sensors``."""
    if isinstance(X, pd.DataFrame):
        names = [str(c) for c in X.columns if str(c) in ranges]
        vals = X[names].to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        if sensors is None:
            raise DataValidationError("an array needs the sensor names", "pass sensors=[...]")
        vals = np.asarray(X, dtype=np.float64)
        if vals.ndim != 2 or vals.shape[1] != len(sensors):
            raise DataValidationError(f"expected {len(sensors)} sensor columns, got {vals.shape}")
        keep = [j for j, s in enumerate(sensors) if s in ranges]
        names = [sensors[j] for j in keep]
        vals = vals[:, keep]
    n = vals.shape[0]
    h = min(int(head), n)
    if n == 0 or not names:
        return RegimeVerdict(OK, n, h)
    lo = np.array([ranges[s][0] for s in names])
    hi = np.array([ranges[s][1] for s in names])
    span = hi - lo
    band = np.where(span > 0, span, np.maximum(np.abs(hi), 1.0)) * float(tolerance)
    lower, upper = lo - band, hi + band
    with np.errstate(invalid="ignore"):
        out = (vals < lower) | (vals > upper)  # NaN compares False: a gap is not out
    valid = np.isfinite(vals)
    n_all = np.maximum(valid.sum(axis=0), 1)
    n_head = np.maximum(valid[:h].sum(axis=0), 1)
    share_all = out.sum(axis=0) / n_all
    share_head = out[:h].sum(axis=0) / n_head
    moved = (share_head >= head_share) & (share_all >= share)
    shifts = []
    for j in np.flatnonzero(moved)[np.argsort(-share_all[moved], kind="stable")]:
        col = vals[:, j]
        shifts.append(
            SensorShift(
                sensor=names[j],
                train_min=float(lo[j]),
                train_max=float(hi[j]),
                median=float(np.nanmedian(col)) if valid[:, j].any() else float("nan"),
                share_out=float(share_all[j]),
                share_out_head=float(share_head[j]),
            )
        )
    if not shifts:
        return RegimeVerdict(OK, n, h)
    return RegimeVerdict(REGIME_CHANGE, n, h, shifts, RETRAIN_HINT)


def suppress_head_alarms(flags: Any, verdict: RegimeVerdict) -> tuple[np.ndarray, int]:
    """Flags without the alarms already open within the verdict's head (when it is a
    regime change); returns the new flags and the number of alarm rows removed."""
    f = np.asarray(flags).astype(bool).copy()
    if not verdict.regime_change or f.size == 0:
        return f, 0
    removed = 0
    d = np.diff(np.concatenate([[0], f.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(d == 1), np.flatnonzero(d == -1)
    for s, e in zip(starts, ends, strict=True):
        if s < verdict.head:
            f[s:e] = False
            removed += int(e - s)
    return f, removed
