"""Everything MLflow about runs: the training run, the drift-monitoring run, their artifacts.

The room's rules: the pipelines compute (fit, profile, evaluate, draw the plots into a
folder) and hand the results over as plain values; this module alone starts runs, logs
params, metrics and artifacts, logs and registers the model, and reads run artifacts
back (the held-out readings, the drift profile).
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import pandas as pd

from sensorguard.config import Settings, get_settings
from sensorguard.registry import tags as T
from sensorguard.registry.models import log_detector_model, register_model_version
from sensorguard.registry.setup import (
    configure_mlflow,
    ensure_experiment,
    get_client,
    registry_errors,
)
from sensorguard.registry.versions import search_versions

if TYPE_CHECKING:  # pragma: no cover
    from sensorguard.data import Readings
    from sensorguard.detectors.base import BaseDetector

HOLDOUT_ARTIFACT = "evaluation/holdout.parquet"
PROFILE_ARTIFACT = "drift/training_profile.json"
"""Where the training (drift) profile lives inside a training run's artifacts."""
MONITORING_SUFFIX = "-monitoring"


@dataclass
class TrainingRunRecord:
    """What a training produced, ready to be logged as one run (no MLflow types)."""

    experiment: str
    run_name: str
    tags: dict[str, str]
    params: dict[str, Any]
    metrics: dict[str, float]
    artifacts: Path
    """A folder whose files become the run's artifacts (JSON, plots, evaluation/...)."""
    detector: BaseDetector
    input_example: pd.DataFrame
    training_profile: dict[str, Any] | None = None
    failure_types: dict[str, Any] | None = None
    register: bool = True
    model_name: str = ""
    version_tags: dict[str, str] = field(default_factory=dict)


def _param_value(v: Any) -> Any:
    if isinstance(v, list | tuple | dict):
        return json.dumps(v)[:5000]
    return v


def log_training_run(
    record: TrainingRunRecord,
    settings: Settings | None = None,
    on_step: Callable[[str], None] | None = None,
) -> tuple[str, int | None]:
    """Log one training run (params, metrics, tags, artifacts, drift profile, the model)
    and register a new, signed version unless ``record.register`` is false.

    Returns ``(run_id, version)``; ``version`` is ``None`` without registration.
    """
    import mlflow

    settings = settings or get_settings()
    step = on_step or (lambda _s: None)
    experiment_id = ensure_experiment(record.experiment, settings)
    with (
        registry_errors(f"experiment '{record.experiment}'", settings),
        mlflow.start_run(
            experiment_id=experiment_id, run_name=record.run_name, tags=record.tags
        ) as run,
    ):
        mlflow.log_params({k: _param_value(v) for k, v in record.params.items()})
        mlflow.log_metrics(record.metrics)
        mlflow.log_artifacts(str(record.artifacts))
        if record.training_profile is not None:
            mlflow.log_dict(record.training_profile, PROFILE_ARTIFACT)
        step("log the model")
        info = log_detector_model(
            record.detector,
            record.input_example,
            training_profile=record.training_profile,
            failure_types=record.failure_types,
        )
        version: int | None = None
        if record.register:
            step("register a new model version")
            mv = register_model_version(
                info.model_uri,
                run.info.run_id,
                record.model_name or settings.model_name,
                record.version_tags,
                settings,
            )
            version = int(mv.version)
            mlflow.set_tag("registered_version", str(version))
    return str(run.info.run_id), version


@dataclass
class RunSummary:
    """A logged training run read back (for an idempotent retry)."""

    run_id: str
    version: int
    metrics: dict[str, float]
    params: dict[str, str]
    tags: dict[str, str]


def find_trained_version(
    name: str, idempotency_key: str, settings: Settings | None = None
) -> RunSummary | None:
    """The newest version registered with ``idempotency_key``, with its run, or ``None``."""
    settings = settings or get_settings()
    found = search_versions(name, settings, tags={T.IDEMPOTENCY_KEY: idempotency_key})
    if not found:
        return None
    mv = max(found, key=lambda v: int(v.version))
    assert mv.run_id, "training registers every version from its run"
    client = get_client(settings)
    with registry_errors(f"run {mv.run_id}", settings):
        run = client.get_run(mv.run_id)
    return RunSummary(
        run_id=mv.run_id,
        version=int(mv.version),
        metrics=dict(run.data.metrics),
        params=dict(run.data.params),
        tags=dict(run.data.tags),
    )


def run_has_artifact(run_id: str, path: str, settings: Settings | None = None) -> bool:
    settings = settings or get_settings()
    client = get_client(settings)
    folder = path.rsplit("/", 1)[0] if "/" in path else None
    with registry_errors(f"run {run_id}", settings):
        return path in {f.path for f in client.list_artifacts(run_id, folder)}


def load_run_dict(run_id: str, path: str, settings: Settings | None = None) -> dict[str, Any]:
    import mlflow

    settings = configure_mlflow(settings)
    with registry_errors(f"artifact {path} of run {run_id}", settings):
        return dict(mlflow.artifacts.load_dict(f"runs:/{run_id}/{path}"))


def load_training_profile_artifact(
    run_id: str, settings: Settings | None = None
) -> dict[str, Any] | None:
    """The drift profile logged with training run ``run_id``; ``None`` for older runs."""
    if not run_has_artifact(run_id, PROFILE_ARTIFACT, settings):
        return None
    return load_run_dict(run_id, PROFILE_ARTIFACT, settings)


def load_holdout(run_id: str, settings: Settings | None = None) -> Readings | None:
    """The held-out readings logged with training run ``run_id`` (``None`` if not stored)."""
    import mlflow

    from sensorguard.data import Readings

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


class DriftLike(Protocol):
    """What a drift report offers the run logger (see ``pipelines.drift.DriftReport``)."""

    threshold: float
    metric: str
    rows: int

    @property
    def drifted(self) -> bool: ...
    def metrics(self) -> dict[str, float]: ...
    def to_dict(self) -> dict[str, Any]: ...


def log_drift_run(
    report: DriftLike,
    recent: Readings,
    *,
    settings: Settings,
    version: int | None,
    trigger: str,
) -> str:
    """Log one monitoring run (metrics per sensor and overall, the JSON report)."""
    import mlflow

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


def check_reachable(settings: Settings | None = None) -> None:
    """``RegistryError`` with a hint when the registry cannot be queried."""
    settings = settings or get_settings()
    client = get_client(settings)
    with registry_errors("the model registry", settings):
        client.search_registered_models(max_results=1)
