"""Training as pure nodes (no MLflow at all), and each row scored once per training.

The nodes run with ``mlflow`` made unimportable; the wiring test counts every
``detect`` call (and the rows it scored) during ``train_and_register`` and the gate, so
repeated scoring of the same rows cannot come back unnoticed.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from support.lifecycle import seed_store

from sensorguard.config import Settings, get_settings

FAST = {"max_states": 4, "silhouette_sample": 2000}


def _readings(days: float = 4.0, seed: int = 1) -> Any:
    from sensorguard.data import Readings
    from sensorguard.data.simulator import simulate_pump

    return Readings.from_frame(simulate_pump(days=days, seed=seed, freq="2min"), source="sim")


@pytest.fixture
def no_mlflow(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any ``import mlflow`` from here on raises ImportError."""
    for name in list(sys.modules):
        if name == "mlflow" or name.startswith("mlflow."):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "mlflow", None)


def test_nodes_fit_profile_and_evaluate_without_mlflow(no_mlflow: None) -> None:
    from sensorguard.pipelines import training as tr

    data = _readings()
    train_part, eval_part = tr.split_readings(data, 0.4)
    assert eval_part is not None and len(train_part) + len(eval_part) == len(data)
    assert train_part.times.max() < eval_part.times.min()
    X = tr.normal_rows(train_part)
    assert (np.asarray(train_part.y)[X.index] == 0).all()

    detector = tr.fit_detector("operating-states", FAST, X)
    profile = tr.profile_training(detector, train_part)
    assert len(profile.result.score) == len(train_part)
    assert profile.normal_rows == len(X)
    # the drift profile holds per-sensor min/max of the normal training rows
    for s in data.sensors:
        p = profile.drift["sensors"][s]
        assert p["min"] == pytest.approx(float(X[s].min()))
        assert p["max"] == pytest.approx(float(X[s].max()))
    assert profile.drift["rows"] == len(X)
    states = profile.state_profiles["states"]
    assert sum(s["readings"] for s in states) == len(X)
    assert profile.state_profiles["learned"]["n_states"] == detector.n_states_
    # failure types of the training window travel with the detector
    assert profile.failure_types["source"] == "labels"
    assert detector.failure_types_ is profile.failure_types

    held = tr.evaluate_holdout(detector, eval_part)
    assert held.readings is eval_part and len(held.result.score) == len(eval_part)
    assert held.evaluation["events_total"] >= 1
    assert 0.0 <= held.evaluation["f1"] <= 1.0
    assert "mlflow" not in {m.split(".")[0] for m in sys.modules if sys.modules[m] is not None}


@pytest.mark.parametrize("name", ["pca-smoothed", "knn", "asset-calibrated"])
def test_every_detector_gets_failure_types_in_training(no_mlflow: None, name: str) -> None:
    from sensorguard.pipelines import training as tr

    train_part, _ = tr.split_readings(_readings(), 0.4)
    X = tr.normal_rows(train_part)
    params = {"base_params": FAST} if name == "asset-calibrated" else {}
    detector = tr.fit_detector(name, params, X)
    profile = tr.profile_training(detector, train_part)
    assert profile.failure_types["source"] == "labels"
    assert profile.failure_types["n_episodes"] >= 1 and profile.failure_types["types"]
    assert detector.failure_types_ is profile.failure_types
    assert profile.state_profiles["learned"]["n_states"] == 0  # no operating states


def test_unlabelled_readings_train_on_every_row(no_mlflow: None) -> None:
    from dataclasses import replace

    from sensorguard.pipelines import training as tr

    data = _readings(days=2)
    frame = data.frame.drop(columns=[data.label_column])
    unlabelled = replace(data, frame=frame, label_column=None)
    train_part, eval_part = tr.split_readings(unlabelled, 0.3)
    assert eval_part is None and train_part is unlabelled
    pd.testing.assert_frame_equal(tr.normal_rows(unlabelled), unlabelled.X)


@pytest.fixture
def store(sg_home: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("SENSORGUARD_GATE_MIN_F1", "0.5")
    monkeypatch.setenv("SENSORGUARD_GATE_MIN_EVENT_RECALL", "0.6")
    monkeypatch.setenv("SENSORGUARD_GATE_MAX_FALSE_ALARMS_PER_DAY", "2")
    get_settings.cache_clear()
    seed_store(sg_home)
    return get_settings()


def test_train_and_register_scores_each_row_once(
    store: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sensorguard.detectors.states import OperatingStateDetector
    from sensorguard.pipelines.lifecycle import gate_and_promote
    from sensorguard.pipelines.training import train_and_register

    calls: list[int] = []
    original = OperatingStateDetector.detect

    def counted(self: Any, X: Any) -> Any:
        calls.append(len(X))
        return original(self, X)

    monkeypatch.setattr(OperatingStateDetector, "detect", counted)
    data = _readings()
    result = train_and_register(data, params=FAST, settings=store, trigger="test", holdout=0.4)
    assert result.version == 1 and result.evaluation is not None
    # one pass over the training part (profiles, failure types, plot), one over the
    # held-out tail, and MLflow's check of the 5-row input example when the model is logged
    assert calls == [len(data) - result.eval_rows, result.eval_rows, 5], calls

    calls.clear()
    outcome = gate_and_promote(
        1,
        result.eval_readings,
        settings=store,
        trigger="test",
        candidate_metrics=result.evaluation,
    )
    assert outcome.action == "promote", outcome.decision.summary()
    assert calls == []  # no production yet, and the candidate's metrics were reused
    assert outcome.decision.candidate["f1"] == pytest.approx(result.evaluation["f1"])

    # a second version: the gate scores production (once), never the candidate again
    again = train_and_register(data, params=FAST, settings=store, trigger="test", holdout=0.4)
    calls.clear()
    gate_and_promote(
        again.version,
        again.eval_readings,
        settings=store,
        candidate_metrics=again.evaluation,
    )
    assert calls == [len(again.eval_readings)]
