"""Training as pure nodes, and one function that wires them to the run logger.

This is the one training entry point: ``sensorguard train``, the demo and the Airflow
DAG all call :func:`train_and_register`.

The room's rules (the Kedro split): the nodes — :func:`split_readings`,
:func:`normal_rows`, :func:`fit_detector`, :func:`profile_training`,
:func:`evaluate_holdout` — take and return plain values and never touch MLflow;
:func:`train_and_register` is wiring, and everything MLflow happens in
:func:`sensorguard.registry.runs.log_training_run`. Each row is scored once: the
training rows in :func:`profile_training` (its result gives the state profiles, the
failure types and the plot), the held-out rows in :func:`evaluate_holdout` (its metrics
are what the gate later uses for the candidate).

Split: readings are in time order; with labels, the first ``1 - holdout`` of the rows
train the detector (only the rows labelled normal: the detector learns normal
operation) and the tail is held out to measure point and event metrics. Without labels
all rows train and no quality metrics are logged (the gate will then ask for labelled
evaluation data). The held-out rows are logged with the run (``evaluation/holdout.parquet``)
so the quality gate can later compare versions on exactly the same data.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sensorguard import __version__
from sensorguard.config import Settings, get_settings
from sensorguard.data import Readings, validate_for_training
from sensorguard.detectors import make_detector
from sensorguard.detectors.base import BaseDetector, DetectionResult
from sensorguard.detectors.states import OperatingStateDetector
from sensorguard.errors import DataValidationError, SensorGuardError
from sensorguard.evaluation.events import evaluate_detector
from sensorguard.evaluation.failure_types import profile_failures
from sensorguard.jsonsafe import finite_metrics
from sensorguard.pipelines.drift import training_profile
from sensorguard.pipelines.plots import profiles_plot, score_plot
from sensorguard.registry import tags as T
from sensorguard.registry.runs import (
    HOLDOUT_ARTIFACT,
    TrainingRunRecord,
    find_trained_version,
    log_training_run,
)
from sensorguard.scoring.readings import detect_readings

StepCallback = Callable[[str], None]

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

__all__ = [
    "HOLDOUT_ARTIFACT",
    "Holdout",
    "TrainResult",
    "TrainingProfile",
    "data_sha256",
    "evaluate_holdout",
    "fit_detector",
    "normal_rows",
    "profile_training",
    "split_readings",
    "train_and_register",
]


@dataclass
class TrainResult:
    """What one training produced: the run, the registered version, the metrics."""

    name: str
    version: int | None
    run_id: str
    detector_name: str
    metrics: dict[str, float]
    evaluation: dict[str, Any] | None
    train_rows: int
    eval_rows: int
    data_sha256: str
    reused: bool = False
    detector: BaseDetector | None = field(default=None, repr=False)
    eval_readings: Readings | None = field(default=None, repr=False)
    seconds: float = 0.0

    @property
    def model_uri(self) -> str:
        if self.version is None:  # trained with register=False
            return f"runs:/{self.run_id}/model"
        return f"models:/{self.name}/{self.version}"


# ---------------------------------------------------------------- nodes (no MLflow)


def data_sha256(readings: Readings) -> str:
    """Content hash of the readings: times, sensor names and values (and labels)."""
    h = hashlib.sha256()
    h.update(json.dumps(list(readings.sensors)).encode())
    times = pd.to_datetime(readings.times).to_numpy().astype("datetime64[ns]").view(np.int64)
    h.update(np.ascontiguousarray(times).tobytes())
    h.update(np.ascontiguousarray(readings.X.to_numpy(dtype=np.float64)).tobytes())
    if readings.y is not None:
        h.update(np.ascontiguousarray(np.asarray(readings.y, dtype=np.int8)).tobytes())
    if readings.asset is not None:
        h.update("\x1f".join(map(str, readings.asset.tolist())).encode())
    return h.hexdigest()


def split_readings(readings: Readings, holdout: float) -> tuple[Readings, Readings | None]:
    """Time-ordered split: (train part, held-out tail or ``None`` without labels)."""
    if not 0 <= holdout < 1:
        raise DataValidationError(
            f"holdout must be in [0, 1), got {holdout}", "use e.g. 0.3 for a 30 % tail"
        )
    n = len(readings)
    if readings.y is None or holdout == 0:
        return readings, None
    # a time cut (not a row cut): readings of several assets are sorted by asset first
    times = pd.to_datetime(readings.times).to_numpy()
    cut_time = np.sort(times)[min(n - 1, round(n * (1 - holdout)))]
    before = times < cut_time
    n_train = int(before.sum())
    if n_train < 2 or n - n_train < 2:
        raise DataValidationError(
            f"{readings.source}: {n} rows are too few to hold out {holdout:.0%} for evaluation",
            "provide more readings or lower the holdout",
        )
    return _subset(readings, before), _subset(readings, ~before)


def _subset(readings: Readings, mask: np.ndarray) -> Readings:
    frame = readings.frame.loc[mask].reset_index(drop=True)
    return replace(readings, frame=frame, notes=list(readings.notes))


def _normal_mask(readings: Readings) -> np.ndarray | None:
    return None if readings.y is None else np.asarray(readings.y) == 0


def normal_rows(readings: Readings) -> pd.DataFrame:
    """Sensor values of the rows labelled normal (all rows when unlabelled)."""
    X = readings.X
    mask = _normal_mask(readings)
    if mask is None:
        return X
    if not mask.any():
        raise DataValidationError(
            f"{readings.source}: no row of the training part is labelled normal",
            "the detector learns normal operation: include normal readings",
        )
    return X.loc[mask]


def fit_detector(
    name: str, params: dict[str, Any], X: pd.DataFrame, assets: Any = None
) -> BaseDetector:
    """A detector ``name`` with ``params`` fitted on normal readings ``X``.

    ``assets`` (each row's asset id) reaches detectors that calibrate per asset
    (``uses_assets``, e.g. ``asset-calibrated``)."""
    detector = make_detector(name, **params)
    try:
        if getattr(detector, "uses_assets", False):
            fit: Any = detector.fit  # fit(X, assets=...): a per-asset calibrating detector
            fit(X, assets=assets)
        else:
            detector.fit(X)
    except SensorGuardError:
        raise
    except ValueError as exc:
        raise DataValidationError(
            f"training {name} failed: {exc}",
            "check the readings (enough normal rows, non-constant sensors) and the parameters",
        ) from None
    return detector


def state_profiles(detector: BaseDetector, X: pd.DataFrame, states: np.ndarray) -> dict[str, Any]:
    """Per operating state: share of readings, and mean/std of each sensor (raw units).

    ``z`` is the state's mean in units of the overall standard deviation, which makes
    states comparable across sensors (that is what the profiles plot shows).
    """
    A = detector.prepare(X)
    mu, sd = A.mean(axis=0), A.std(axis=0)
    sd = np.where(sd > 0, sd, 1.0)
    out = []
    for s in sorted(set(int(v) for v in np.unique(states))):
        m = states == s
        rows = A[m]
        out.append(
            {
                "state": s,
                "readings": int(m.sum()),
                "share": float(m.mean()),
                "mean": dict(
                    zip(detector.sensors, rows.mean(axis=0).round(6).tolist(), strict=True)
                ),
                "std": dict(zip(detector.sensors, rows.std(axis=0).round(6).tolist(), strict=True)),
                "z": ((rows.mean(axis=0) - mu) / sd).round(4).tolist(),
            }
        )
    return {"sensors": detector.sensors, "states": out}


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


def profile_training(detector: BaseDetector, train_part: Readings) -> TrainingProfile:
    """Score the training part once and derive every training-time profile from it."""
    result = detect_readings(detector, train_part)
    X_train = normal_rows(train_part)
    mask = _normal_mask(train_part)
    states = result.state if mask is None else result.state[mask]
    learned = (
        detector.describe_states()
        if isinstance(detector, OperatingStateDetector)
        else {"detector": detector.name, "n_states": 0, "states": []}
    )
    failure_types: dict[str, Any] = {"types": []}
    if isinstance(detector, OperatingStateDetector):
        # failure episodes of the training window (labels, else the detector's own alarms)
        # become failure types; they travel with the model
        failure_types = profile_failures(detector, train_part, result=result)
        detector.failure_types_ = failure_types
    return TrainingProfile(
        result=result,
        state_profiles={"learned": learned, **state_profiles(detector, X_train, states)},
        failure_types=failure_types,
        drift=training_profile(X_train),
        normal_rows=len(X_train),
    )


@dataclass
class Holdout:
    """The held-out tail scored once: its metrics (for the run and the gate) and result."""

    readings: Readings
    evaluation: dict[str, Any]
    result: DetectionResult


def evaluate_holdout(detector: BaseDetector, eval_part: Readings) -> Holdout:
    result = detect_readings(detector, eval_part)
    return Holdout(eval_part, evaluate_detector(detector, eval_part, result=result), result)


# ---------------------------------------------------------------- artefacts (no MLflow)


def _failure_rows(profiles: dict[str, Any], sensors: list[str]) -> list[tuple[str, np.ndarray]]:
    rows = []
    for t in profiles.get("types") or []:
        sig = t["signature"]
        modes = t.get("labelled_modes") or {}
        label = "+".join(modes) if modes else f"type {t['type']}"
        rows.append((f"{label} (n={t['episodes']})", np.array([float(sig[s]) for s in sensors])))
    return rows


def _write_artifacts(
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


def _reused(name: str, key: str, settings: Settings) -> TrainResult | None:
    found = find_trained_version(name, key, settings)
    if found is None:
        return None
    ev = {k[5:]: v for k, v in found.metrics.items() if k.startswith("eval_")}
    return TrainResult(
        name=name,
        version=found.version,
        run_id=found.run_id,
        detector_name=found.params.get("detector", ""),
        metrics=found.metrics,
        evaluation=ev or None,
        train_rows=int(float(found.tags.get("rows_train", 0))),
        eval_rows=int(float(found.tags.get("rows_eval", 0))),
        data_sha256=found.tags.get(T.DATA_SHA256, ""),
        reused=True,
    )


# ---------------------------------------------------------------- wiring


def train_and_register(
    readings: Readings,
    *,
    detector_name: str | None = None,
    params: dict[str, Any] | None = None,
    settings: Settings | None = None,
    trigger: str = "cli",
    holdout: float = 0.3,
    idempotency_key: str | None = None,
    register: bool = True,
    on_step: StepCallback | None = None,
    airflow_run_id: str | None = None,
) -> TrainResult:
    """Train, evaluate on the held-out tail, log one MLflow run, register a new version.

    Idempotent per ``idempotency_key`` (e.g. the Airflow run id; ``airflow_run_id`` is
    its former name): when a version tagged with it exists, that version is returned
    (``reused=True``) and nothing is trained or registered again. ``on_step`` is told the
    name of each step as it starts (for progress bars).
    """
    started = time.perf_counter()
    step = on_step or (lambda _s: None)
    settings = settings or get_settings()
    name, detector_name = settings.model_name, detector_name or settings.detector
    key = idempotency_key or airflow_run_id
    step("connect to MLflow")
    if key and register and (done := _reused(name, key, settings)) is not None:
        return done

    step("split and hash the data")
    validate_for_training(readings)
    train_part, eval_part = split_readings(readings, holdout)
    X_train = normal_rows(train_part)
    sha = data_sha256(readings)

    step(f"train {detector_name}")
    assets = None if train_part.asset is None else train_part.asset.loc[X_train.index]
    detector = fit_detector(detector_name, dict(params or {}), X_train, assets)
    step("profile failure types")
    profile = profile_training(detector, train_part)
    held = None
    if eval_part is not None:
        step("evaluate on the held-out tail")
        held = evaluate_holdout(detector, eval_part)
    evaluation = None if held is None else held.evaluation

    step("log the run to MLflow")
    metrics = _run_metrics(detector, len(X_train), evaluation)
    with tempfile.TemporaryDirectory(prefix="sg-run-") as tmp:
        _write_artifacts(Path(tmp), detector, detector_name, readings, train_part, profile, held)
        run_id, version = log_training_run(
            TrainingRunRecord(
                experiment=settings.experiment,
                run_name=f"train-{detector_name}-{time.strftime('%Y%m%d-%H%M%S')}",
                tags=_run_tags(readings, train_part, eval_part, sha, trigger, detector_name, key)
                | {"rows_train_normal": str(len(X_train))},
                params=_run_params(readings, train_part, detector, detector_name, holdout),
                metrics=metrics,
                artifacts=Path(tmp),
                detector=detector,
                input_example=X_train.head(5),
                training_profile=profile.drift,
                failure_types=profile.failure_types,
                register=register,
                model_name=name,
                version_tags=_version_tags(trigger, detector_name, sha, key, evaluation),
            ),
            settings,
            on_step=step,
        )
    return TrainResult(
        name=name,
        version=version,
        run_id=run_id,
        detector_name=detector_name,
        metrics=metrics,
        evaluation=evaluation,
        train_rows=len(X_train),
        eval_rows=0 if eval_part is None else len(eval_part),
        data_sha256=sha,
        detector=detector,
        eval_readings=eval_part,
        seconds=time.perf_counter() - started,
    )


def _run_params(
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


def _run_metrics(
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


def _run_tags(
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


def _version_tags(
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
