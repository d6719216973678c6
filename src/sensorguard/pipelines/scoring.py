"""Batch scoring: load a fitted model and score readings into a per-reading table.

The CLI (`sensorguard score`, `sensorguard evaluate`) and the quality gate are thin
wiring over these functions.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sensorguard.detectors.base import BaseDetector, DetectionResult, load_detector
from sensorguard.errors import DataValidationError, SchemaMismatchError


def load_model(ref: str | Path) -> BaseDetector:
    """A fitted detector from a folder written by ``Detector.save`` or from the registry
    (``models:/NAME@ALIAS`` or ``models:/NAME/VERSION``)."""
    text = str(ref)
    if text.startswith("models:/"):
        from sensorguard.registry import load_model_uri

        return load_model_uri(text).detector
    path = Path(text)
    if not path.exists():
        raise DataValidationError(
            f"model folder {path} does not exist",
            "pass a folder saved by a detector, or a registry URI such as "
            "models:/sensor-failure-detector@production",
        )
    return load_detector(path)


def _asset_blocks(readings: Any) -> list[np.ndarray]:
    """Row positions of each asset (readings are sorted by asset then time)."""
    n = len(readings)
    asset = getattr(readings, "asset", None)
    if asset is None or n == 0:
        return [np.arange(n)]
    codes, _ = pd.factorize(asset, sort=False)
    if (np.diff(codes) >= 0).all() or len(np.unique(codes)) == 1:
        # contiguous blocks: slice boundaries instead of fancy indexing
        edges = np.flatnonzero(np.diff(codes)) + 1
        bounds = np.concatenate([[0], edges, [n]])
        return [np.arange(a, b) for a, b in itertools.pairwise(bounds)]
    return [np.flatnonzero(codes == c) for c in range(codes.max() + 1)]


def check_sensor_columns(detector: BaseDetector, readings: Any) -> None:
    """A sensor the model needs that the readings hold as text is an error saying so
    (column, first non-numeric value and its row), not a "missing sensor"."""
    schema = getattr(detector, "schema_", None)
    frame = getattr(readings, "frame", None)
    if schema is None or frame is None:
        return
    have = set(readings.sensors)
    text = [s for s in schema.sensors if s not in have and s in frame.columns]
    if not text:
        return
    col = text[0]
    example = getattr(readings, "text_columns", {}).get(col)
    detail = f": first non-numeric value {example}" if example else ""
    more = f" (also not numeric: {', '.join(text[1:])})" if len(text) > 1 else ""
    raise SchemaMismatchError(
        f"{readings.source}: sensor column '{col}' is present but not numeric{detail}{more}",
        f"the model needs numbers in '{col}': correct the text cells, or leave them empty "
        "for missing readings",
    )


def detect_readings(detector: BaseDetector, readings: Any) -> DetectionResult:
    """``detector.detect`` asset by asset (smoothing and alarms never cross assets),
    results in the readings' row order."""
    check_sensor_columns(detector, readings)
    X = readings.X
    blocks = _asset_blocks(readings)
    if len(blocks) == 1:
        return detector.detect(X)
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
    )


def result_frame(result: DetectionResult, readings: Any, top_k: int = 3) -> pd.DataFrame:
    """The per-reading output table: time [, asset], score, is_anomaly, state,
    top_sensors [, label]."""
    out = result.to_frame(k=top_k)
    out.insert(0, readings.time_column, readings.times.to_numpy())
    if readings.asset_column is not None:
        out.insert(1, readings.asset_column, readings.asset.to_numpy())
    if readings.label_column is not None:
        out[readings.label_column] = readings.status.to_numpy()
    return out


def score_readings(detector: BaseDetector, readings: Any, top_k: int = 3) -> pd.DataFrame:
    """Score readings: one row per reading with ``score, is_anomaly, state,
    top_sensors`` (plus the time, asset and label columns of the input when present)."""
    return result_frame(detect_readings(detector, readings), readings, top_k=top_k)


def alarm_events(result: DetectionResult, readings: Any, top_k: int = 3) -> list[dict[str, Any]]:
    """Alarm events (runs of ``is_anomaly`` per asset) with start, end, peak score and
    the sensors contributing most over the whole event."""
    from sensorguard.evaluation.events import events_from_flags

    out: list[dict[str, Any]] = []
    names = np.asarray(result.sensors, dtype=object)
    times = readings.times.reset_index(drop=True)
    asset = None if readings.asset is None else readings.asset.reset_index(drop=True)
    for ix in _asset_blocks(readings):
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
