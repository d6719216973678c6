"""The readings value type: a validated batch of sensor readings, and the training checks.

:class:`Readings` is what every loader returns and every detector, store and report takes:
a frame sorted by (asset, time) with its column roles named. :meth:`Readings.from_frame`
runs the validation procedure of :mod:`sensorguard.data.validate` (the rules are listed
there and in ``docs/data.md``); :func:`validate_for_training` adds the checks that only
matter for training.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from sensorguard.data.validate import _MAX_LISTED, _list, label_to_binary, validate_frame
from sensorguard.errors import DataValidationError

__all__ = [
    "DEFAULT_MIN_TRAIN_ROWS",
    "MAX_TRAIN_SENSORS",
    "Readings",
    "check_min_rows",
    "label_to_binary",
    "row_blocks",
    "validate_for_training",
]

DEFAULT_MIN_TRAIN_ROWS = 50
MAX_TRAIN_SENSORS = 2_000
"""Sensors per trained model (see :func:`validate_for_training` for the reason)."""


@dataclass
class Readings:
    """A validated batch of readings, sorted by (asset, time).

    ``frame`` holds the time column (datetime64), the asset and label columns when
    present, the sensor columns (float64) and any kept non-sensor text columns.
    """

    frame: pd.DataFrame
    sensors: list[str]
    time_column: str
    label_column: str | None = None
    asset_column: str | None = None
    source: str = "<frame>"
    notes: list[str] = field(default_factory=list)
    text_columns: dict[str, str] = field(default_factory=dict)
    """Columns read as text, not sensors: column -> its first non-numeric value and where
    (e.g. ``"'abc' at row 1 (line 2)"``), to explain why a model cannot use them."""

    def __len__(self) -> int:
        return len(self.frame)

    def __repr__(self) -> str:
        return (
            f"Readings(source={self.source!r}, rows={len(self)}, "
            f"sensors={len(self.sensors)}, label={self.label_column!r}, "
            f"asset={self.asset_column!r})"
        )

    @cached_property
    def X(self) -> pd.DataFrame:
        """The sensor columns, float64, in ``sensors`` order."""
        return self.frame[self.sensors]

    @property
    def times(self) -> pd.Series:
        return self.frame[self.time_column]

    @property
    def status(self) -> pd.Series | None:
        """The raw label column, or None."""
        return None if self.label_column is None else self.frame[self.label_column]

    @cached_property
    def y(self) -> np.ndarray | None:
        """Labels as int64 0/1 (NORMAL -> 0, BROKEN/RECOVERING -> 1), or None."""
        if self.label_column is None:
            return None
        return label_to_binary(self.frame[self.label_column], self.label_column, self.source)

    @property
    def asset(self) -> pd.Series | None:
        return None if self.asset_column is None else self.frame[self.asset_column]

    @property
    def assets(self) -> list[str]:
        """Distinct asset ids in row order, i.e. sorted ([] without an asset column)."""
        if self.asset_column is None:
            return []
        return [str(a) for a in pd.unique(self.frame[self.asset_column])]

    def asset_blocks(self) -> list[np.ndarray]:
        """Row positions of each asset, assets in row order (one block without an asset
        column). Scoring runs block by block: smoothing and alarms never cross assets."""
        return row_blocks(None if self.asset_column is None else self.asset, len(self))

    @property
    def extra_columns(self) -> list[str]:
        """Columns kept in ``frame`` that are neither sensors nor time/label/asset."""
        roles = {self.time_column, self.label_column, self.asset_column, *self.sensors}
        return [c for c in self.frame.columns if c not in roles]

    def slice(self, start: int | None, stop: int | None) -> Readings:
        """Rows ``start:stop`` by position, as new Readings (same columns and notes)."""
        part = self.frame.iloc[start:stop].reset_index(drop=True)
        return replace(self, frame=part, notes=list(self.notes))

    def for_asset(self, asset: str) -> Readings:
        """The rows of one asset (requires an asset column)."""
        if self.asset_column is None:
            raise DataValidationError(
                f"{self.source}: no asset column", "pass --asset-column to name it"
            )
        mask = self.frame[self.asset_column].astype(str) == str(asset)
        if not mask.any():
            raise DataValidationError(
                f"{self.source}: no rows for asset {asset!r}",
                f"assets present: {', '.join(self.assets[:_MAX_LISTED])}",
            )
        part = self.frame.loc[mask].reset_index(drop=True)
        return replace(self, frame=part, notes=list(self.notes))

    def summary(self) -> dict[str, Any]:
        """Plain facts for reports and the ``validate`` command."""
        times = self.times
        out: dict[str, Any] = {
            "source": self.source,
            "rows": len(self),
            "start": None
            if len(self) == 0
            else str(times.iloc[0] if self.asset_column is None else times.min()),
            "end": None
            if len(self) == 0
            else str(times.iloc[-1] if self.asset_column is None else times.max()),
            "sensors": list(self.sensors),
            "time_column": self.time_column,
            "label_column": self.label_column,
            "asset_column": self.asset_column,
            "assets": self.assets,
            "missing_fraction": float(self.X.isna().to_numpy().mean())
            if self.sensors and len(self)
            else 0.0,
            "notes": list(self.notes),
        }
        y = self.y
        if y is not None:
            out["abnormal_rows"] = int(y.sum())
            out["abnormal_fraction"] = float(y.mean()) if len(y) else 0.0
            out["status_counts"] = {
                str(k): int(v) for k, v in self.frame[self.label_column].value_counts().items()
            }
        return out

    @classmethod
    def from_frame(
        cls,
        df: pd.DataFrame,
        *,
        time_column: str | None = None,
        label_column: str | None = None,
        asset_column: str | None = None,
        ignore_columns: Iterable[str] = (),
        source: str = "<frame>",
        duplicates: str = "error",
        min_rows: int | None = None,
        row_offset: int = 1,
        line_offset: int | None = None,
    ) -> Readings:
        """Validate a raw table into Readings (see the module docstring for the rules).

        ``row_offset`` is the number given to the first row in messages; loaders of
        text files pass ``line_offset`` so messages also quote the line in the file.
        ``min_rows`` only checks the row count; use :func:`validate_for_training` for
        the full training checks.
        """
        v = validate_frame(
            df,
            time_column=time_column,
            label_column=label_column,
            asset_column=asset_column,
            ignore_columns=ignore_columns,
            source=source,
            duplicates=duplicates,
            row_offset=row_offset,
            line_offset=line_offset,
        )
        readings = cls(
            frame=v.frame,
            sensors=v.sensors,
            time_column=v.time_column,
            label_column=v.label_column,
            asset_column=v.asset_column,
            source=source,
            notes=v.notes,
            text_columns=v.text_columns,
        )
        if min_rows is not None:
            check_min_rows(readings, min_rows)
        return readings


def row_blocks(groups: Any, n: int, *, sort: bool = False) -> list[np.ndarray]:
    """Row positions per group (e.g. asset id), each block in row order.

    Groups come in order of first appearance, or of their sorted values with ``sort``;
    ``groups=None`` is one block of all ``n`` rows. Contiguous groups (readings sorted
    by asset) are cut at their boundaries instead of searched."""
    if groups is None or n == 0:
        return [np.arange(n)]
    values = np.asarray(groups)
    if values.shape[0] != n:
        raise ValueError(f"{values.shape[0]} group labels for {n} rows")
    codes, _ = pd.factorize(values, sort=sort, use_na_sentinel=False)
    if (np.diff(codes) >= 0).all():
        edges = np.flatnonzero(np.diff(codes)) + 1
        bounds = np.concatenate([[0], edges, [n]])
        return [np.arange(a, b) for a, b in itertools.pairwise(bounds)]
    return [np.flatnonzero(codes == c) for c in range(int(codes.max()) + 1)]


def check_min_rows(readings: Readings, min_rows: int) -> None:
    if len(readings) < min_rows:
        raise DataValidationError(
            f"{readings.source}: only {len(readings)} reading(s); at least {min_rows} are needed",
            "provide a longer history of readings",
        )


def validate_for_training(
    readings: Readings, *, min_rows: int = DEFAULT_MIN_TRAIN_ROWS
) -> Readings:
    """Checks that only matter for training: enough rows, no empty or constant sensor.

    Returns ``readings`` unchanged so it can be chained.
    """
    check_min_rows(readings, min_rows)
    k, n = len(readings.sensors), len(readings)
    if k > MAX_TRAIN_SENSORS:
        raise DataValidationError(
            f"{readings.source}: {k:,} sensors; training takes at most "
            f"{MAX_TRAIN_SENSORS:,} sensors per model",
            "the detectors learn how sensors move together (a sensors x sensors matrix, "
            "~5.9 GB and no answer after 120 s at 10,000): train one model per subsystem "
            "(--ignore-columns, or one file per subsystem)",
        )
    if k >= n:
        raise DataValidationError(
            f"{readings.source}: {k:,} sensors but only {n:,} readings: training needs more "
            "readings than sensors",
            "with fewer readings than sensors, how the sensors move together cannot be "
            "learned (the covariance is singular); provide a longer history or fewer sensors",
        )
    X = readings.X.to_numpy(dtype=np.float64)
    present = ~np.isnan(X)
    empty = [s for s, n in zip(readings.sensors, present.sum(axis=0), strict=True) if n == 0]
    if empty:
        raise DataValidationError(
            f"{readings.source}: sensor column(s) with no values: {_list(empty)}",
            f"drop them with --ignore-columns {','.join(empty)}",
        )
    with np.errstate(all="ignore"):
        lo = np.nanmin(X, axis=0)
        hi = np.nanmax(X, axis=0)
    const = [s for s, a, b in zip(readings.sensors, lo, hi, strict=True) if a == b]
    if const:
        raise DataValidationError(
            f"{readings.source}: sensor column(s) never change: "
            + ", ".join(f"'{s}' = {lo[readings.sensors.index(s)]:g}" for s in const[:_MAX_LISTED]),
            "a constant sensor carries no information (zero variance); drop it with "
            f"--ignore-columns {','.join(const)}",
        )
    return readings
