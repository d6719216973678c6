"""The training DAG mapped over machine types, run for real with ``dag.test()``.

One run trains two models in a mapped task group: one has good data and is trained,
gated and promoted; the other's data is broken and only its own tasks fail. A second run
trains the second model alone; the first keeps its production version.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from support.lifecycle import seed_store
from test_dags import _run, airflow_home  # noqa: F401 - the session's Airflow home

pytestmark = [pytest.mark.airflow, pytest.mark.slow]

TRAINING = "sensor_model_training"
FAST = {"max_states": 4, "silhouette_sample": 2000}
PUMP, FAN = "pump-dag", "fan-dag"


def _csv(path: Path, seed: int, prefix: str) -> Path:
    from sensorguard.pipelines.fleet import simulate_fleet

    simulate_fleet(2, days=5, freq="2min", seed=seed, prefix=prefix).to_csv(path, index=False)
    return path


def test_training_dag_maps_over_machine_types_and_one_failure_stops_only_its_model(
    airflow_home: Path,  # noqa: F811
    sg_home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from sensorguard.config import get_settings
    from sensorguard.pipelines.fleet import list_models, settings_for
    from sensorguard.registry import history

    for key, value in {
        "SENSORGUARD_GATE_MIN_F1": "0.3",
        "SENSORGUARD_GATE_MIN_EVENT_RECALL": "0.5",
        "SENSORGUARD_GATE_MAX_FALSE_ALARMS_PER_DAY": "3",
    }.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    seed_store(sg_home)
    pumps = _csv(tmp_path / "pumps.csv", 1, "pump")
    broken = tmp_path / "fans.csv"
    broken.write_text("timestamp,asset_id,speed\n2026-01-01,fan-1,abc\n")  # not numbers
    fans = _csv(tmp_path / "fans-good.csv", 2, "fan")
    models = [
        {"model": PUMP, "data_path": str(pumps), "detector_params": FAST},
        {"model": FAN, "data_path": str(broken)},
    ]
    mixed, fan_only = _run(
        airflow_home,
        (TRAINING, {"models": models, "eval_fraction": 0.4}),
        (
            TRAINING,
            {
                "models": [{"model": FAN, "data_path": str(fans), "detector_params": FAST}],
                "eval_fraction": 0.4,
            },
        ),
    )

    # one mapped group per model: the pump trained, gated and promoted...
    tasks = mixed["tasks"]
    assert tasks["plan_models"] == "success"
    for step in (
        "extract_window",
        "validate_contract",
        "train_candidate",
        "evaluate",
        "gate",
        "promote",
    ):
        assert tasks[f"train.{step}[0]"] == "success", tasks
    # ...while the fan failed at once (bad data is not retried) and only its tasks stopped
    assert tasks["train.extract_window[1]"] == "failed", tasks
    assert tasks["train.promote[1]"] == "upstream_failed", tasks
    assert mixed["state"] == "failed"  # the run shows that a model failed
    assert mixed["xcom"]["train.gate[0]"]["return_value"]["passed"] is True
    assert mixed["asset_events"] == [
        {
            "uri": f"sensorguard://models/{PUMP}/production",
            "extra": {"model": PUMP, "version": 1, "previous": None},
            "source_task_id": "train.promote",
        }
    ]

    # the second run trains the fan alone; the pump's production is untouched
    assert fan_only["state"] == "success", fan_only["tasks"]
    assert fan_only["tasks"]["train.promote[0]"] == "success"
    summary = {m.name: (m.production, m.versions) for m in list_models(get_settings())}
    assert summary == {FAN: (1, 1), PUMP: (1, 1)}
    assert [e.action for e in history(settings_for(PUMP))] == ["promote"]
    window = fan_only["xcom"]["train.extract_window[0]"]["return_value"]
    # several assets and no detector named: the measured fleet default
    assert window["model"] == FAN and window["detector"] == "asset-calibrated"
