"""The steps of scheduled retraining, as plain functions over small JSON documents.

The ``sensor_model_training`` Airflow DAG calls one function per task and passes their
return values (paths, version numbers, metrics — never data frames) between tasks, so
each step can run in a different worker process and be retried on its own. Readings
move between steps as a Parquet file (:mod:`.windows`).

Retries are safe: training is idempotent per Airflow run id (a retried task finds the
version it registered before instead of registering a duplicate), tagging a gate verdict
twice writes the same tags, and promoting a version that already is production is a no-op.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sensorguard.config import get_settings
from sensorguard.data import validate_for_training
from sensorguard.jsonsafe import finite_metrics, json_safe
from sensorguard.pipelines.gate import GateDecision, evaluate_gate, unlabelled_decision
from sensorguard.pipelines.lifecycle import promote, reject
from sensorguard.pipelines.training import split_readings, train_and_register
from sensorguard.pipelines.windows import (
    as_time,
    load_window,
    read_source,
    run_folder,
    save_window,
    settings_for,
)
from sensorguard.registry import tags as T
from sensorguard.registry.runs import check_reachable
from sensorguard.registry.versions import version_at, version_tags


def check_registry(model_name: str | None = None) -> dict[str, Any]:
    """Fail fast (``RegistryError`` with a hint) when the MLflow registry is unreachable.

    Returns the tracking URI and the current production version (``None`` before the
    first promotion).
    """
    settings = settings_for(model_name)
    check_reachable(settings)
    return {
        "tracking_uri": settings.resolved_tracking_uri,
        "model": settings.model_name,
        "production_version": version_at(settings.model_name, settings.production_alias, settings),
    }


def extract_window(
    *,
    run_id: str,
    data_path: str | None = None,
    asset: str | None = None,
    end: datetime | str | None = None,
    window_days: float = 14.0,
    eval_fraction: float = 0.3,
) -> dict[str, Any]:
    """Step 2: the training window, saved for the next steps.

    From the store: the ``window_days`` before ``end``; from a file: the whole file.
    """
    settings = get_settings()
    end = as_time(end)
    start = end - timedelta(days=window_days) if (asset and end is not None) else None
    readings = read_source(
        data_path=data_path, asset=asset, start=start, end=end, settings=settings
    )
    window = save_window(readings, run_folder(run_id, settings))
    window["eval_fraction"] = float(eval_fraction)
    return window


def validate_window(window: dict[str, Any]) -> dict[str, Any]:
    """Step 3: the data contract plus the training checks (enough rows, no dead sensor).

    Unlabelled windows pass: the candidate is trained, and the gate then rejects it
    with the reason that it has no labelled evaluation data.
    """
    readings = load_window(window)
    validate_for_training(readings)
    out = {**window, "validated": True, "labelled": readings.y is not None}
    _, eval_part = split_readings(readings, float(window.get("eval_fraction", 0.3)))
    if readings.y is not None and eval_part is not None and eval_part.y is not None:
        out["abnormal_rows"] = int(readings.y.sum())
        out["abnormal_rows_eval"] = int(eval_part.y.sum())
    return out


def train_candidate(
    window: dict[str, Any],
    *,
    model_name: str | None = None,
    detector: str | None = None,
    params: dict[str, Any] | None = None,
    idempotency_key: str | None = None,
    trigger: str = "airflow",
    airflow_run_id: str | None = None,
) -> dict[str, Any]:
    """Step 4: train and register a candidate, once per ``idempotency_key`` (the Airflow
    run id; ``airflow_run_id`` is its former name).

    The held-out tail (``eval_fraction`` of the window) is not trained on; the run keeps
    the training (drift) profile of the normal readings that were, like every training.
    """
    settings = settings_for(model_name)
    result = train_and_register(
        load_window(window),
        detector_name=detector,
        params=params,
        settings=settings,
        trigger=trigger,
        holdout=float(window.get("eval_fraction", 0.3)),
        idempotency_key=idempotency_key or airflow_run_id,
    )
    return {
        "version": result.version,
        "run_id": result.run_id,
        "detector": result.detector_name,
        "reused": result.reused,
        "train_rows": result.train_rows,
        "eval_rows": result.eval_rows,
        "holdout_metrics": finite_metrics(result.evaluation or {}),
    }


def evaluate_candidate(
    candidate: dict[str, Any], window: dict[str, Any], *, model_name: str | None = None
) -> dict[str, Any]:
    """Step 5: candidate and production evaluated on the same held-out readings.

    The evaluation window is the window's tail that the candidate did not train on
    (the same time-ordered split as training). Returns the gate decision as a dict.
    This task runs in another process than training, so the candidate is loaded from
    the registry and scored here.
    """
    settings = settings_for(model_name)
    readings = load_window(window)
    _, eval_part = split_readings(readings, float(window.get("eval_fraction", 0.3)))
    if eval_part is None:
        return unlabelled_decision(
            int(candidate["version"]),
            version_at(settings.model_name, settings.production_alias, settings),
            str(window.get("source", "")),
        ).to_dict()
    decision = evaluate_gate(int(candidate["version"]), eval_part, settings=settings)
    return dict(json_safe(decision.to_dict()))


def gate_candidate(
    evaluation: dict[str, Any], *, model_name: str | None = None, trigger: str = "airflow"
) -> dict[str, Any]:
    """Step 6: the verdict. A rejection is recorded (version tags, audit trail) once."""
    settings = settings_for(model_name)
    decision = GateDecision.from_dict(evaluation)
    version = decision.candidate_version
    if not decision.passed:
        tags = version_tags(settings.model_name, version, settings)
        if tags.get(T.GATE) != T.GATE_REJECTED:  # a retried task records the rejection once
            reject(decision, settings=settings, trigger=trigger)
    return {
        "passed": bool(decision.passed),
        "version": version,
        "production_version": decision.production_version,
        "reason": decision.summary(),
        "reasons": list(decision.reasons),
    }


def promote_candidate(
    evaluation: dict[str, Any], *, model_name: str | None = None, trigger: str = "airflow"
) -> dict[str, Any]:
    """Step 7: move the production alias to the candidate (no-op when it already is)."""
    settings = settings_for(model_name)
    decision = GateDecision.from_dict(evaluation)
    version = int(decision.candidate_version)
    current = version_at(settings.model_name, settings.production_alias, settings)
    if current == version:  # promoted by an earlier try of this task
        return {"version": version, "previous": None, "already": True}
    result = promote(version, settings=settings, trigger=trigger, decision=decision)
    return {
        "version": version,
        "previous": result.from_version,
        "already": False,
        "audit_run_id": result.audit_run_id,
    }
