"""Train a detector, log one MLflow run, register a new model version.

This is the one training entry point: ``sensorguard train``, the demo and the Airflow
DAGs all call :func:`train_and_register`.

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
import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from sensorguard import __version__
from sensorguard.config import Settings, get_settings
from sensorguard.errors import DataValidationError, SensorGuardError

if TYPE_CHECKING:  # pragma: no cover
    from sensorguard.data import Readings
    from sensorguard.detectors.base import BaseDetector

StepCallback = Callable[[str], None]

HOLDOUT_ARTIFACT = "evaluation/holdout.parquet"
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
    from dataclasses import replace

    frame = readings.frame.loc[mask].reset_index(drop=True)
    return replace(readings, frame=frame, notes=list(readings.notes))


def normal_rows(readings: Readings) -> pd.DataFrame:
    """Sensor values of the rows labelled normal (all rows when unlabelled)."""
    X = readings.X
    if readings.y is None:
        return X
    mask = np.asarray(readings.y) == 0
    if not mask.any():
        raise DataValidationError(
            f"{readings.source}: no row of the training part is labelled normal",
            "the detector learns normal operation: include normal readings",
        )
    return X.loc[mask]


def _find_version_by_run(client: Any, name: str, airflow_run_id: str) -> Any | None:
    from mlflow.exceptions import MlflowException

    safe = airflow_run_id.replace("'", "\\'")
    try:
        found = client.search_model_versions(f"name='{name}' and tags.airflow_run_id='{safe}'")
    except MlflowException:
        return None
    return max(found, key=lambda mv: int(mv.version)) if found else None


def _reused_result(client: Any, name: str, mv: Any) -> TrainResult:
    run = client.get_run(mv.run_id)
    metrics = dict(run.data.metrics)
    ev = {k[5:]: v for k, v in metrics.items() if k.startswith("eval_")}
    return TrainResult(
        name=name,
        version=int(mv.version),
        run_id=mv.run_id,
        detector_name=run.data.params.get("detector", ""),
        metrics=metrics,
        evaluation=ev or None,
        train_rows=int(float(run.data.tags.get("rows_train", 0))),
        eval_rows=int(float(run.data.tags.get("rows_eval", 0))),
        data_sha256=run.data.tags.get("data_sha256", ""),
        reused=True,
    )


def _params_of(detector: BaseDetector) -> dict[str, Any]:
    try:
        return dict(detector.get_params(deep=False))
    except Exception:  # not an sklearn-style estimator
        return {}


def _finite_metrics(prefix: str, values: dict[str, Any], keys: tuple[str, ...]) -> dict[str, float]:
    out: dict[str, float] = {}
    for k in keys:
        v = values.get(k)
        if isinstance(v, bool) or v is None:
            continue
        if isinstance(v, int | float | np.integer | np.floating) and math.isfinite(float(v)):
            out[f"{prefix}{k}"] = float(v)
    return out


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


def learned_state_profiles(detector: BaseDetector) -> dict[str, Any] | None:
    """The detector's own description of its states (centres, means, scales), if any."""
    try:
        from sensorguard.detectors.failure_types import state_profiles as learned
    except ImportError:  # pragma: no cover - every detector module ships it
        return None
    try:
        return learned(detector)
    except (AttributeError, TypeError, ValueError):
        return None


def failure_type_profiles(detector: BaseDetector) -> dict[str, Any]:
    """Failure types the detector learned (JSON), ``{"types": []}`` when it has none."""
    for attr in ("failure_types_", "failure_profiles_"):
        value = getattr(detector, attr, None)
        if value is None:
            continue
        if hasattr(value, "to_dict"):
            value = value.to_dict()
        try:
            json.dumps(value, default=float)
        except (TypeError, ValueError):
            continue
        return value if isinstance(value, dict) else {"types": value}
    return {"types": []}


def _failure_rows(profiles: dict[str, Any], sensors: list[str]) -> list[tuple[str, np.ndarray]]:
    rows = []
    for i, t in enumerate(profiles.get("types") or []):
        if not isinstance(t, dict):
            continue
        sig = t.get("signature") or t.get("profile") or t.get("z") or t.get("mean")
        if isinstance(sig, dict):
            vec = np.array([float(sig.get(s, 0.0)) for s in sensors])
        elif isinstance(sig, list) and len(sig) == len(sensors):
            vec = np.asarray(sig, dtype=float)
        else:
            continue
        modes = t.get("labelled_modes") or {}
        label = str(t.get("name") or ("+".join(modes) if modes else f"type {t.get('type', i)}"))
        rows.append((f"{label} (n={t.get('episodes', t.get('size', '?'))})", vec))
    return rows


def train_and_register(
    readings: Readings,
    *,
    detector_name: str | None = None,
    params: dict[str, Any] | None = None,
    settings: Settings | None = None,
    trigger: str = "cli",
    holdout: float = 0.3,
    airflow_run_id: str | None = None,
    register: bool = True,
    on_step: StepCallback | None = None,
) -> TrainResult:
    """Train, evaluate on the held-out tail, log one MLflow run, register a new version.

    Idempotent per ``airflow_run_id``: when a version tagged with it exists, that version
    is returned (``reused=True``) and nothing is trained or registered again.
    ``on_step`` is told the name of each step as it starts (for progress bars).
    """
    import mlflow
    from sensorguard.detectors import make_detector
    from sensorguard.pipelines.plots import profiles_plot, score_plot
    from sensorguard.registry import (
        ensure_experiment,
        get_client,
        log_detector_model,
        register_model_version,
        registry_errors,
    )

    started = time.perf_counter()
    step = on_step or (lambda _s: None)
    settings = settings or get_settings()
    name = settings.model_name
    detector_name = detector_name or settings.detector
    params = dict(params or {})

    step("connect to MLflow")
    client = get_client(settings)
    if airflow_run_id and register:
        with registry_errors(f"registered model '{name}'", settings):
            existing = _find_version_by_run(client, name, airflow_run_id)
        if existing is not None:
            return _reused_result(client, name, existing)
    experiment_id = ensure_experiment(settings.experiment, settings)

    step("split and hash the data")
    from sensorguard.data import validate_for_training

    validate_for_training(readings)
    train_part, eval_part = split_readings(readings, holdout)
    X_train = normal_rows(train_part)
    sha = data_sha256(readings)

    step(f"train {detector_name}")
    detector = make_detector(detector_name, **params)
    try:
        detector.fit(X_train)
    except SensorGuardError:
        raise
    except ValueError as exc:
        raise DataValidationError(
            f"training {detector_name} failed: {exc}",
            "check the readings (enough normal rows, non-constant sensors) and the parameters",
        ) from None
    if hasattr(detector, "learn_failure_types"):  # failure types travel with the model
        detector.learn_failure_types(train_part)

    learn_types = getattr(detector, "learn_failure_types", None)
    if callable(learn_types) and (train_part.y is None or np.asarray(train_part.y).any()):
        # failure episodes of the training window (labels, else the detector's own alarms)
        # become failure types; they are saved with the model
        step("profile failure types")
        learn_types(train_part)

    evaluation: dict[str, Any] | None = None
    if eval_part is not None:
        step("evaluate on the held-out tail")
        from sensorguard.evaluation.events import evaluate_detector

        evaluation = evaluate_detector(detector, eval_part)

    step("log the run to MLflow")
    times = readings.times
    det_params = _params_of(detector)
    run_params: dict[str, Any] = {
        "detector": detector_name,
        **{f"detector.{k}": v for k, v in det_params.items()},
        "sensors": ";".join(detector.sensors)[:5000],
        "n_sensors": len(detector.sensors),
        "data_source": str(readings.source)[:500],
        "data_start": str(times.iloc[0]),
        "data_end": str(times.iloc[-1]),
        "rows": len(readings),
        "holdout": holdout,
        "train_end": str(train_part.times.iloc[-1]),
    }
    metrics: dict[str, float] = {
        "threshold": float(detector.threshold_),
        "training_rows": float(len(X_train)),
    }
    for attr, key in (("silhouette_", "silhouette"), ("n_states_", "n_states")):
        v = getattr(detector, attr, None)
        if isinstance(v, int | float | np.integer | np.floating) and math.isfinite(float(v)):
            metrics[key] = float(v)
    if evaluation is not None:
        metrics.update(_finite_metrics("eval_", evaluation, EVAL_METRIC_KEYS))
    tags = {
        "data_sha256": sha,
        "rows_total": str(len(readings)),
        "rows_train": str(len(train_part)),
        "rows_train_normal": str(len(X_train)),
        "rows_eval": str(0 if eval_part is None else len(eval_part)),
        "sensorguard_version": __version__,
        "trigger": trigger,
        "detector": detector_name,
        "labels": "yes" if readings.y is not None else "no",
    }
    if airflow_run_id:
        tags["airflow_run_id"] = airflow_run_id

    with (
        registry_errors(f"experiment '{settings.experiment}'", settings),
        mlflow.start_run(
            experiment_id=experiment_id,
            run_name=f"train-{detector_name}-{time.strftime('%Y%m%d-%H%M%S')}",
            tags=tags,
        ) as run,
    ):
        mlflow.log_params({k: _param_value(v) for k, v in run_params.items()})
        mlflow.log_metrics(metrics)
        with tempfile.TemporaryDirectory(prefix="sg-run-") as tmp:
            out = Path(tmp)
            full = detector.detect(readings.X)
            prof = state_profiles(detector, X_train, detector.detect(X_train).state)
            ftypes = failure_type_profiles(detector)
            (out / "state_profiles.json").write_text(
                json.dumps({"learned": learned_state_profiles(detector), **prof}, indent=2)
            )
            (out / "failure_types.json").write_text(json.dumps(ftypes, indent=2, default=float))
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
                    for s in prof["states"]
                ],
                _failure_rows(ftypes, detector.sensors),
            )
            score_plot(
                out / "score_over_time.png",
                times,
                full.score,
                float(detector.threshold_),
                full.is_anomaly,
                readings.y,
                title=f"{detector_name}: score over time (dotted line: start of held-out data)",
                split_at=None if eval_part is None else eval_part.times.iloc[0],
            )
            if evaluation is not None:
                (out / "evaluation").mkdir()
                (out / "evaluation" / "metrics.json").write_text(
                    json.dumps(evaluation, indent=2, default=str)
                )
                if eval_part is not None and len(eval_part) <= MAX_HOLDOUT_ARTIFACT_ROWS:
                    eval_part.frame.to_parquet(out / HOLDOUT_ARTIFACT, index=False)
            mlflow.log_artifacts(str(out))
        step("log the model")
        info = log_detector_model(detector, X_train.head(5))
        version: int | None = None
        if register:
            step("register a new model version")
            version_tags = {
                "lifecycle": "candidate",
                "trigger": trigger,
                "detector": detector_name,
                "data_sha256": sha,
            }
            if airflow_run_id:
                version_tags["airflow_run_id"] = airflow_run_id
            if evaluation is not None:
                for k in ("f1", "event_recall", "false_alarms_per_day"):
                    v = evaluation.get(k)
                    if isinstance(v, int | float):
                        version_tags[f"eval_{k}"] = f"{float(v):.4f}"
            mv = register_model_version(
                info.model_uri, run.info.run_id, name, version_tags, settings
            )
            version = int(mv.version)
            mlflow.set_tag("registered_version", str(version))
    return TrainResult(
        name=name,
        version=version,
        run_id=run.info.run_id,
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


def _param_value(v: Any) -> Any:
    if isinstance(v, list | tuple | dict):
        return json.dumps(v)[:5000]
    return v


def load_holdout(run_id: str, settings: Settings | None = None) -> Readings | None:
    """The held-out readings logged with training run ``run_id`` (``None`` if not stored)."""
    import mlflow
    from sensorguard.data import Readings
    from sensorguard.registry import configure_mlflow, get_client, registry_errors

    settings = configure_mlflow(settings)
    client = get_client(settings)
    with registry_errors(f"run {run_id}", settings):
        run = client.get_run(run_id)
        files = {f.path for f in client.list_artifacts(run_id, "evaluation")}
        if HOLDOUT_ARTIFACT not in files:
            return None
        schema = {}
        if "schema.json" in {f.path for f in client.list_artifacts(run_id)}:
            schema = mlflow.artifacts.load_dict(f"{run.info.artifact_uri}/schema.json")
        with tempfile.TemporaryDirectory(prefix="sg-holdout-") as tmp:
            local = mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path=HOLDOUT_ARTIFACT, dst_path=tmp
            )
            frame = pd.read_parquet(local)
    return Readings.from_frame(
        frame,
        time_column=schema.get("time_column"),
        label_column=schema.get("label_column"),
        asset_column=schema.get("asset_column"),
        source=f"held-out data of run {run_id}",
    )
