"""The sensor schema of a fitted model: which sensors, in which order, and how gaps fill.

``SensorSchema.prepare`` turns readings (a DataFrame with named sensor columns, or an
array in schema order) into the float64 array every detector computes on. Its rules: a
missing sensor is an error naming it, column order never matters, extra columns are
ignored or refused by policy, a non-numeric value is an error naming column and row, an
infinite value is an error naming the cell, and gaps (NaN) follow ``MISSING_POLICY``.
The schema is never written to while scoring (the predictor prepares batches from worker
threads).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from sensorguard.errors import DataValidationError, SchemaMismatchError

MISSING_POLICY = "ffill-then-median"
"""Sensor dropouts (NaN) are filled with the sensor's last valid value in the same batch,
and with the median of the training data when there is none. The policy and the medians
are stored with the fitted model."""

EXTRA_COLUMNS_POLICIES = ("ignore", "error")


@dataclass
class SensorSchema:
    """The sensors a model was trained on, in order, plus how gaps are filled.

    ``prepare`` enforces it when scoring: a missing sensor is an error naming it, column
    order never matters, and extra columns are ignored (``extra_columns="ignore"``, the
    default; :meth:`unused_columns` names them) or refused (``"error"``). The schema is
    never written to while scoring: the predictor prepares batches from worker threads.
    """

    sensors: list[str]
    fill_values: list[float]
    missing_policy: str = MISSING_POLICY
    extra_columns: str = "ignore"

    @classmethod
    def from_training(cls, X: pd.DataFrame, extra_columns: str = "ignore") -> SensorSchema:
        frame = _as_frame(X)
        values = _numeric_block(frame, list(frame.columns))
        if values.shape[0] == 0:
            raise DataValidationError("no readings to train on", "provide at least one row")
        with np.errstate(all="ignore"):
            med = np.nanmedian(values, axis=0) if values.size else np.zeros(values.shape[1])
        empty = [str(c) for c, m in zip(frame.columns, med, strict=True) if np.isnan(m)]
        if empty:
            raise DataValidationError(
                f"sensor column(s) {', '.join(empty)} contain no values",
                "drop the empty column(s) or provide readings for them",
            )
        return cls(
            sensors=[str(c) for c in frame.columns],
            fill_values=[float(m) for m in med],
            extra_columns=extra_columns,
        )

    def prepare(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        """Return a float64 ``(n, n_sensors)`` array in schema order, gaps filled."""
        return self._fill(self.arrange(X))

    def arrange(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        """A new float64 ``(n, n_sensors)`` array in schema order, gaps left as NaN (for
        callers that fill them from earlier readings, e.g. live scoring)."""
        if isinstance(X, np.ndarray):
            arr = np.asarray(X, dtype=np.float64)
            if arr.ndim != 2 or arr.shape[1] != len(self.sensors):
                raise SchemaMismatchError(
                    f"expected an array with {len(self.sensors)} sensor columns "
                    f"({', '.join(self.sensors)}), got shape {arr.shape}",
                    "pass a DataFrame with named sensor columns",
                )
            arr = arr.copy()
            _refuse_infinite(arr, self.sensors)
            return arr
        frame = _as_frame(X)
        cols = [str(c) for c in frame.columns]
        if cols != [c for c in frame.columns]:
            frame = frame.set_axis(cols, axis=1)
        present = set(cols)
        missing = [s for s in self.sensors if s not in present]
        if missing:
            raise SchemaMismatchError(
                f"missing sensor column(s): {', '.join(missing)}",
                f"the model was trained on: {', '.join(self.sensors)}",
                missing=missing,
            )
        known = set(self.sensors)
        extra = [c for c in cols if c not in known]
        if extra and self.extra_columns == "error":
            raise SchemaMismatchError(
                f"unexpected column(s): {', '.join(extra)}",
                "drop them, or use a model saved with extra_columns='ignore'",
                extra=extra,
            )
        arr = _numeric_block(frame, self.sensors)
        _refuse_infinite(arr, self.sensors)
        return arr

    def unused_columns(self, X: pd.DataFrame | np.ndarray) -> list[str]:
        """The columns of ``X`` that are not sensors of this schema (ignored by
        ``prepare`` unless ``extra_columns="error"``); none for an array."""
        if isinstance(X, np.ndarray):
            return []
        known = set(self.sensors)
        return [str(c) for c in _as_frame(X).columns if str(c) not in known]

    def _fill(self, arr: np.ndarray) -> np.ndarray:
        mask = np.isnan(arr)
        if not mask.any():
            return arr
        # forward fill along time, column by column, vectorised through index propagation
        n = arr.shape[0]
        idx = np.where(~mask, np.arange(n)[:, None], 0)
        np.maximum.accumulate(idx, axis=0, out=idx)
        filled = arr[idx, np.arange(arr.shape[1])[None, :]]
        still = np.isnan(filled)
        if still.any():
            fill = np.broadcast_to(np.asarray(self.fill_values, dtype=np.float64), arr.shape)
            filled[still] = fill[still]
        return filled

    def to_dict(self) -> dict[str, Any]:
        return {
            "sensors": list(self.sensors),
            "fill_values": list(self.fill_values),
            "missing_policy": self.missing_policy,
            "extra_columns": self.extra_columns,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SensorSchema:
        return cls(
            sensors=list(d["sensors"]),
            fill_values=[float(v) for v in d["fill_values"]],
            missing_policy=d.get("missing_policy", MISSING_POLICY),
            extra_columns=d.get("extra_columns", "ignore"),
        )


def _refuse_infinite(arr: np.ndarray, sensors: list[str]) -> None:
    """An infinite reading is an error naming the cell. It is no measurement (a missing
    value would hide a broken sensor, a capped one would invent a number); huge finite
    values (1e308, a PLC's 3.4e38) are scored and alarm as what they are."""
    inf = np.isinf(arr)
    if not inf.any():
        return
    row, col = (int(v) for v in np.argwhere(inf)[0])
    raise DataValidationError(
        f"sensor '{sensors[col]}' has an infinite value {arr[row, col]} at row {row} of the "
        f"scored readings (counted from 0; {int(inf.sum())} infinite value(s) in total)",
        "infinite readings are not measurements: send an empty cell (a missing reading) "
        "or the value the sensor reported",
    )


def _as_frame(X: Any) -> pd.DataFrame:
    if isinstance(X, pd.DataFrame):
        return X
    if isinstance(X, np.ndarray):
        arr = np.atleast_2d(X)
        return pd.DataFrame(arr, columns=[f"s{i}" for i in range(arr.shape[1])])
    raise DataValidationError(
        f"expected a pandas DataFrame of sensor columns, got {type(X).__name__}",
        "load readings with sensorguard.data.load_readings",
    )


def _numeric_block(frame: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """Columns as float64; a non-numeric value is an error naming column and row."""
    if all(frame[c].dtype.kind in "fiu" for c in columns):
        # one block copy: ~4x faster than filling a C-ordered array column by column
        block = frame[columns].to_numpy(dtype=np.float64, na_value=np.nan)
        if not (block.flags.owndata and block.flags.writeable):
            block = block.copy(order="C")  # never hand out a view of the caller's frame
        return np.ascontiguousarray(block)
    out = np.empty((len(frame), len(columns)), dtype=np.float64)
    for j, col in enumerate(columns):
        s = frame[col]
        if s.dtype.kind in "fiu":
            out[:, j] = s.to_numpy(dtype=np.float64, na_value=np.nan)
            continue
        if s.dtype.kind == "b":
            out[:, j] = s.to_numpy(dtype=np.float64)
            continue
        conv = pd.to_numeric(s, errors="coerce")
        bad = conv.isna() & s.notna()
        if bad.any():
            pos = int(np.flatnonzero(bad.to_numpy())[0])
            raise DataValidationError(
                f"sensor column '{col}' has a non-numeric value {s.iloc[pos]!r} "
                f"at row {pos} ({int(bad.sum())} such value(s) in total)",
                "sensor values must be numbers; use an empty cell for a missing reading",
            )
        out[:, j] = conv.to_numpy(dtype=np.float64, na_value=np.nan)
    return out
