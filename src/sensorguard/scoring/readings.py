"""Readings-level batch scoring: a fitted detector over validated readings.

The CLI (``sensorguard score``, ``sensorguard evaluate``), the quality gate and the
scoring of stored windows are thin wiring over these functions. Readings of several
assets are scored asset by asset (smoothing and alarms never cross assets); results
come back in the readings' row order.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from sensorguard.data.readings import Readings
from sensorguard.detectors.base import BaseDetector, DetectionResult
from sensorguard.detectors.events import events_from_flags
from sensorguard.errors import DataValidationError, SchemaMismatchError


def check_sensor_columns(detector: BaseDetector, readings: Readings) -> None:
    """A sensor the model needs that the readings hold as text is an error saying so
    (column, first non-numeric value and its row), not a "missing sensor"."""
    schema = getattr(detector, "schema_", None)
    if schema is None:
        return
    frame = readings.frame
    have = set(readings.sensors)
    text = [s for s in schema.sensors if s not in have and s in frame.columns]
    if not text:
        return
    col = text[0]
    example = readings.text_columns.get(col)
    detail = f": first non-numeric value {example}" if example else ""
    more = f" (also not numeric: {', '.join(text[1:])})" if len(text) > 1 else ""
    raise SchemaMismatchError(
        f"{readings.source}: sensor column '{col}' is present but not numeric{detail}{more}",
        f"the model needs numbers in '{col}': correct the text cells, or leave them empty "
        "for missing readings",
    )


def check_finite(readings: Readings) -> None:
    """An infinite sensor value is an error naming the cell by source, sensor, time and
    asset (it is no measurement; see docs/detector.md, numerically safe scoring)."""
    if not readings.sensors or len(readings) == 0:
        return
    values = readings.X.to_numpy(dtype=np.float64, na_value=np.nan)
    inf = np.isinf(values)
    if not inf.any():
        return
    row, col = (int(v) for v in np.argwhere(inf)[0])
    asset = readings.asset
    where = f"at {readings.times.iloc[row]}"
    if asset is not None:
        where += f" of asset {asset.iloc[row]}"
    raise DataValidationError(
        f"{readings.source}: sensor '{readings.sensors[col]}' has an infinite value "
        f"{values[row, col]} {where} ({int(inf.sum())} infinite value(s) in total)",
        "infinite readings are not measurements: use an empty cell for a missing reading "
        "or the value the sensor reported",
    )


def detect_readings(detector: BaseDetector, readings: Readings) -> DetectionResult:
    """``detector.detect`` asset by asset (smoothing and alarms never cross assets),
    results in the readings' row order."""
    check_sensor_columns(detector, readings)
    check_finite(readings)
    X = readings.X
    blocks = readings.asset_blocks()
    bind = getattr(detector, "for_asset", None)  # per-asset calibration (asset-calibrated)
    if bind is not None and readings.asset is not None:
        asset = readings.asset.to_numpy()
        parts = [bind(asset[ix[0]]).detect(X.iloc[ix]) for ix in blocks]
    elif len(blocks) == 1:
        return detector.detect(X)
    else:
        parts = [detector.detect(X.iloc[ix]) for ix in blocks]
    order = np.concatenate(blocks)
    inv = np.empty_like(order)
    inv[order] = np.arange(order.size)
    return DetectionResult(
        score=np.concatenate([p.score for p in parts])[inv],
        is_anomaly=np.concatenate([p.is_anomaly for p in parts])[inv],
        state=np.concatenate([p.state for p in parts])[inv],
        contributions=np.concatenate([p.contributions for p in parts])[inv],
        sensors=parts[0].sensors,
        threshold=parts[0].threshold,
        blame=np.concatenate([p.blame for p in parts])[inv]  # type: ignore[misc]
        if all(p.blame is not None for p in parts)
        else None,
    )


def result_frame(result: DetectionResult, readings: Readings, top_k: int = 3) -> pd.DataFrame:
    """The per-reading output table: time [, asset], score, is_anomaly, state,
    top_sensors [, label]."""
    out = result.to_frame(k=top_k)
    out.insert(0, readings.time_column, readings.times.to_numpy())
    if readings.asset_column is not None:
        asset = readings.asset
        assert asset is not None
        out.insert(1, readings.asset_column, asset.to_numpy())
    status = readings.status
    if readings.label_column is not None and status is not None:
        out[readings.label_column] = status.to_numpy()
    return out


def score_readings(detector: BaseDetector, readings: Readings, top_k: int = 3) -> pd.DataFrame:
    """Score readings: one row per reading with ``score, is_anomaly, state,
    top_sensors`` (plus the time, asset and label columns of the input when present)."""
    return result_frame(detect_readings(detector, readings), readings, top_k=top_k)


def alarm_events(
    result: DetectionResult, readings: Readings, top_k: int = 3
) -> list[dict[str, Any]]:
    """Alarm events (runs of ``is_anomaly`` per asset) with start, end, peak score and
    the sensors contributing most over the whole event."""
    out: list[dict[str, Any]] = []
    names = np.asarray(result.sensors, dtype=object)
    times = readings.times.reset_index(drop=True)
    asset = None if readings.asset is None else readings.asset.reset_index(drop=True)
    for ix in readings.asset_blocks():
        flags = result.is_anomaly[ix]
        for ev in events_from_flags(flags, times.iloc[ix].reset_index(drop=True)):
            rows = ix[ev.start_idx : ev.end_idx + 1]
            share = result.contributions[rows].mean(axis=0)
            top = names[np.argsort(-share, kind="stable")[: max(1, top_k)]]
            rec: dict[str, Any] = {
                "start": ev.start,
                "end": ev.end,
                "readings": ev.n_readings,
                "peak_score": float(result.score[rows].max()),
                "top_sensors": [str(s) for s in top],
            }
            if asset is not None:
                rec["asset"] = str(asset.iloc[rows[0]])
            out.append(rec)
    out.sort(key=lambda r: r["start"])
    return out
