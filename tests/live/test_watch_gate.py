"""Operator labels as ground truth for the quality gate (pipelines/live_gate.py)."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest


@pytest.fixture(scope="module")
def labelled_store(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from sensorguard.data.simulator import simulate_pump
    from sensorguard.detectors import make_detector
    from sensorguard.live.watch import WatchConfig, Watcher
    from sensorguard.registry import LoadedModel
    from sensorguard.store import insert_readings
    from sensorguard.store.alarms import label_alarm, list_alarms

    d: Path = tmp_path_factory.mktemp("gate")
    url = f"sqlite:///{d / 'readings.db'}"
    train = simulate_pump(days=4, seed=1, failures=False)
    X = train.drop(columns=["timestamp", "asset_id", "machine_status", "failure_mode"])
    det = make_detector("operating-states").fit(X)
    insert_readings(simulate_pump(days=2, seed=2, n_failures=2), url=url)
    w = Watcher(WatchConfig(store_url=url, model_ref="unused", model_poll_s=1e9))
    w.use(LoadedModel(name="pump", version=1, alias=None, run_id=None, detector=det))
    while w.step().readings:
        pass
    alarms = sorted(list_alarms(url=url, kind="failure")[0], key=lambda a: a["start"])
    assert len(alarms) >= 2
    label_alarm(alarms[0]["id"], "failure", failure_mode="bearing", by="ann", url=url)
    label_alarm(alarms[1]["id"], "false_alarm", by="ann", url=url)
    for extra in alarms[2:]:
        label_alarm(extra["id"], "maintenance", by="ann", url=url)  # ignored by the gate
    return {"url": url, "detector": det, "n_labelled": 2}


def _blind(det: Any) -> Any:
    """The same detector with a threshold no reading reaches: it raises nothing."""
    blind = copy.deepcopy(det)
    blind.threshold_ = float(det.threshold_) * 1e6
    blind.alarm_rule_ = dataclasses.replace(det.alarm_rule_, threshold=blind.threshold_)
    return blind


def test_labels_count_caught_failures_and_repeated_false_alarms(labelled_store):
    from sensorguard.pipelines.live_gate import evaluate_on_labels

    det, url = labelled_store["detector"], labelled_store["url"]
    report = evaluate_on_labels(det, det, url=url)
    assert report is not None
    assert report["window"]["alarms"] == labelled_store["n_labelled"]
    c = report["candidate"]
    assert (c["confirmed_failures"], c["confirmed_caught"]) == (1, 1)
    assert (c["false_alarms"], c["false_alarms_repeated"]) == (1, 1)
    assert c["median_delay_s"] == 0.0  # the same model finds the labelled start exactly
    assert all(ok for _n, ok, _d in report["checks"])
    blind = evaluate_on_labels(_blind(det), det, url=url)
    assert blind is not None
    assert blind["candidate"]["confirmed_caught"] == 0
    assert blind["candidate"]["false_alarms_repeated"] == 0
    verdict = {n: ok for n, ok, _d in blind["checks"]}
    assert verdict == {"operator-confirmed failures": False, "operator false alarms": True}


def test_gate_decision_gets_the_label_checks(labelled_store):
    from sensorguard.pipelines.gate import GateDecision
    from sensorguard.pipelines.live_gate import add_label_checks

    det, url = labelled_store["detector"], labelled_store["url"]
    settings = SimpleNamespace(gate_label_days=30.0, store_url=url)
    ok = GateDecision(
        passed=True, candidate_version=2, production_version=1, candidate={}, production={}
    )
    add_label_checks(ok, lambda: det, det, settings)
    assert ok.passed and ok.labels is not None
    bad = GateDecision(
        passed=True, candidate_version=2, production_version=1, candidate={}, production={}
    )
    add_label_checks(bad, _blind(det), det, settings)
    assert not bad.passed
    assert any("operator-confirmed failures" in r for r in bad.reasons)
    off = GateDecision(
        passed=True, candidate_version=2, production_version=1, candidate={}, production={}
    )
    add_label_checks(off, _blind(det), det, SimpleNamespace(gate_label_days=0.0, store_url=url))
    assert off.passed and off.labels is None


def test_no_labels_means_no_report(tmp_path):
    from sensorguard.pipelines.live_gate import evaluate_on_labels

    assert evaluate_on_labels(object(), url=f"sqlite:///{tmp_path / 'empty.db'}") is None  # type: ignore[arg-type]


def test_a_store_window_that_is_a_regime_change_for_the_candidate_fails(labelled_store):
    from sensorguard.data.simulator import simulate_pump
    from sensorguard.pipelines.drift import training_profile
    from sensorguard.pipelines.gate import GateDecision
    from sensorguard.pipelines.live_gate import add_label_checks, evaluate_on_labels

    det, url = labelled_store["detector"], labelled_store["url"]
    train = simulate_pump(days=4, seed=1, failures=False)
    profile = training_profile(
        train.drop(columns=["timestamp", "asset_id", "machine_status", "failure_mode"])
    )
    ok = evaluate_on_labels(det, det, url=url, candidate_profile=profile)
    assert ok is not None and ok["candidate"]["regime_change"] == {}
    assert ("store window regime", True) in [(n, p) for n, p, _d in ok["checks"]]
    # a candidate trained where bearing_temp read 40 °C lower (a generated shift): the
    # whole window is outside its range from the first reading
    moved = copy.deepcopy(profile)
    moved["sensors"]["bearing_temp"]["min"] -= 40.0
    moved["sensors"]["bearing_temp"]["max"] -= 40.0
    report = evaluate_on_labels(det, det, url=url, candidate_profile=moved)
    assert report is not None
    (asset,) = report["candidate"]["regime_change"]
    assert (
        report["candidate"]["regime_change"][asset]["assets"][asset]["sensors"][0]["sensor"]
        == "bearing_temp"
    )
    failed = [(n, d) for n, p, d in report["checks"] if not p]
    assert [n for n, _d in failed] == ["store window regime"]
    assert "bearing_temp" in failed[0][1] and "retrain" in failed[0][1]
    decision = GateDecision(
        passed=True, candidate_version=2, production_version=1, candidate={}, production={}
    )
    settings = SimpleNamespace(gate_label_days=30.0, store_url=url)
    add_label_checks(decision, det, det, settings, candidate_profile=moved)
    assert not decision.passed and any("regime change" in r for r in decision.reasons)
