"""Scheduled retraining of the SensorGuard detector behind a quality gate.

check registry → extract window → validate contract → train + register candidate →
evaluate candidate and production on the same evaluation window → gate → promote →
mark the production Asset.

Runs on a cron schedule (``SENSORGUARD_TRAINING_SCHEDULE``, default ``@daily``) *or* when
the monitor DAG reports drift through the drift Asset. A rejected candidate stops at the
gate: promotion is skipped, the run stays green and the reason is in the gate task's log,
its XCom and the candidate version's tags. Every task is a thin call into
``sensorguard.pipelines.retraining``; ``sensorguard`` is imported inside the tasks so
parsing this file stays cheap.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from airflow.sdk import (
    Asset,
    AssetOrTimeSchedule,
    CronTriggerTimetable,
    Param,
    dag,
    get_current_context,
    task,
)

# Airflow 3 does not put the DAGs folder on sys.path; the shared helpers live next to this file
_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.append(_HERE)

import sensorguard_dag_common as common  # noqa: E402

MODEL_NAME = os.environ.get("SENSORGUARD_MODEL_NAME", "sensor-failure-detector")
SCHEDULE = os.environ.get("SENSORGUARD_TRAINING_SCHEDULE", "@daily")

# The monitor DAG updates DRIFT when recent readings drift; PRODUCTION marks a promotion.
DRIFT = common.drift_asset(MODEL_NAME)
PRODUCTION = Asset(f"sensorguard://models/{MODEL_NAME}/production")


def _schedule() -> Any:
    if common.schedule_off(SCHEDULE):
        return DRIFT  # retrain on drift (and manual triggers) only
    return AssetOrTimeSchedule(
        timetable=CronTriggerTimetable(SCHEDULE, timezone="UTC"), assets=DRIFT
    )


@dag(
    dag_id="sensor_model_training",
    description="Retrain the sensor failure detector; promote only past the quality gate.",
    schedule=_schedule(),
    start_date=common.START_DATE,
    catchup=False,
    max_active_runs=1,
    tags=["sensorguard", "training", "mlflow"],
    default_args=common.default_args(retry_minutes=2, retry_exponential_backoff=True),
    params={
        "data_path": common.optional(
            "string",
            os.environ.get("SENSORGUARD_TRAINING_DATA"),
            "CSV/Parquet file to train on (used when no store asset is given).",
        ),
        "asset": common.optional(
            "string",
            os.environ.get("SENSORGUARD_TRAINING_ASSET"),
            "Asset id to read from the readings store (SENSORGUARD_STORE_URL).",
        ),
        "window_end": common.optional(
            "string",
            None,
            "End of the store window (ISO date/time, exclusive); default: the run's time.",
        ),
        "window_days": Param(
            float(os.environ.get("SENSORGUARD_TRAINING_WINDOW_DAYS", "14")),
            type="number",
            exclusiveMinimum=0,
            description="Length of the training window read from the store, in days.",
        ),
        "eval_fraction": Param(
            0.3,
            type="number",
            exclusiveMinimum=0,
            exclusiveMaximum=1,
            description="Latest share of the window held out to evaluate candidate and "
            "production on the same readings.",
        ),
        "detector": common.optional("string", None, "Detector name (default: settings)."),
        "detector_params": Param({}, type="object", description="Detector parameters."),
    },
    doc_md=__doc__,
)
def sensor_model_training() -> None:
    @task
    @common.fail_fast_on_bad_input
    def check_registry() -> dict[str, Any]:
        from sensorguard.pipelines import retraining

        return retraining.check_registry(MODEL_NAME)

    @task
    @common.fail_fast_on_bad_input
    def extract_window(registry: dict[str, Any]) -> dict[str, Any]:
        from sensorguard.pipelines import retraining

        ctx = get_current_context()
        p = ctx["params"]
        return retraining.extract_window(
            run_id=common.run_ref(ctx),
            data_path=p["data_path"],
            asset=p["asset"],
            end=p["window_end"] or ctx["dag_run"].run_after,
            window_days=p["window_days"],
            eval_fraction=p["eval_fraction"],
        )

    @task
    @common.fail_fast_on_bad_input
    def validate_contract(window: dict[str, Any]) -> dict[str, Any]:
        from sensorguard.pipelines import retraining

        return retraining.validate_window(window)

    @task
    @common.fail_fast_on_bad_input
    def train_candidate(window: dict[str, Any]) -> dict[str, Any]:
        from sensorguard.pipelines import retraining

        ctx = get_current_context()
        return retraining.train_candidate(
            window,
            model_name=MODEL_NAME,
            detector=ctx["params"]["detector"],
            params=ctx["params"]["detector_params"],
            airflow_run_id=common.run_ref(ctx),
            trigger=common.trigger(ctx),
        )

    @task
    @common.fail_fast_on_bad_input
    def evaluate(candidate: dict[str, Any], window: dict[str, Any]) -> dict[str, Any]:
        from sensorguard.pipelines import retraining

        return retraining.evaluate_candidate(candidate, window, model_name=MODEL_NAME)

    # ignore_downstream_trigger_rules=False: only `promote` is skipped on rejection.
    @task.short_circuit(ignore_downstream_trigger_rules=False)
    @common.fail_fast_on_bad_input
    def gate(evaluation: dict[str, Any]) -> bool:
        from sensorguard.pipelines import retraining

        ctx = get_current_context()
        decision = retraining.gate_candidate(
            evaluation,
            model_name=MODEL_NAME,
            trigger=common.trigger(ctx),
        )
        ctx["ti"].xcom_push(key="gate", value=decision)
        print(f"gate {'PASSED' if decision['passed'] else 'REJECTED'}: {decision['reason']}")
        return bool(decision["passed"])

    @task(outlets=[PRODUCTION])
    @common.fail_fast_on_bad_input
    def promote(evaluation: dict[str, Any]) -> dict[str, Any]:
        from sensorguard.pipelines import retraining

        ctx = get_current_context()
        result = retraining.promote_candidate(
            evaluation,
            model_name=MODEL_NAME,
            trigger=common.trigger(ctx),
        )
        ctx["outlet_events"][PRODUCTION].extra = {
            "model": MODEL_NAME,
            "version": result["version"],
            "previous": result.get("previous"),
        }
        return result

    registry = check_registry()
    window = validate_contract(extract_window(registry))
    evaluation = evaluate(train_candidate(window), window)
    gate(evaluation) >> promote(evaluation)


sensor_model_training()
