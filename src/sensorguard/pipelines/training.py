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

from sensorguard.config import Settings, get_settings
from sensorguard.data import Readings, validate_for_training
from sensorguard.detectors import make_detector
from sensorguard.detectors.base import BaseDetector
from sensorguard.detectors.states import OperatingStateDetector
from sensorguard.errors import DataValidationError, SensorGuardError
from sensorguard.evaluation.events import evaluate_detector
from sensorguard.evaluation.failure_types import profile_failures
from sensorguard.pipelines.drift import training_profile
from sensorguard.pipelines.training_record import (
    Holdout,
    TrainingProfile,
    run_metrics,
    run_params,
    run_tags,
    version_tags,
    write_run_files,
)
from sensorguard.registry import tags as T
from sensorguard.registry.runs import (
    TrainingRunRecord,
    find_trained_version,
    log_training_run,
)
from sensorguard.scoring.readings import detect_readings

StepCallback = Callable[[str], None]

__all__ = [
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
    # failure episodes of the training window (labels, else the detector's own alarms)
    # become failure types, for every detector (signatures come from the contributions
    # every detector gives); they travel with the model
    failure_types = profile_failures(detector, train_part, result=result)
    detector.failure_types_ = failure_types
    return TrainingProfile(
        result=result,
        state_profiles={"learned": learned, **state_profiles(detector, X_train, states)},
        failure_types=failure_types,
        drift=training_profile(X_train),
        normal_rows=len(X_train),
    )


def evaluate_holdout(detector: BaseDetector, eval_part: Readings) -> Holdout:
    result = detect_readings(detector, eval_part)
    return Holdout(eval_part, evaluate_detector(detector, eval_part, result=result), result)


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
    metrics = run_metrics(detector, len(X_train), evaluation)
    with tempfile.TemporaryDirectory(prefix="sg-run-") as tmp:
        write_run_files(Path(tmp), detector, detector_name, readings, train_part, profile, held)
        run_id, version = log_training_run(
            TrainingRunRecord(
                experiment=settings.experiment,
                run_name=f"train-{detector_name}-{time.strftime('%Y%m%d-%H%M%S')}",
                tags=run_tags(readings, train_part, eval_part, sha, trigger, detector_name, key)
                | {"rows_train_normal": str(len(X_train))},
                params=run_params(readings, train_part, detector, detector_name, holdout),
                metrics=metrics,
                artifacts=Path(tmp),
                detector=detector,
                input_example=X_train.head(5),
                training_profile=profile.drift,
                failure_types=profile.failure_types,
                register=register,
                model_name=name,
                version_tags=version_tags(trigger, detector_name, sha, key, evaluation),
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
