"""The steps of scheduled retraining, as plain functions over small JSON documents.

The ``sensor_model_training`` Airflow DAG calls one function per task and passes their
return values (paths, version numbers, metrics — never data frames) between tasks, so
each step can run in a different worker process and be retried on its own. Readings
move between steps as a Parquet file under ``<home>/pipeline/<run>/``.

Retries are safe: training is idempotent per Airflow run id (a retried task finds the
version it registered before instead of registering a duplicate), tagging a gate verdict
twice writes the same tags, and promoting a version that already is production is a no-op.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sensorguard.config import Settings, get_settings
from sensorguard.errors import ConfigurationError, DataValidationError

if TYPE_CHECKING:  # pragma: no cover
    from sensorguard.data import Readings

WINDOW_FILE = "window.parquet"


def settings_for(model_name: str | None = None) -> Settings:
    """The settings, with the registered model name the DAG was parsed with."""
    settings = get_settings()
    if model_name and model_name != settings.model_name:
        settings = settings.model_copy(update={"model_name": model_name})
    return settings


KEEP_RUN_FOLDERS_DAYS = 7.0


def run_folder(run_id: str, settings: Settings | None = None) -> Path:
    """A folder for one pipeline run's intermediate files (safe name from the run id).

    Folders of runs older than :data:`KEEP_RUN_FOLDERS_DAYS` are removed on the way, so
    an hourly monitor does not fill the disk.
    """
    import shutil
    import time

    settings = settings or get_settings()
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", run_id).strip("_") or "run"
    parent = (settings.home / "pipeline").resolve()
    folder = parent / safe
    folder.mkdir(parents=True, exist_ok=True)
    cutoff = time.time() - KEEP_RUN_FOLDERS_DAYS * 86400
    for old in parent.iterdir():
        if old != folder and old.is_dir() and old.stat().st_mtime < cutoff:
            shutil.rmtree(old, ignore_errors=True)
    return folder


def check_registry(model_name: str | None = None) -> dict[str, Any]:
    """Fail fast (``RegistryError`` with a hint) when the MLflow registry is unreachable.

    Returns the tracking URI and the current production version (``None`` before the
    first promotion).
    """
    from sensorguard.registry import get_client, registry_errors

    settings = settings_for(model_name)
    client = get_client(settings)
    with registry_errors("the model registry", settings):
        client.search_registered_models(max_results=1)
    return {
        "tracking_uri": settings.resolved_tracking_uri,
        "model": settings.model_name,
        "production_version": production_version(settings),
    }


def production_version(settings: Settings) -> int | None:
    """The version the production alias points at, ``None`` when there is none yet."""
    from mlflow.exceptions import MlflowException

    from sensorguard.registry import get_client, registry_errors

    client = get_client(settings)
    with registry_errors(f"registered model '{settings.model_name}'", settings):
        try:
            mv = client.get_model_version_by_alias(settings.model_name, settings.production_alias)
        except MlflowException as exc:
            if exc.error_code in {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"}:
                return None
            raise
    return int(mv.version)


def as_time(value: datetime | str | None) -> datetime | None:
    """A window bound from a datetime or an ISO string (as given in DAG params)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, datetime):
        return value
    import pandas as pd

    try:
        return pd.Timestamp(value).to_pydatetime()
    except (ValueError, TypeError):
        raise DataValidationError(
            f"cannot read {value!r} as a date/time",
            "use ISO format, e.g. 2026-01-15 or 2026-01-15T06:00:00+00:00",
        ) from None


def read_source(
    *,
    data_path: str | None,
    asset: str | None,
    start: datetime | None = None,
    end: datetime | None = None,
    settings: Settings | None = None,
) -> Readings:
    """Readings of one asset's window from the readings store, or from a data file.

    The store is used when ``asset`` is given (``SENSORGUARD_STORE_URL``, default the
    embedded SQLite store); otherwise ``data_path`` is read whole.
    """
    settings = settings or get_settings()
    if asset:
        from sensorguard.store import read_window

        readings = read_window(asset, start=start, end=end, url=settings.resolved_store_url)
        if len(readings) == 0:
            raise DataValidationError(
                f"the readings store has no readings of asset '{asset}' between {start} and {end}",
                "ingest readings with `sensorguard ingest FILE` or widen the window",
            )
        return readings
    if data_path:
        from sensorguard.data import load_readings

        return load_readings(data_path)
    raise ConfigurationError(
        "no data source for the pipeline",
        "set the DAG param 'data_path' (or SENSORGUARD_TRAINING_DATA / "
        "SENSORGUARD_MONITOR_DATA) or 'asset' to read from the readings store",
    )


def save_window(readings: Readings, folder: Path) -> dict[str, Any]:
    """Write readings as Parquet and describe them in a small JSON-able dict."""
    path = folder / WINDOW_FILE
    readings.frame.to_parquet(path, index=False)
    times = readings.times
    return {
        "path": str(path),
        "rows": len(readings),
        "sensors": list(readings.sensors),
        "start": str(times.min()) if len(readings) else None,
        "end": str(times.max()) if len(readings) else None,
        "time_column": readings.time_column,
        "label_column": readings.label_column,
        "asset_column": readings.asset_column,
        "source": str(readings.source),
    }


def load_window(window: dict[str, Any]) -> Readings:
    """Readings back from a dict written by :func:`save_window` (validated again)."""
    from sensorguard.data import load_readings

    return load_readings(
        window["path"],
        time_column=window.get("time_column"),
        label_column=window.get("label_column"),
        asset_column=window.get("asset_column"),
    )


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
    from sensorguard.data import validate_for_training
    from sensorguard.pipelines.training import split_readings

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
    airflow_run_id: str | None = None,
    trigger: str = "airflow",
) -> dict[str, Any]:
    """Step 4: train and register a candidate (once per Airflow run) and store its profile.

    The held-out tail (``eval_fraction`` of the window) is not trained on; the training
    profile used by drift monitoring describes the normal readings that were.
    """
    from sensorguard.pipelines.monitor import has_training_profile, log_training_profile
    from sensorguard.pipelines.training import normal_rows, split_readings, train_and_register

    settings = settings_for(model_name)
    readings = load_window(window)
    holdout = float(window.get("eval_fraction", 0.3))
    result = train_and_register(
        readings,
        detector_name=detector,
        params=params,
        settings=settings,
        trigger=trigger,
        holdout=holdout,
        airflow_run_id=airflow_run_id,
    )
    if not has_training_profile(result.run_id, settings):
        train_part, _ = split_readings(readings, holdout)
        log_training_profile(result.run_id, normal_rows(train_part), settings)
    return {
        "version": result.version,
        "run_id": result.run_id,
        "detector": result.detector_name,
        "reused": result.reused,
        "train_rows": result.train_rows,
        "eval_rows": result.eval_rows,
        "holdout_metrics": _finite(result.evaluation or {}),
    }


def evaluate_candidate(
    candidate: dict[str, Any], window: dict[str, Any], *, model_name: str | None = None
) -> dict[str, Any]:
    """Step 5: candidate and production evaluated on the same held-out readings.

    The evaluation window is the window's tail that the candidate did not train on
    (the same time-ordered split as training). Returns the gate decision as a dict.
    """
    from sensorguard.pipelines.lifecycle import evaluate_gate
    from sensorguard.pipelines.training import split_readings

    settings = settings_for(model_name)
    readings = load_window(window)
    _, eval_part = split_readings(readings, float(window.get("eval_fraction", 0.3)))
    if eval_part is None:
        return _unlabelled_decision(candidate, settings, str(window.get("source", "")))
    decision = evaluate_gate(int(candidate["version"]), eval_part, settings=settings)
    return json_safe(decision.to_dict())


def _unlabelled_decision(
    candidate: dict[str, Any], settings: Settings, source: str
) -> dict[str, Any]:
    from sensorguard.pipelines.lifecycle import Check, GateDecision

    detail = f"{source}: no label column, so the gate cannot measure detection"
    return GateDecision(
        passed=False,
        candidate_version=int(candidate["version"]),
        production_version=production_version(settings),
        candidate={},
        production=None,
        checks=[Check("labelled evaluation data", False, detail)],
        evaluation_source=source,
    ).to_dict()


def json_safe(value: Any) -> Any:
    """Plain JSON for XCom: NaN/inf (e.g. a delay with nothing detected) become None."""
    import math

    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return json_safe(value.item())
    return value


def decision_from_dict(d: dict[str, Any]) -> Any:
    """A ``GateDecision`` back from its ``to_dict`` form (as passed through XCom)."""
    from sensorguard.pipelines.lifecycle import Check, GateDecision

    fields = {k: v for k, v in d.items() if k != "reasons"}
    fields["checks"] = [Check(**c) for c in d.get("checks", [])]
    return GateDecision(**fields)


def gate_candidate(
    evaluation: dict[str, Any], *, model_name: str | None = None, trigger: str = "airflow"
) -> dict[str, Any]:
    """Step 6: the verdict. A rejection is recorded (version tags, audit trail) once."""
    from sensorguard.pipelines.lifecycle import reject
    from sensorguard.registry import get_client, registry_errors

    settings = settings_for(model_name)
    decision = decision_from_dict(evaluation)
    version = decision.candidate_version
    if not decision.passed:
        client = get_client(settings)
        with registry_errors(f"version {version} of '{settings.model_name}'", settings):
            tags = client.get_model_version(settings.model_name, str(version)).tags or {}
        if tags.get("gate") != "rejected":  # a retried task records the rejection once
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
    from sensorguard.pipelines.lifecycle import promote

    settings = settings_for(model_name)
    decision = decision_from_dict(evaluation)
    version = int(decision.candidate_version)
    current = production_version(settings)
    if current == version:  # promoted by an earlier try of this task
        return {"version": version, "previous": None, "already": True}
    result = promote(version, settings=settings, trigger=trigger, decision=decision)
    return {
        "version": version,
        "previous": result.from_version,
        "already": False,
        "audit_run_id": result.audit_run_id,
    }


def _finite(metrics: dict[str, Any]) -> dict[str, float]:
    import math

    return {
        k: float(v)
        for k, v in metrics.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(float(v))
    }
