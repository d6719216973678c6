"""Scheduled retraining of the SensorGuard detectors behind a quality gate, per machine type.

check registry → plan the machine types → for each, on its own (a mapped task group):
extract window → validate contract → train + register candidate → evaluate candidate and
production on the same evaluation window → gate → promote → an event on that model's
production Asset.

Machine types (registered models) come from the run's ``models`` param (a list of
``{"model", "asset_ids" | "asset" | "data_path", ...}``, how training jobs trigger it),
else the ``data_path``/``asset`` params train ``SENSORGUARD_MODEL_NAME`` as before, else
every model of the asset registry is trained on its assets' readings. One model failing
(bad data, a crash) fails only its own tasks: the others train, gate and promote, and the
run is marked failed so the failure is seen.

Runs on a cron schedule (``SENSORGUARD_TRAINING_SCHEDULE``, default ``@daily``) *or* when
the monitor DAG reports drift through the drift Asset. A rejected candidate stops at the
gate: its promotion is skipped, its tasks stay green and the reason is in the gate task's
log, its XCom and the candidate version's tags. Every task is a thin call into
``sensorguard.pipelines.retraining`` / ``sensorguard.pipelines.fleet``; ``sensorguard`` is
imported inside the tasks so parsing this file stays cheap.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from airflow.sdk import (
    AssetAlias,
    AssetOrTimeSchedule,
    CronTriggerTimetable,
    Param,
    dag,
    get_current_context,
    task,
    task_group,
)

# Airflow 3 does not put the DAGs folder on sys.path; the shared helpers live next to this file
_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.append(_HERE)

import sensorguard_dag_common as common  # noqa: E402

MODEL_NAME = os.environ.get("SENSORGUARD_MODEL_NAME", "sensor-failure-detector")
SCHEDULE = os.environ.get("SENSORGUARD_TRAINING_SCHEDULE", "@daily")

# The monitor DAG updates DRIFT when recent readings drift. A promotion is an event on
# sensorguard://models/<model>/production, for whichever model it promoted (an alias:
# the models are known at run time only).
DRIFT = common.drift_asset(MODEL_NAME)
PRODUCTION = AssetAlias("sensorguard-model-production")


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
        "models": Param(
            [],
            type="array",
            items={"type": "object", "required": ["model"]},
            description="Machine types to train, each trained, gated and promoted on its own: "
            '[{"model": "pump-a", "asset_ids": ["pump-01", "pump-02"]}, {"model": "fan-b", '
            '"data_path": "fans.csv"}]; other keys override the params above. Empty: the '
            "data_path/asset above train SENSORGUARD_MODEL_NAME, else every model of the asset "
            "registry.",
        ),
        "job_id": common.optional("string", None, "Training job this run carries out."),
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
    def plan_models(registry: dict[str, Any]) -> list[dict[str, Any]]:
        from sensorguard.pipelines import fleet

        specs = fleet.plan_training(dict(get_current_context()["params"]), MODEL_NAME)
        print(f"training {len(specs)} model(s): {', '.join(s['model'] for s in specs)}")
        return specs

    @task_group(group_id="train")
    def train_model(spec: dict[str, Any]) -> None:
        @task
        @common.fail_fast_on_bad_input
        def extract_window(spec: dict[str, Any]) -> dict[str, Any]:
            from sensorguard.pipelines import fleet

            ctx = get_current_context()
            return fleet.extract_model_window(
                common.run_ref(ctx), spec, run_after=ctx["dag_run"].run_after
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
                model_name=window["model"],
                detector=window.get("detector"),
                params=window.get("detector_params"),
                idempotency_key=common.run_ref(ctx),
                trigger=common.trigger(ctx),
            )

        @task
        @common.fail_fast_on_bad_input
        def evaluate(candidate: dict[str, Any], window: dict[str, Any]) -> dict[str, Any]:
            from sensorguard.pipelines import retraining

            out = retraining.evaluate_candidate(candidate, window, model_name=window["model"])
            return {**out, "model": window["model"]}

        @task
        @common.fail_fast_on_bad_input
        def gate(evaluation: dict[str, Any]) -> dict[str, Any]:
            from sensorguard.pipelines import retraining

            ctx = get_current_context()
            decision = {
                k: v for k, v in evaluation.items() if k != "model"
            }  # the GateDecision dict
            verdict = retraining.gate_candidate(
                decision, model_name=evaluation["model"], trigger=common.trigger(ctx)
            )
            print(
                f"gate {'PASSED' if verdict['passed'] else 'REJECTED'} for "
                f"{evaluation['model']}: {verdict['reason']}"
            )
            return {**verdict, "model": evaluation["model"]}

        # A rejection skips this model's promotion only (the other models are untouched).
        @task(outlets=[PRODUCTION])
        @common.fail_fast_on_bad_input
        def promote(verdict: dict[str, Any], evaluation: dict[str, Any]) -> dict[str, Any]:
            from airflow.sdk import Asset
            from airflow.sdk.exceptions import AirflowSkipException

            from sensorguard.pipelines import retraining

            model = evaluation["model"]
            if not verdict["passed"]:
                raise AirflowSkipException(f"{model}: the gate rejected v{verdict['version']}")
            ctx = get_current_context()
            decision = {k: v for k, v in evaluation.items() if k != "model"}
            result = retraining.promote_candidate(
                decision, model_name=model, trigger=common.trigger(ctx)
            )
            ctx["outlet_events"][PRODUCTION].add(
                Asset(f"sensorguard://models/{model}/production"),
                extra={
                    "model": model,
                    "version": result["version"],
                    "previous": result.get("previous"),
                },
            )
            return {**result, "model": model}

        window = validate_contract(extract_window(spec))
        evaluation = evaluate(train_candidate(window), window)
        promote(gate(evaluation), evaluation)

    train_model.expand(spec=plan_models(check_registry()))


sensor_model_training()
