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

import os
import sys
from typing import Any

from airflow.sdk import Param, dag, get_current_context, task

# Airflow 3 does not put the DAGs folder on sys.path; the shared helpers live next to this file
_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.append(_HERE)

import sensorguard_dag_common as common  # noqa: E402

MODEL_NAME = os.environ.get("SENSORGUARD_MODEL_NAME", "sensor-failure-detector")
SCHEDULE = os.environ.get("SENSORGUARD_MONITOR_SCHEDULE", "@hourly")
DRIFT = common.drift_asset(MODEL_NAME)


@dag(
    dag_id="sensor_model_monitor",
    description="Check the production model passed the gate, vet new versions, watch drift.",
    schedule=None if common.schedule_off(SCHEDULE) else SCHEDULE,
    start_date=common.START_DATE,
    catchup=False,
    max_active_runs=1,
    tags=["sensorguard", "monitoring", "mlflow"],
    default_args=common.default_args(retry_minutes=1),
    params={
        "data_path": common.optional(
            "string",
            os.environ.get("SENSORGUARD_MONITOR_DATA"),
            "CSV/Parquet file of recent readings (used when no store asset is given).",
        ),
        "asset": common.optional(
            "string",
            os.environ.get("SENSORGUARD_MONITOR_ASSET"),
            "Asset id to read recent readings of from the readings store.",
        ),
        "window_end": common.optional(
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
        "drift_threshold": common.optional(
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
    @common.fail_fast_on_bad_input
    def check_production() -> dict[str, Any]:
        from sensorguard.pipelines import monitor

        # a MonitorAlert fails the task at once, with the version and how to fix it
        return monitor.check_production(MODEL_NAME).to_dict()

    @task
    @common.fail_fast_on_bad_input
    def extract_recent() -> dict[str, Any]:
        from sensorguard.pipelines import monitor

        ctx = get_current_context()
        p = ctx["params"]
        return monitor.extract_recent(
            run_id=common.run_ref(ctx),
            data_path=p["data_path"],
            asset=p["asset"],
            end=p["window_end"] or ctx["dag_run"].run_after,
            window_hours=p["window_hours"],
        )

    @task
    @common.fail_fast_on_bad_input
    def vet_new_versions(recent: dict[str, Any]) -> list[dict[str, Any]]:
        from sensorguard.pipelines import lifecycle

        ctx = get_current_context()
        verdicts = lifecycle.vet_unvetted_versions(
            recent["path"],
            model_name=MODEL_NAME,
            trigger=common.trigger(ctx),
        )
        for v in verdicts:
            print(f"version {v['version']}: gate {v['gate']} — {v['reason']}")
        return verdicts

    @task
    @common.fail_fast_on_bad_input
    def measure_drift(recent: dict[str, Any]) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowSkipException

        from sensorguard.errors import NothingToMonitor
        from sensorguard.pipelines import monitor

        ctx = get_current_context()
        try:
            report = monitor.measure_drift(
                recent["path"],
                model_name=MODEL_NAME,
                threshold=ctx["params"]["drift_threshold"],
                metric=ctx["params"]["drift_metric"],
                trigger=common.trigger(ctx),
            )
        except NothingToMonitor as exc:
            raise AirflowSkipException(str(exc)) from None
        print(report["summary"])
        return report

    @task.short_circuit
    def drift_above_threshold(report: dict[str, Any]) -> bool:
        return bool(report["drifted"])

    @task(outlets=[DRIFT])
    @common.fail_fast_on_bad_input
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
