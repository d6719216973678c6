"""Watch the registered model: gate compliance, unvetted versions, data drift.

Used by the ``sensor_model_monitor`` Airflow DAG and by ``sensorguard monitor check`` /
``sensorguard drift``. Three checks:

* :func:`check_production` — the production alias must point at a version whose
  ``gate`` tag is ``passed``; anything else raises :class:`MonitorAlert`.
* :func:`vet_unvetted_versions` — versions registered outside the training pipeline
  carry no ``gate`` tag; each is evaluated against production on the same labelled
  readings and tagged with the verdict, so nobody promotes an unchecked model.
* :func:`measure_drift` — recent readings against the production model's training
  profile (see :mod:`sensorguard.pipelines.drift`), logged to MLflow as a monitoring run.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sensorguard.config import Settings, get_settings
from sensorguard.errors import SchemaMismatchError, SensorGuardError
from sensorguard.pipelines.drift import (
    DEFAULT_METRIC,
    PROFILE_ARTIFACT,
    DriftReport,
    compute_drift,
    training_profile,
)
from sensorguard.pipelines.retraining import (
    as_time,
    production_version,
    read_source,
    run_folder,
    save_window,
    settings_for,
)

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from sensorguard.data import Readings

GATE_TAG = "gate"
GATE_PASSED = "passed"
GATE_REJECTED = "rejected"
MONITORING_SUFFIX = "-monitoring"


class MonitorAlert(SensorGuardError):
    """The registry is in a state that needs a person (e.g. an ungated production model)."""


class NothingToMonitor(SensorGuardError):
    """There is no production model yet, so there is nothing to compare against."""


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
    from sensorguard.registry import get_client, registry_errors

    settings = settings_for(model_name)
    name, alias = settings.model_name, settings.production_alias
    version = production_version(settings)
    if version is None:
        return ProductionCheck(
            name, alias, None, None, True, f"'{name}' has no '{alias}' version yet"
        )
    client = get_client(settings)
    with registry_errors(f"version {version} of '{name}'", settings):
        tags = client.get_model_version(name, str(version)).tags or {}
    gate = tags.get(GATE_TAG)
    if gate != GATE_PASSED:
        state = f"gate={gate}" if gate else "no gate verdict"
        raise MonitorAlert(
            f"'{name}@{alias}' points at version {version}, which has {state}",
            "roll back with `sensorguard models rollback`, or promote a version that "
            "passed the gate with `sensorguard models promote VERSION`",
        )
    return ProductionCheck(
        name, alias, version, gate, True, f"'{name}@{alias}' = version {version}, gate passed"
    )


# ---------------------------------------------------------------- recent readings


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


def _load(path: str | Path) -> Readings:
    from sensorguard.data import load_readings

    return load_readings(path)


# ---------------------------------------------------------------- training profiles


def log_training_profile(
    run_id: str, X: pd.DataFrame, settings: Settings | None = None
) -> dict[str, Any]:
    """Store the drift profile of training readings ``X`` with training run ``run_id``."""
    from sensorguard.registry import get_client, registry_errors

    settings = settings or get_settings()
    profile = training_profile(X)
    client = get_client(settings)
    with registry_errors(f"run {run_id}", settings):
        client.log_dict(run_id, profile, PROFILE_ARTIFACT)
    return profile


def has_training_profile(run_id: str, settings: Settings | None = None) -> bool:
    from sensorguard.registry import get_client, registry_errors

    settings = settings or get_settings()
    client = get_client(settings)
    folder = PROFILE_ARTIFACT.rsplit("/", 1)[0]
    with registry_errors(f"run {run_id}", settings):
        return PROFILE_ARTIFACT in {f.path for f in client.list_artifacts(run_id, folder)}


def load_training_profile(run_id: str, settings: Settings | None = None) -> dict[str, Any]:
    """The drift profile of training run ``run_id``.

    Runs trained by the pipeline carry one. For other runs it is rebuilt from the
    normal readings of the held-out data logged with the run, the closest stand-in for
    the training data that the run keeps.
    """
    import mlflow
    from sensorguard.pipelines.training import load_holdout, normal_rows
    from sensorguard.registry import configure_mlflow, registry_errors

    settings = configure_mlflow(settings or get_settings())
    if has_training_profile(run_id, settings):
        with registry_errors(f"run {run_id}", settings):
            return dict(mlflow.artifacts.load_dict(f"runs:/{run_id}/{PROFILE_ARTIFACT}"))
    holdout = load_holdout(run_id, settings)
    if holdout is None:
        raise NothingToMonitor(
            f"training run {run_id} keeps no training profile and no held-out readings",
            "retrain through the training pipeline, or pass reference readings "
            "(`sensorguard drift DATA --reference TRAINING_DATA`)",
        )
    return training_profile(normal_rows(holdout))


# ---------------------------------------------------------------- drift


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
    from sensorguard.pipelines.training import normal_rows

    X = normal_rows(recent) if recent.y is not None and (recent.y == 0).any() else recent.X
    return compute_drift(profile, X, threshold=threshold, metric=metric)


def log_drift_run(
    report: DriftReport,
    recent: Readings,
    *,
    settings: Settings,
    version: int | None,
    trigger: str,
) -> str:
    """Log one monitoring run (metrics per sensor and overall, the JSON report)."""
    import mlflow
    from sensorguard.registry import ensure_experiment, registry_errors

    experiment = settings.experiment + MONITORING_SUFFIX
    experiment_id = ensure_experiment(experiment, settings)
    times = recent.times
    tags = {
        "kind": "drift",
        "model": settings.model_name,
        "model_version": str(version) if version is not None else "",
        "trigger": trigger,
        "drifted": "yes" if report.drifted else "no",
    }
    with (
        registry_errors(f"experiment '{experiment}'", settings),
        mlflow.start_run(
            experiment_id=experiment_id,
            run_name=f"drift-{time.strftime('%Y%m%d-%H%M%S')}",
            tags=tags,
        ) as run,
    ):
        mlflow.log_params(
            {
                "threshold": report.threshold,
                "metric": report.metric,
                "rows": report.rows,
                "window_start": str(times.min()),
                "window_end": str(times.max()),
                "data_source": str(recent.source)[:500],
            }
        )
        finite = {k: v for k, v in report.metrics().items() if v == v and abs(v) != float("inf")}
        mlflow.log_metrics(finite)
        with tempfile.TemporaryDirectory(prefix="sg-drift-") as tmp:
            out = Path(tmp) / "drift_report.json"
            out.write_text(json.dumps(report.to_dict(), indent=2, default=str))
            mlflow.log_artifact(str(out))
        return str(run.info.run_id)


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
    from sensorguard.registry import get_client, registry_errors

    settings = settings_for(model_name)
    version = production_version(settings)
    if version is None:
        raise NothingToMonitor(
            f"'{settings.model_name}' has no '{settings.production_alias}' version yet",
            "drift is measured against the production model's training data",
        )
    client = get_client(settings)
    with registry_errors(f"version {version} of '{settings.model_name}'", settings):
        run_id = client.get_model_version(settings.model_name, str(version)).run_id
    if not run_id:
        raise NothingToMonitor(
            f"version {version} of '{settings.model_name}' has no training run",
            "register versions from a training run (`sensorguard train`)",
        )
    recent = _load(path)
    report = drift_report(recent, load_training_profile(run_id, settings), threshold, metric)
    mlflow_run = log_drift_run(report, recent, settings=settings, version=version, trigger=trigger)
    return {
        **report.to_dict(),
        "summary": report.summary(),
        "model": settings.model_name,
        "version": version,
        "mlflow_run_id": mlflow_run,
    }


# ---------------------------------------------------------------- vetting


def unvetted_versions(settings: Settings) -> list[int]:
    """Versions with no gate verdict yet (registered outside the pipeline), oldest first."""
    from sensorguard.registry import get_client, registry_errors

    client = get_client(settings)
    safe = settings.model_name.replace("'", "\\'")
    with registry_errors(f"registered model '{settings.model_name}'", settings):
        versions = client.search_model_versions(f"name='{safe}'")
    return sorted(int(mv.version) for mv in versions if not (mv.tags or {}).get(GATE_TAG))


def _evaluation_readings(
    recent: Readings | None, version: int, settings: Settings
) -> Readings | None:
    """Labelled readings to vet ``version`` on: the recent window when it is labelled,
    else production's held-out data, else the version's own held-out data."""
    from sensorguard.pipelines.training import load_holdout
    from sensorguard.registry import get_client, registry_errors

    if recent is not None and recent.y is not None and recent.y.any():
        return recent
    client = get_client(settings)
    candidates = [production_version(settings), version]
    for v in candidates:
        if v is None:
            continue
        with registry_errors(f"version {v} of '{settings.model_name}'", settings):
            run_id = client.get_model_version(settings.model_name, str(v)).run_id
        if run_id:
            held = load_holdout(run_id, settings)
            if held is not None and held.y is not None:
                return held
    return None


def vet_unvetted_versions(
    path: str | Path | None = None, *, model_name: str | None = None, trigger: str = "monitor"
) -> list[dict[str, Any]]:
    """Gate every version that has no verdict yet; tag the verdict, never promote.

    Each is compared with the current production version on the same labelled readings
    (see :func:`_evaluation_readings`). A rejection is recorded like the pipeline's
    (``gate=rejected`` + reasons + audit entry); a pass sets ``gate=passed`` and
    ``gate_by=monitor`` so the version may be promoted later.
    """
    from sensorguard.pipelines.lifecycle import AuditEvent, evaluate_gate, record_event, reject
    from sensorguard.registry import get_client, registry_errors

    settings = settings_for(model_name)
    name = settings.model_name
    pending = unvetted_versions(settings)
    if not pending:
        return []
    recent = _load(path) if path is not None else None
    client = get_client(settings)
    verdicts: list[dict[str, Any]] = []
    for version in pending:
        readings = _evaluation_readings(recent, version, settings)
        if readings is None:
            verdicts.append(
                {
                    "version": version,
                    "gate": "unvetted",
                    "reason": "no labelled readings to evaluate it on (recent window "
                    "unlabelled, no held-out data stored)",
                }
            )
            continue
        decision = evaluate_gate(version, readings, settings=settings)
        now = datetime.now().astimezone().isoformat()
        if decision.passed:
            with registry_errors(f"version {version} of '{name}'", settings):
                client.set_model_version_tag(name, str(version), GATE_TAG, GATE_PASSED)
                client.set_model_version_tag(name, str(version), "gate_by", "monitor")
                client.set_model_version_tag(name, str(version), "vetted_at", now)
            record_event(
                AuditEvent(
                    action="vet",
                    model=name,
                    from_version=decision.production_version,
                    to_version=version,
                    trigger=trigger,
                    time=datetime.now().astimezone(),
                    reason=decision.summary(),
                    gate=decision.to_dict(),
                ),
                settings,
            )
        else:
            reject(decision, settings=settings, trigger=trigger)
            with registry_errors(f"version {version} of '{name}'", settings):
                client.set_model_version_tag(name, str(version), "gate_by", "monitor")
        verdicts.append(
            {
                "version": version,
                "gate": GATE_PASSED if decision.passed else GATE_REJECTED,
                "reason": decision.summary(),
                "evaluated_on": str(readings.source),
            }
        )
    return verdicts


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
    from sensorguard.pipelines.training import normal_rows

    ref, recent = _load(reference), _load(path)
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
