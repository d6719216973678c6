"""Watch the served model: gate compliance, unvetted versions, data drift.

Three independent branches, so one failing check never hides the others:

* ``check_production`` fails the run (visibly, without retries) when the production alias
  points at a version that did not pass the quality gate;
* ``vet_new_versions`` evaluates versions registered outside the training pipeline (no
  gate tag yet) against production and tags the verdict, so nobody promotes them blind;
* ``measure_drift`` compares recent readings with the production model's training profile
  (per sensor and overall, logged to MLflow as a monitoring run); above the threshold
  ``request_retraining`` updates the drift Asset, which schedules the training DAG.

Every task is a thin call into ``sensorguard.pipelines.monitor``; ``sensorguard`` is
imported inside the tasks so parsing this file stays cheap.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any, TypeVar

import pendulum
from airflow.sdk import Asset, Param, dag, get_current_context, task

MODEL_NAME = os.environ.get("SENSORGUARD_MODEL_NAME", "sensor-failure-detector")
SCHEDULE = os.environ.get("SENSORGUARD_MONITOR_SCHEDULE", "@hourly")
DRIFT = Asset(f"sensorguard://models/{MODEL_NAME}/drift")

F = TypeVar("F", bound=Callable[..., Any])


def fail_fast_on_bad_input(fn: F) -> F:
    """Bad data or configuration fails the task at once: a retry cannot fix it.

    An unreachable registry (``RegistryError``) is still retried, since the server may
    come back; any other ``SensorGuardError`` becomes ``AirflowFailException`` carrying
    the one-line message and hint.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from airflow.sdk.exceptions import AirflowFailException

        from sensorguard.errors import RegistryError, SensorGuardError

        try:
            return fn(*args, **kwargs)
        except RegistryError:
            raise
        except SensorGuardError as exc:
            raise AirflowFailException(str(exc)) from None

    return wrapper  # type: ignore[return-value]


def _optional(type_: str, default: Any, description: str) -> Param:
    return Param(default, type=["null", type_], description=description)


@dag(
    dag_id="sensor_model_monitor",
    description="Check the production model passed the gate, vet new versions, watch drift.",
    schedule=None if SCHEDULE.strip().lower() in {"", "none", "off"} else SCHEDULE,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["sensorguard", "monitoring", "mlflow"],
    default_args={
        "owner": "sensorguard",
        "retries": 2,
        "retry_delay": pendulum.duration(minutes=1),
    },
    params={
        "data_path": _optional(
            "string",
            os.environ.get("SENSORGUARD_MONITOR_DATA"),
            "CSV/Parquet file of recent readings (used when no store asset is given).",
        ),
        "asset": _optional(
            "string",
            os.environ.get("SENSORGUARD_MONITOR_ASSET"),
            "Asset id to read recent readings of from the readings store.",
        ),
        "window_end": _optional(
            "string",
            None,
            "End of the store window (ISO date/time, exclusive); default: the run's time.",
        ),
        "window_hours": Param(
            float(os.environ.get("SENSORGUARD_MONITOR_WINDOW_HOURS", "24")),
            type="number",
            exclusiveMinimum=0,
            description="Length of the recent window read from the store, in hours.",
        ),
        "drift_metric": Param(
            os.environ.get("SENSORGUARD_DRIFT_METRIC", "mean_shift"),
            type="string",
            enum=["mean_shift", "psi"],
            description="What decides drift: mean shift in training standard deviations, "
            "or the population stability index.",
        ),
        "drift_threshold": _optional(
            "number",
            float(os.environ["SENSORGUARD_DRIFT_THRESHOLD"])
            if os.environ.get("SENSORGUARD_DRIFT_THRESHOLD")
            else None,
            "Overall value above which retraining is requested "
            "(default: 0.75 for mean_shift, 1.0 for psi).",
        ),
    },
    doc_md=__doc__,
)
def sensor_model_monitor() -> None:
    @task(retries=0)
    @fail_fast_on_bad_input
    def check_production() -> dict[str, Any]:
        from sensorguard.pipelines import monitor

        # a MonitorAlert fails the task at once, with the version and how to fix it
        return monitor.check_production(MODEL_NAME).to_dict()

    @task
    @fail_fast_on_bad_input
    def extract_recent() -> dict[str, Any]:
        from sensorguard.pipelines import monitor

        ctx = get_current_context()
        p = ctx["params"]
        return monitor.extract_recent(
            run_id=f"{ctx['dag'].dag_id}/{ctx['run_id']}",
            data_path=p["data_path"],
            asset=p["asset"],
            end=p["window_end"] or ctx["dag_run"].run_after,
            window_hours=p["window_hours"],
        )

    @task
    @fail_fast_on_bad_input
    def vet_new_versions(recent: dict[str, Any]) -> list[dict[str, Any]]:
        from sensorguard.pipelines import monitor

        ctx = get_current_context()
        verdicts = monitor.vet_unvetted_versions(
            recent["path"],
            model_name=MODEL_NAME,
            trigger=f"airflow:{ctx['dag'].dag_id}/{ctx['run_id']}",
        )
        for v in verdicts:
            print(f"version {v['version']}: gate {v['gate']} — {v['reason']}")
        return verdicts

    @task
    @fail_fast_on_bad_input
    def measure_drift(recent: dict[str, Any]) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowSkipException

        from sensorguard.pipelines import monitor

        ctx = get_current_context()
        try:
            report = monitor.measure_drift(
                recent["path"],
                model_name=MODEL_NAME,
                threshold=ctx["params"]["drift_threshold"],
                metric=ctx["params"]["drift_metric"],
                trigger=f"airflow:{ctx['dag'].dag_id}/{ctx['run_id']}",
            )
        except monitor.NothingToMonitor as exc:
            raise AirflowSkipException(str(exc)) from None
        print(report["summary"])
        return report

    @task.short_circuit
    def drift_above_threshold(report: dict[str, Any]) -> bool:
        return bool(report["drifted"])

    @task(outlets=[DRIFT])
    @fail_fast_on_bad_input
    def request_retraining(report: dict[str, Any]) -> None:
        ctx = get_current_context()
        ctx["outlet_events"][DRIFT].extra = {
            "metric": report["metric"],
            "score": report["score"],
            "threshold": report["threshold"],
            "mlflow_run_id": report.get("mlflow_run_id"),
        }

    check_production()
    recent = extract_recent()
    vet_new_versions(recent)
    report = measure_drift(recent)
    drift_above_threshold(report) >> request_retraining(report)


sensor_model_monitor()
