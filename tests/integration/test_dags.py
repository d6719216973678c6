"""The Airflow DAGs, parsed and run for real with ``dag.test()``.

Airflow gets its own AIRFLOW_HOME and SQLite metadata DB per test session (migrated
once); MLflow is the embedded SQLite store of ``sg_home``. Airflow reads its settings at
import, so DAG runs happen in a subprocess (``tests/support/airflow_driver.py``) with the test's
environment, and this process never imports Airflow.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from support.lifecycle import seed_store

pytestmark = [pytest.mark.airflow, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
DRIVER = Path(__file__).parents[1] / "support" / "airflow_driver.py"
BIN = Path(sys.executable).parent
MODEL = "sensor-failure-detector"
TRAINING, MONITOR = "sensor_model_training", "sensor_model_monitor"
DRIFT_URI = f"sensorguard://models/{MODEL}/drift"
PRODUCTION_URI = f"sensorguard://models/{MODEL}/production"
# small and quick: 5 simulated days at 2-minute steps, a 40 % evaluation tail
FAST = {"max_states": 4, "silhouette_sample": 2000}
EVAL_FRACTION = 0.4


@pytest.fixture(scope="session")
def airflow_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("airflow-home")
    proc = subprocess.run(
        [str(BIN / "airflow"), "db", "migrate"],
        env=_airflow_env(home, os.environ),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return home


def _airflow_env(home: Path, base: Any) -> dict[str, str]:
    env = {k: v for k, v in base.items() if not k.startswith("AIRFLOW__")}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(REPO / "dags"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        # unpaused DAGs, as after `airflow dags unpause`: asset events then queue runs
        AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION="False",
        SENSORGUARD_MODEL_NAME=MODEL,
        PATH=f"{BIN}{os.pathsep}{base.get('PATH', '')}",
    )
    return env


def _driver(airflow_home: Path, *args: str) -> Any:
    proc = subprocess.run(
        [sys.executable, str(DRIVER), *args],
        env=_airflow_env(airflow_home, os.environ),
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("SG_RESULT ")]
    assert proc.returncode == 0 and lines, (proc.stdout[-4000:], proc.stderr[-4000:])
    return json.loads(lines[-1][len("SG_RESULT ") :])


def _run(airflow_home: Path, *runs: tuple[str, dict[str, Any]]) -> list[dict[str, Any]]:
    spec = [{"dag_id": dag_id, "conf": conf} for dag_id, conf in runs]
    return list(_driver(airflow_home, "run", json.dumps(spec)))


@pytest.fixture(scope="module")
def pump() -> Any:
    """A week of one simulated pump at 2-minute steps (with failures and labels)."""
    from sensorguard.data.simulator import simulate_pump

    return simulate_pump(days=7, freq="2min", seed=1)


DAY = 720  # readings per simulated day


def _history_csv(pump: Any, path: Path) -> Path:
    """The first five days: labelled training history."""
    pump.iloc[: 5 * DAY].to_csv(path, index=False)
    return path


def _recent_csv(pump: Any, path: Path, day: int, scale: float = 1.0) -> Path:
    """One later day as live readings arrive: no labels; ``scale`` changes the regime."""
    frame = pump.iloc[day * DAY : (day + 1) * DAY].drop(columns=["machine_status", "failure_mode"])
    for col in ("suction_pressure", "discharge_pressure", "flow_rate", "fluid_temp"):
        frame[col] = frame[col] * scale
    frame.to_csv(path, index=False)
    return path


def _versions(client: Any) -> dict[int, dict[str, str]]:
    return {
        int(mv.version): dict(mv.tags) for mv in client.search_model_versions(f"name='{MODEL}'")
    }


# ---------------------------------------------------------------- parsing


def test_dagbag_parses_cheaply_with_safe_defaults(airflow_home: Path) -> None:
    info = _driver(airflow_home, "dagbag")
    assert info["import_errors"] == {}
    assert set(info["dags"]) == {TRAINING, MONITOR}
    # parsing never imports the library or its heavy dependencies
    assert info["heavy_modules_loaded"] == []
    for dag in info["dags"].values():
        assert dag["catchup"] is False
        assert dag["max_active_runs"] == 1
        assert dag["start_date"] is not None
        assert "sensorguard" in dag["tags"]
    training = info["dags"][TRAINING]
    # cron OR drift: retraining also runs when the monitor reports drift
    assert training["timetable"] == "AssetOrTimeSchedule"
    assert training["cron"] == "0 0 * * *"
    assert training["schedule_assets"] == [DRIFT_URI]
    assert all(t["retries"] >= 1 for t in training["tasks"].values())
    # one mapped task group per machine type (model); a promotion is an event on the
    # promoted model's production Asset, through an alias (the models are known at run time)
    assert training["tasks"]["train.gate"]["downstream"] == ["train.promote"]
    assert training["tasks"]["train.promote"]["outlets"] == ["alias:sensorguard-model-production"]
    monitor = info["dags"][MONITOR]
    assert monitor["cron"] == "0 * * * *"
    assert monitor["tasks"]["request_retraining"]["outlets"] == [DRIFT_URI]
    # a misconfigured alias is not fixed by retrying: that check fails at once
    assert monitor["tasks"]["check_production"]["retries"] == 0
    assert monitor["tasks"]["measure_drift"]["retries"] >= 1


# ---------------------------------------------------------------- training


def test_training_dag_promotes_a_good_candidate_and_skips_a_worse_one(
    airflow_home: Path, sg_home: Path, tmp_path: Path, pump: Any
) -> None:
    from sensorguard.registry import get_client

    seed_store(sg_home)  # an already migrated, empty MLflow database
    data = _history_csv(pump, tmp_path / "history.csv")
    conf = {"data_path": str(data), "eval_fraction": EVAL_FRACTION, "detector_params": FAST}
    # a detector whose alarm threshold is far too high misses every failure
    worse = {**conf, "detector_params": {**FAST, "threshold_margin": 50.0}}
    first, rejected = _run(airflow_home, (TRAINING, conf), (TRAINING, worse))

    # 1st run: no production yet; the candidate passes the absolute thresholds
    assert first["state"] == "success", first["tasks"]
    assert set(first["tasks"].values()) == {"success"}
    assert first["xcom"]["train.gate[0]"]["return_value"]["passed"] is True
    assert first["asset_events"] == [
        {
            "uri": PRODUCTION_URI,
            "extra": {"model": MODEL, "version": 1, "previous": None},
            "source_task_id": "train.promote",
        }
    ]

    # 2nd run: a blind detector, judged against production on the same readings, is
    # rejected; promotion is skipped, the run is green, the reason is in XCom and tags
    assert rejected["state"] == "success", rejected["tasks"]
    assert rejected["tasks"]["train.gate[0]"] == "success"
    assert rejected["tasks"]["train.promote[0]"] == "skipped"
    verdict = rejected["xcom"]["train.gate[0]"]["return_value"]
    assert verdict["passed"] is False
    assert (verdict["version"], verdict["production_version"]) == (2, 1)
    assert "event recall" in verdict["reason"] and "production v1" in verdict["reason"]
    assert rejected["asset_events"] == []

    client = get_client()
    assert int(client.get_model_version_by_alias(MODEL, "production").version) == 1
    tags = _versions(client)
    assert sorted(tags) == [1, 2]
    assert tags[1]["gate"] == "passed" and tags[1]["lifecycle"] == "production"
    assert tags[2]["gate"] == "rejected" and "event recall" in tags[2]["gate_reasons"]
    assert tags[1]["airflow_run_id"] == f"{TRAINING}/{first['run_id']}"

    # a retried training task of the first run finds its version instead of adding one
    from sensorguard.pipelines import retraining

    window = first["xcom"]["train.validate_contract[0]"]["return_value"]
    again = retraining.train_candidate(window, idempotency_key=tags[1]["airflow_run_id"])
    assert (again["version"], again["reused"]) == (1, True)
    assert sorted(_versions(client)) == [1, 2]


# ---------------------------------------------------------------- monitoring


def test_monitor_dag_flags_ungated_production_vets_it_and_requests_retraining_on_drift(
    airflow_home: Path, sg_home: Path, tmp_path: Path, pump: Any
) -> None:
    from sensorguard.data import load_readings
    from sensorguard.pipelines.training import train_and_register
    from sensorguard.registry import get_client

    seed_store(sg_home)
    history = load_readings(_history_csv(pump, tmp_path / "history.csv"))
    # registered outside the pipeline and put in production by hand: no gate verdict
    result = train_and_register(history, params=FAST, holdout=EVAL_FRACTION, trigger="notebook")
    client = get_client()
    client.set_registered_model_alias(MODEL, "production", str(result.version))

    shifted = _recent_csv(pump, tmp_path / "shifted.csv", day=6, scale=1.3)  # new regime
    steady = _recent_csv(pump, tmp_path / "steady.csv", day=5)

    drifted, calm = _run(
        airflow_home,
        (MONITOR, {"data_path": str(shifted)}),
        (MONITOR, {"data_path": str(steady)}),
    )

    # the ungated production version fails the run visibly...
    assert drifted["state"] == "failed"
    assert drifted["tasks"]["check_production"] == "failed"
    # ...while vetting and drift still ran
    assert drifted["tasks"]["vet_new_versions"] == "success"
    (verdict,) = drifted["xcom"]["vet_new_versions"]["return_value"]
    assert verdict["version"] == 1 and verdict["gate"] == "passed"
    assert _versions(client)[1]["gate"] == "passed"
    report = drifted["xcom"]["measure_drift"]["return_value"]
    assert report["metric"] == "mean_shift" and report["threshold"] == 0.75
    assert report["drifted"] is True and report["score"] > 1.0
    moved = {s["sensor"] for s in sorted(report["sensors"], key=lambda s: -s["mean_shift"])[:4]}
    assert moved == {"suction_pressure", "discharge_pressure", "flow_rate", "fluid_temp"}
    assert drifted["tasks"]["request_retraining"] == "success"
    assert [e["uri"] for e in drifted["asset_events"]] == [DRIFT_URI]
    assert TRAINING in drifted["queued_dag_runs"]  # Airflow queued a retraining run

    # after vetting, production is compliant; steady readings do not request retraining
    assert calm["state"] == "success", calm["tasks"]
    assert calm["tasks"]["check_production"] == "success"
    assert calm["xcom"]["vet_new_versions"]["return_value"] == []
    assert calm["xcom"]["measure_drift"]["return_value"]["score"] < 0.5
    assert calm["tasks"]["request_retraining"] == "skipped"
    assert calm["asset_events"] == []

    # both drift measurements are MLflow runs of the monitoring experiment
    exp = client.get_experiment_by_name("sensorguard-monitoring")
    runs = client.search_runs([exp.experiment_id])
    assert sorted(r.data.tags["drifted"] for r in runs) == ["no", "yes"]
    assert all(
        {"drift_score", "drift_overall_psi", "psi.flow_rate"} <= set(r.data.metrics) for r in runs
    )

    # the CLI runs the same checks by hand
    from typer.testing import CliRunner

    from sensorguard.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["monitor", "check", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["production"]["version"] == 1
    res = runner.invoke(app, ["drift", str(shifted), "--fail-on-drift"])
    assert res.exit_code == 3, res.output
    assert "DRIFT" in res.stdout and "logged to MLflow" in res.stdout
