"""The results of the training nodes, and what a run records of them (no MLflow here).

Split from :mod:`.training` so that module holds the nodes and the wiring only. The
records — files, params, metrics, tags — are computed from results the nodes already
have (:class:`TrainingProfile`, :class:`Holdout`), so nothing is scored again, and are
handed to :func:`sensorguard.registry.runs.log_training_run` as plain values.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sensorguard import __version__
from sensorguard.data import Readings
from sensorguard.detectors.base import BaseDetector, DetectionResult
from sensorguard.jsonsafe import finite_metrics
from sensorguard.pipelines.plots import profiles_plot, score_plot
from sensorguard.registry import tags as T
from sensorguard.registry.runs import HOLDOUT_ARTIFACT


@dataclass
class TrainingProfile:
    """What the training rows say about the fitted detector (they are scored once)."""

    result: DetectionResult
    """Detection over the whole training part (normal and abnormal rows), per asset."""
    state_profiles: dict[str, Any]
    """``learned`` (the detector's own description) plus the per-state sensor profiles."""
    failure_types: dict[str, Any]
    drift: dict[str, Any]
    """The drift profile of the normal training rows (per-sensor mean/std/min/max/bins)."""
    normal_rows: int


@dataclass
class Holdout:
    """The held-out tail scored once: its metrics (for the run and the gate) and result."""

    readings: Readings
    evaluation: dict[str, Any]
    result: DetectionResult


EVAL_METRIC_KEYS = (
    "precision",
    "recall",
    "f1",
    "far",
    "mar",
    "events_total",
    "events_detected",
    "events_missed",
    "event_recall",
    "false_alarm_events",
    "false_alarms_per_day",
    "mean_detection_delay_s",
)
MAX_HOLDOUT_ARTIFACT_ROWS = 500_000
"""Bigger held-out splits are not stored with the run; gate them with ``--data``."""


def _failure_rows(profiles: dict[str, Any], sensors: list[str]) -> list[tuple[str, np.ndarray]]:
    rows = []
    for t in profiles.get("types") or []:
        sig = t["signature"]
        modes = t.get("labelled_modes") or {}
        label = "+".join(modes) if modes else f"type {t['type']}"
        rows.append((f"{label} (n={t['episodes']})", np.array([float(sig[s]) for s in sensors])))
    return rows


def write_run_files(
    out: Path,
    detector: BaseDetector,
    detector_name: str,
    readings: Readings,
    train_part: Readings,
    profile: TrainingProfile,
    holdout: Holdout | None,
) -> None:
    """The run's files: profiles, schema, plots and the held-out data."""
    (out / "state_profiles.json").write_text(json.dumps(profile.state_profiles, indent=2))
    (out / "failure_types.json").write_text(
        json.dumps(profile.failure_types, indent=2, default=float)
    )
    schema = {
        **detector.schema_.to_dict(),
        "time_column": readings.time_column,
        "label_column": readings.label_column,
        "asset_column": readings.asset_column,
        "detector": detector_name,
    }
    (out / "schema.json").write_text(json.dumps(schema, indent=2))
    profiles_plot(
        out / "profiles.png",
        detector.sensors,
        [
            (f"state {s['state']} ({s['share']:.0%})", np.asarray(s["z"]))
            for s in profile.state_profiles["states"]
        ],
        _failure_rows(profile.failure_types, detector.sensors),
    )
    # the plot reuses the two detections (training part, held-out tail) instead of a third
    pieces = [(train_part, profile.result)]
    if holdout is not None:
        pieces.append((holdout.readings, holdout.result))
    labels = None if readings.y is None else np.concatenate([np.asarray(r.y) for r, _ in pieces])
    score_plot(
        out / "score_over_time.png",
        pd.concat([r.times for r, _ in pieces], ignore_index=True),
        np.concatenate([res.score for _, res in pieces]),
        float(detector.threshold_),
        np.concatenate([res.is_anomaly for _, res in pieces]),
        labels,
        title=f"{detector_name}: score over time (dotted line: start of held-out data)",
        split_at=None if holdout is None else holdout.readings.times.iloc[0],
    )
    if holdout is not None:
        (out / "evaluation").mkdir()
        (out / "evaluation" / "metrics.json").write_text(
            json.dumps(holdout.evaluation, indent=2, default=str)
        )
        if len(holdout.readings) <= MAX_HOLDOUT_ARTIFACT_ROWS:
            holdout.readings.frame.to_parquet(out / HOLDOUT_ARTIFACT, index=False)


def run_params(
    readings: Readings,
    train_part: Readings,
    detector: BaseDetector,
    detector_name: str,
    holdout: float,
) -> dict[str, Any]:
    times = readings.times
    return {
        "detector": detector_name,
        **{f"detector.{k}": v for k, v in detector.get_params(deep=False).items()},
        "sensors": ";".join(detector.sensors)[:5000],
        "n_sensors": len(detector.sensors),
        "data_source": str(readings.source)[:500],
        "data_start": str(times.iloc[0]),
        "data_end": str(times.iloc[-1]),
        "rows": len(readings),
        "holdout": holdout,
        "train_end": str(train_part.times.iloc[-1]),
    }


def run_metrics(
    detector: BaseDetector, n_train: int, evaluation: dict[str, Any] | None
) -> dict[str, float]:
    metrics = {"threshold": float(detector.threshold_), "training_rows": float(n_train)}
    learned = {
        "silhouette": getattr(detector, "silhouette_", None),
        "n_states": getattr(detector, "n_states_", None),
    }
    metrics.update(finite_metrics(learned))
    if evaluation is not None:
        metrics.update(finite_metrics(evaluation, EVAL_METRIC_KEYS, prefix="eval_"))
    return metrics


def run_tags(
    readings: Readings,
    train_part: Readings,
    eval_part: Readings | None,
    sha: str,
    trigger: str,
    detector_name: str,
    key: str | None,
) -> dict[str, str]:
    tags = {
        T.DATA_SHA256: sha,
        "rows_total": str(len(readings)),
        "rows_train": str(len(train_part)),
        "rows_eval": str(0 if eval_part is None else len(eval_part)),
        "sensorguard_version": __version__,
        T.TRIGGER: trigger,
        T.DETECTOR: detector_name,
        "labels": "yes" if readings.y is not None else "no",
    }
    if key:
        tags[T.IDEMPOTENCY_KEY] = key
    return tags


def version_tags(
    trigger: str,
    detector_name: str,
    sha: str,
    key: str | None,
    evaluation: dict[str, Any] | None,
) -> dict[str, str]:
    tags = {T.LIFECYCLE: T.CANDIDATE, T.TRIGGER: trigger, T.DETECTOR: detector_name}
    tags[T.DATA_SHA256] = sha
    if key:
        tags[T.IDEMPOTENCY_KEY] = key
    for k in ("f1", "event_recall", "false_alarms_per_day"):
        v = (evaluation or {}).get(k)
        if isinstance(v, int | float):
            tags[f"eval_{k}"] = f"{float(v):.4f}"
    return tags
