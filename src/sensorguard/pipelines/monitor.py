"""Watch the registered model: gate compliance and data drift.

Used by the ``sensor_model_monitor`` Airflow DAG and by ``sensorguard monitor check`` /
``sensorguard drift``. The checks:

* :func:`check_production` — the production alias must point at a version whose
  ``gate`` tag is ``passed``; anything else raises :class:`~sensorguard.errors.MonitorAlert`.
* vetting of versions registered outside the training pipeline —
  :func:`sensorguard.pipelines.lifecycle.vet_unvetted_versions` (a lifecycle move).
* :func:`measure_drift` — recent readings against the production model's training
  profile (see :mod:`sensorguard.pipelines.drift`), logged to MLflow as a monitoring run.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sensorguard.config import Settings, get_settings
from sensorguard.data import Readings, load_readings
from sensorguard.errors import MonitorAlert, NothingToMonitor, SchemaMismatchError
from sensorguard.pipelines.drift import DEFAULT_METRIC, DriftReport, compute_drift, training_profile
from sensorguard.pipelines.lifecycle import vet_unvetted_versions
from sensorguard.pipelines.training import normal_rows
from sensorguard.pipelines.windows import (
    as_time,
    read_source,
    run_folder,
    save_window,
    settings_for,
)
from sensorguard.registry import tags as T
from sensorguard.registry.runs import load_holdout, load_training_profile_artifact, log_drift_run
from sensorguard.registry.versions import run_id_of, version_at, version_tags


@dataclass
class ProductionCheck:
    model: str
    alias: str
    version: int | None
    gate: str | None
    ok: bool
    message: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_production(model_name: str | None = None) -> ProductionCheck:
    """Verify the production alias points at a version that passed the quality gate.

    No production version yet is not an alert (nothing is being served). A production
    version without ``gate=passed`` raises :class:`MonitorAlert` naming the version and
    how to fix it.
    """
    settings = settings_for(model_name)
    name, alias = settings.model_name, settings.production_alias
    version = version_at(name, alias, settings)
    if version is None:
        return ProductionCheck(
            name, alias, None, None, True, f"'{name}' has no '{alias}' version yet"
        )
    gate = version_tags(name, version, settings).get(T.GATE)
    if gate != T.GATE_PASSED:
        state = f"gate={gate}" if gate else "no gate verdict"
        raise MonitorAlert(
            f"'{name}@{alias}' points at version {version}, which has {state}",
            "roll back with `sensorguard models rollback`, or promote a version that "
            "passed the gate with `sensorguard models promote VERSION`",
        )
    return ProductionCheck(
        name, alias, version, gate, True, f"'{name}@{alias}' = version {version}, gate passed"
    )


def extract_recent(
    *,
    run_id: str,
    data_path: str | None = None,
    asset: str | None = None,
    end: datetime | str | None = None,
    window_hours: float = 24.0,
) -> dict[str, Any]:
    """The recent readings to monitor, saved as Parquet; returns their description.

    From the store: the ``window_hours`` before ``end``; from a file: the whole file.
    """
    settings = get_settings()
    end = as_time(end)
    start = end - timedelta(hours=window_hours) if (asset and end is not None) else None
    readings = read_source(
        data_path=data_path, asset=asset, start=start, end=end, settings=settings
    )
    return save_window(readings, run_folder(run_id, settings))


def load_training_profile(run_id: str, settings: Settings | None = None) -> dict[str, Any]:
    """The drift profile of training run ``run_id``.

    Every run trained by :func:`~sensorguard.pipelines.training.train_and_register`
    carries one. Runs logged by older code may not: for those it is rebuilt from the
    normal readings of the held-out data logged with the run, the closest stand-in for
    the training data that the run keeps.
    """
    settings = settings or get_settings()
    stored = load_training_profile_artifact(run_id, settings)
    if stored is not None:
        return stored
    holdout = load_holdout(run_id, settings)
    if holdout is None:
        raise NothingToMonitor(
            f"training run {run_id} keeps no training profile and no held-out readings",
            "retrain the model (every training run now stores its profile), or pass "
            "reference readings (`sensorguard drift DATA --reference TRAINING_DATA`)",
        )
    return training_profile(normal_rows(holdout))


def drift_report(
    recent: Readings,
    profile: dict[str, Any],
    threshold: float | None = None,
    metric: str = DEFAULT_METRIC,
) -> DriftReport:
    """Drift of ``recent`` readings against ``profile`` (pure; no MLflow).

    Only rows labelled normal count when the readings are labelled: a failure in the
    window is the detector's business, not a reason to retrain.
    """
    X = normal_rows(recent) if recent.y is not None and (recent.y == 0).any() else recent.X
    return compute_drift(profile, X, threshold=threshold, metric=metric)


def measure_drift(
    path: str | Path,
    *,
    model_name: str | None = None,
    threshold: float | None = None,
    metric: str = DEFAULT_METRIC,
    trigger: str = "cli",
) -> dict[str, Any]:
    """Drift of the readings in ``path`` against the production model's training profile.

    Logged to MLflow (experiment ``<experiment>-monitoring``). Raises
    :class:`NothingToMonitor` when no version is in production yet.
    """
    settings = settings_for(model_name)
    version = version_at(settings.model_name, settings.production_alias, settings)
    if version is None:
        raise NothingToMonitor(
            f"'{settings.model_name}' has no '{settings.production_alias}' version yet",
            "drift is measured against the production model's training data",
        )
    run_id = run_id_of(settings.model_name, version, settings)
    if not run_id:
        raise NothingToMonitor(
            f"version {version} of '{settings.model_name}' has no training run",
            "register versions from a training run (`sensorguard train`)",
        )
    recent = load_readings(path)
    report = drift_report(recent, load_training_profile(run_id, settings), threshold, metric)
    mlflow_run = log_drift_run(report, recent, settings=settings, version=version, trigger=trigger)
    return {
        **report.to_dict(),
        "summary": report.summary(),
        "model": settings.model_name,
        "version": version,
        "mlflow_run_id": mlflow_run,
    }


def drift_against_reference(
    path: str | Path,
    reference: str | Path,
    *,
    threshold: float | None = None,
    metric: str = DEFAULT_METRIC,
) -> DriftReport:
    """Drift of the readings in ``path`` against reference readings (no registry needed).

    The profile is built from the reference's normal rows (all rows when unlabelled).
    Only the sensors both have are compared; the others are named in the report's
    ``only_in_reference``/``only_in_recent`` (and its ``note``). No sensor in common is
    an error.
    """
    ref, recent = load_readings(reference), load_readings(path)
    in_recent = set(recent.sensors)
    in_ref = set(ref.sensors)
    shared = [s for s in ref.sensors if s in in_recent]
    if not shared:
        raise SchemaMismatchError(
            f"{recent.source} and the reference {ref.source} have no sensor column in "
            f"common (recent: {', '.join(recent.sensors)}; reference: {', '.join(ref.sensors)})",
            "compare readings of the same machine: the sensor column names must match",
            missing=list(ref.sensors),
            extra=list(recent.sensors),
        )
    profile = training_profile(normal_rows(ref)[shared])
    report = drift_report(recent, profile, threshold, metric)
    report.only_in_reference = [s for s in ref.sensors if s not in in_recent]
    report.only_in_recent = [s for s in recent.sensors if s not in in_ref]
    return report


def monitor_check(
    path: str | Path | None = None, *, model_name: str | None = None
) -> dict[str, Any]:
    """What the monitor DAG's registry checks do, in one call (for the CLI).

    Vets unvetted versions first (so a freshly vetted production version counts), then
    checks production; the alert, if any, is returned rather than raised.
    """
    verdicts = vet_unvetted_versions(path, model_name=model_name, trigger="cli:monitor")
    try:
        check = check_production(model_name)
        alert = None
    except MonitorAlert as exc:
        check, alert = None, str(exc)
    return {
        "production": None if check is None else check.to_dict(),
        "alert": alert,
        "vetted": verdicts,
    }
