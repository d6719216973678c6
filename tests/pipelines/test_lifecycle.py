"""The model lifecycle on a temporary embedded MLflow store (SQLite + local artifacts).

Real MLflow, real detector, small simulated data: train → register → quality gate →
promote → rollback → load by alias without pickle → identical scores; the audit trail;
idempotent retraining per Airflow run id; the CLI's list/history/show/rollback and errors.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from support.lifecycle import seed_store
from typer.testing import CliRunner

from sensorguard import registry
from sensorguard.config import Settings, get_settings
from sensorguard.errors import RegistryError, SensorGuardError
from sensorguard.pipelines.gate import decide

FAST = {"max_states": 4, "silhouette_sample": 2000}


def _readings(days: float = 5.0, seed: int = 1) -> Any:
    from sensorguard.data import Readings
    from sensorguard.data.simulator import simulate_pump

    frame = simulate_pump(days=days, seed=seed, freq="2min")
    return Readings.from_frame(frame, source=f"sim seed {seed}")


@pytest.fixture
def store(sg_home: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    # thresholds sized for 2-day evaluation windows holding two or three failures
    monkeypatch.setenv("SENSORGUARD_GATE_MIN_F1", "0.5")
    monkeypatch.setenv("SENSORGUARD_GATE_MIN_EVENT_RECALL", "0.6")
    monkeypatch.setenv("SENSORGUARD_GATE_MAX_FALSE_ALARMS_PER_DAY", "2")
    get_settings.cache_clear()
    seed_store(sg_home)
    return get_settings()


def _train(settings: Settings, readings: Any, **kw: Any) -> Any:
    from sensorguard.pipelines.training import train_and_register

    params = {**FAST, **kw.pop("params", {})}
    return train_and_register(
        readings, params=params, settings=settings, trigger="test", holdout=0.4, **kw
    )


# ---------------------------------------------------------------- gate logic (no MLflow)


def _m(f1: float, rec: float, fapd: float = 0.0, events: int = 4) -> dict[str, Any]:
    return {"f1": f1, "event_recall": rec, "false_alarms_per_day": fapd, "events_total": events}


def test_gate_absolute_thresholds_without_production() -> None:
    s = Settings(gate_min_f1=0.5, gate_min_event_recall=0.8, gate_max_false_alarms_per_day=1)
    ok = decide(_m(0.7, 0.9), None, s, candidate_version=1, production_version=None)
    assert ok.passed and ok.reasons == []
    bad = decide(_m(0.4, 0.75, 3.0), None, s, candidate_version=1, production_version=None)
    assert not bad.passed
    assert len(bad.reasons) == 3
    assert any("F1 0.400 < minimum 0.500" in r for r in bad.reasons)
    assert any("event recall 0.750 < minimum 0.800" in r for r in bad.reasons)
    assert any("false alarms/day 3.00 > maximum 1.00" in r for r in bad.reasons)


def test_gate_refuses_evaluation_without_failures() -> None:
    s = Settings(gate_min_f1=0.0, gate_min_event_recall=0.0)
    d = decide(_m(0.0, 0.0, events=0), None, s, candidate_version=1, production_version=None)
    assert not d.passed
    assert "cannot verify detection" in d.reasons[0]


def test_gate_regression_tolerance_against_production() -> None:
    s = Settings(gate_min_f1=0.5, gate_min_event_recall=0.5, gate_tolerance=0.02)
    prod = _m(0.80, 1.0)
    within = decide(_m(0.785, 1.0), prod, s, candidate_version=2, production_version=1)
    assert within.passed
    worse = decide(_m(0.75, 1.0), prod, s, candidate_version=2, production_version=1)
    assert not worse.passed
    assert worse.reasons == ["F1 0.750 vs production v1 0.800 (drops more than tolerance 0.020)"]
    better = decide(_m(0.9, 1.0), prod, s, candidate_version=2, production_version=1)
    assert better.passed


# ---------------------------------------------------------------- the whole lifecycle


def test_lifecycle_gate_promote_archive_rollback(store: Settings) -> None:
    from sensorguard.pipelines import lifecycle

    data = _readings(seed=1)

    # v1: a sound detector, nothing in production yet → absolute thresholds only
    r1 = _train(store, data)
    assert r1.version == 1 and r1.evaluation is not None
    out1 = lifecycle.gate_and_promote(1, r1.eval_readings, settings=store, trigger="test")
    assert out1.action == "promote", out1.decision.summary()
    assert out1.decision.production_version is None

    # v2: a deliberately bad threshold (nothing alarms) → rejected, production unchanged
    r2 = _train(store, data, params={"threshold_margin": 100.0})
    out2 = lifecycle.gate_and_promote(2, r2.eval_readings, settings=store, trigger="test")
    assert out2.action == "reject"
    d2 = out2.decision
    assert d2.production_version == 1 and d2.production is not None
    assert d2.candidate["f1"] < d2.production["f1"]
    # rejected on the absolute F1 minimum and as a regression against production v1
    assert any(r.startswith("F1 ") and "< minimum 0.500" in r for r in d2.reasons), d2.reasons
    assert any(
        r.startswith("F1 ") and "vs production v1" in r and "drops more than" in r
        for r in d2.reasons
    ), d2.reasons

    # v3: a sound detector again (deterministic: as good as v1) → promoted over v1
    r3 = _train(store, data)
    out3 = lifecycle.gate_and_promote(3, r3.eval_readings, settings=store, trigger="test")
    assert out3.action == "promote", out3.decision.summary()
    assert out3.decision.production_version == 1
    assert out3.decision.candidate["f1"] >= out3.decision.production["f1"] - store.gate_tolerance

    by_version = {v.version: v for v in registry.list_versions(store)}
    assert by_version[3].aliases == ["production"]
    assert by_version[3].tags["lifecycle"] == "production"
    assert by_version[3].tags["gate"] == "passed"
    assert by_version[1].aliases == ["previous"]
    assert by_version[1].tags["lifecycle"] == "archived"
    assert "archived_at" in by_version[1].tags
    assert by_version[2].aliases == []
    assert by_version[2].tags["gate"] == "rejected"
    assert "F1" in by_version[2].tags["gate_reasons"]
    assert by_version[3].metrics["eval_f1"] == pytest.approx(r3.evaluation["f1"])

    # rollback: production ← previous in one step, the tags swap
    rb = lifecycle.rollback(settings=store, trigger="test", reason="bad alarms at night")
    assert (rb.from_version, rb.to_version) == (3, 1)
    by_version = {v.version: v for v in registry.list_versions(store, with_metrics=False)}
    assert by_version[1].aliases == ["production"]
    assert by_version[1].tags["lifecycle"] == "production"
    assert by_version[3].aliases == ["previous"]
    assert by_version[3].tags["lifecycle"] == "archived"
    assert "rolled_back_at" in by_version[3].tags

    # the audit trail holds every action, newest first, with the gate metrics
    events = registry.history(store)
    assert [(e.action, e.from_version, e.to_version) for e in events] == [
        ("rollback", 3, 1),
        ("promote", 1, 3),
        ("reject", 1, 2),
        ("promote", None, 1),
    ]
    assert events[0].reason == "bad alarms at night"
    assert all(e.trigger == "test" for e in events)
    promote3 = events[1]
    assert promote3.gate is not None
    assert promote3.gate["candidate"]["f1"] == pytest.approx(out3.decision.candidate["f1"])
    assert promote3.gate["production"]["f1"] == pytest.approx(out3.decision.production["f1"])


def test_gate_promotes_a_clearly_better_candidate_over_a_bad_production(
    store: Settings,
) -> None:
    # the whole-lifecycle test above promotes an *equal* candidate; here production is
    # bad (forced in) and the candidate strictly better, checked through the real gate
    from sensorguard.pipelines import lifecycle

    data = _readings(seed=1)
    bad = _train(store, data, params={"threshold_margin": 100.0})
    lifecycle.promote(bad.version, settings=store, force=True, reason="test", trigger="test")
    good = _train(store, data)
    out = lifecycle.gate_and_promote(good.version, good.eval_readings, settings=store)
    assert out.action == "promote", out.decision.summary()
    d = out.decision
    assert d.production_version == bad.version and d.production is not None
    assert d.candidate["f1"] > d.production["f1"] + store.gate_tolerance
    assert registry.show_version(good.version, store).aliases == ["production"]
    assert registry.show_version(bad.version, store).aliases == ["previous"]


def test_training_run_registry_errors_forced_promotion_and_pickle_free_loading(
    store: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow.tracking import MlflowClient

    from sensorguard.pipelines import lifecycle
    from sensorguard.pipelines.training import data_sha256
    from sensorguard.registry import load_by_alias, load_model, resolve_alias
    from sensorguard.registry.runs import load_holdout

    data = _readings(seed=2)
    r = _train(store, data)
    run = MlflowClient(store.resolved_tracking_uri).get_run(r.run_id)
    p, m, t = run.data.params, run.data.metrics, run.data.tags
    assert p["detector"] == "operating-states"
    assert p["detector.max_states"] == "4"
    assert p["sensors"].split(";") == list(data.sensors)
    assert p["data_start"].startswith("2026-01-01")
    assert int(p["rows"]) == len(data)
    for key in ("silhouette", "n_states", "threshold", "training_rows", "eval_f1",
                "eval_precision", "eval_recall", "eval_event_recall",
                "eval_false_alarms_per_day", "eval_events_total"):  # fmt: skip
        assert key in m, key
    assert m["training_rows"] == r.train_rows < len(data)
    assert t["data_sha256"] == data_sha256(data) == r.data_sha256
    assert t["trigger"] == "test" and t["sensorguard_version"]
    assert int(t["rows_train"]) + int(t["rows_eval"]) == len(data)
    files = {f.path for f in MlflowClient(store.resolved_tracking_uri).list_artifacts(r.run_id)}
    assert {"state_profiles.json", "failure_types.json", "profiles.png",
            "score_over_time.png", "schema.json", "evaluation", "drift"} <= files  # fmt: skip
    art = Path(run.info.artifact_uri.removeprefix("file://"))
    assert art.is_relative_to(store.home.resolve() / "artifacts")
    assert (art / "profiles.png").read_bytes()[:4] == b"\x89PNG"
    held = load_holdout(r.run_id, store)
    assert held is not None and len(held) == r.eval_rows
    assert list(held.sensors) == list(data.sensors)
    pd.testing.assert_frame_equal(held.X, r.eval_readings.X)

    # nothing in production yet: clear errors from the library and the CLI
    with pytest.raises(RegistryError, match="has no version with alias 'production'"):
        load_by_alias(store.model_name, "production", store)
    res = _cli("models", "rollback")
    assert res.exit_code == 2
    assert "no 'previous' version to roll back to" in res.output
    res = _cli("models", "show", "7")
    assert res.exit_code == 2 and "has no version 7" in res.output

    # a forced promotion needs a reason and is audited as forced
    with pytest.raises(SensorGuardError, match="needs a passed quality gate"):
        lifecycle.promote(r.version, settings=store)
    with pytest.raises(SensorGuardError, match="needs a reason"):
        lifecycle.promote(r.version, settings=store, force=True)
    out = lifecycle.promote(r.version, settings=store, force=True, reason="hotfix", trigger="test")
    assert out.action == "promote"
    info = registry.show_version(r.version, store)
    assert info.tags["gate"] == "forced" and info.tags["force_reason"] == "hotfix"
    assert info.aliases == ["production"]
    (event,) = registry.history(store)
    assert event.forced and event.reason == "hotfix"
    with pytest.raises(SensorGuardError, match="already the production version"):
        lifecycle.promote(r.version, settings=store, force=True, reason="again")

    # load by alias with pickle deserialization disabled: identical output
    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "false")
    assert resolve_alias(store.model_name, "production", store) == r.version
    loaded = load_by_alias(store.model_name, "production", store)
    assert (loaded.version, loaded.alias, loaded.run_id) == (r.version, "production", r.run_id)
    assert loaded.sensors == list(data.sensors)
    assert loaded.threshold == r.detector.threshold_
    assert loaded.input_example is not None
    assert list(loaded.input_example.columns) == data.sensors

    X = data.X.iloc[::-1]  # any order of rows; columns reversed too
    X = X[list(reversed(X.columns))]
    expected = r.detector.detect(X).to_frame(index=X.index)
    got = loaded.predict(X)
    pd.testing.assert_frame_equal(got, expected)
    assert got["score"].dtype == np.float64 and got["is_anomaly"].dtype == bool
    assert got["state"].dtype == np.int64
    np.testing.assert_array_equal(loaded.detector.score_samples(X), r.detector.score_samples(X))
    # no pickle anywhere in the logged model
    arts = store.home / "artifacts"
    assert not list(arts.rglob("*.pkl")) and not list(arts.rglob("*.pickle"))
    assert list(arts.rglob("model_code.py")) or list(arts.rglob("python_model.py"))
    assert load_model(f"models:/{store.model_name}/{r.version}", store).version == r.version
    # the version carries its training (drift) profile and failure types, signed with it
    assert loaded.signed and loaded.training_profile is not None
    assert set(loaded.training_profile["sensors"]) == set(data.sensors)
    assert loaded.failure_types is not None and "types" in loaded.failure_types


@pytest.mark.slow
def test_pyfunc_loads_in_a_fresh_process_with_pickle_disabled(store: Settings) -> None:
    import json
    import os
    import subprocess
    import sys

    from sensorguard.pipelines.training import normal_rows

    data = _readings(seed=2)
    r = _train(store, data)
    code = (
        "import json, mlflow\n"
        "from sensorguard.registry import configure_mlflow, load_version\n"
        f"m = load_version('{store.model_name}', {r.version})\n"
        "configure_mlflow()\n"
        # MLflow's own pyfunc loader works too, pickle-free (models from code)
        f"p = mlflow.pyfunc.load_model('models:/{store.model_name}/{r.version}')\n"
        "assert p.predict(m.input_example)['score'].tolist() == "
        "m.predict(m.input_example)['score'].tolist()\n"
        "print(json.dumps(m.predict(m.input_example)['score'].tolist()))\n"
    )
    env = {**os.environ, "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "false"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    scores = json.loads(out.stdout.strip().splitlines()[-1])
    # the input example is the first training rows (normal readings of the train part)
    train_part = data.slice(0, r.train_rows + 1000)
    expected = r.detector.score_samples(normal_rows(train_part).head(5))
    assert scores == expected.tolist()


def test_idempotent_per_airflow_run_id(store: Settings) -> None:
    from sensorguard.registry import list_versions

    data = _readings(seed=2)
    first = _train(store, data, idempotency_key="scheduled__2026-01-06T00:00:00")
    again = _train(store, data, idempotency_key="scheduled__2026-01-06T00:00:00")
    assert not first.reused and again.reused
    assert (again.version, again.run_id) == (first.version, first.run_id)
    assert again.metrics["eval_f1"] == pytest.approx(first.metrics["eval_f1"])
    other = _train(store, data, idempotency_key="manual__2")
    assert other.version == first.version + 1
    versions = list_versions(store, with_metrics=False)
    assert [v.version for v in versions] == [2, 1]
    assert versions[1].tags["airflow_run_id"] == "scheduled__2026-01-06T00:00:00"


def test_registry_errors_are_clear(store: Settings) -> None:
    from sensorguard.pipelines.lifecycle import rollback
    from sensorguard.registry import load_by_alias, parse_model_uri, resolve_alias

    with pytest.raises(RegistryError, match="no registered model named 'nope'"):
        resolve_alias("nope", "production", store)
    with pytest.raises(RegistryError, match="no registered model"):
        load_by_alias("nope", "production", store)
    with pytest.raises(RegistryError, match="no registered model"):
        rollback(settings=store)
    with pytest.raises(RegistryError, match="cannot parse model URI"):
        parse_model_uri("models:/only-a-name")


def test_unreachable_server_is_a_registry_error(
    sg_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    with socket.socket() as s:  # a free port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
    get_settings.cache_clear()
    from sensorguard.registry import resolve_alias

    with pytest.raises(RegistryError, match="cannot reach the MLflow server") as info:
        resolve_alias("m", "production")
    assert "MLFLOW_TRACKING_URI" in (info.value.hint or "")
    assert not (sg_home / "mlflow.db").exists()


# ---------------------------------------------------------------- CLI


@pytest.fixture(autouse=True)
def _wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    from sensorguard.cli import _common

    monkeypatch.setattr(_common.console, "width", 240)
    monkeypatch.setattr(_common.err_console, "width", 240)


def _cli(*args: str) -> Any:
    from sensorguard.cli import app

    return CliRunner().invoke(app, list(args))


def test_cli_models_list_history_show_rollback(store: Settings, tmp_path: Path) -> None:
    from sensorguard.pipelines import lifecycle

    data = _readings(seed=1)
    path = tmp_path / "pump.csv"
    data.frame.to_csv(path, index=False)
    r1 = _train(store, data)
    lifecycle.promote(r1.version, settings=store, force=True, reason="first")

    res = _cli("train", str(path), "--param", "max_states=4", "--param", "silhouette_sample=2000",
               "--holdout", "0.4")  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "version 2" in res.output
    assert "quality gate" in res.output and "production v1" in res.output
    # same data and parameters as v1 (training is deterministic): as good, so promoted
    assert "promoted v2 to production" in res.output, res.output

    res = _cli("models", "list")
    assert res.exit_code == 0, res.output
    assert "production" in res.output and "archived" in res.output

    res = _cli("models", "show", "1")
    assert res.exit_code == 0, res.output
    assert "data_sha256" in res.output and "eval_f1" in res.output

    res = _cli("models", "history")
    assert res.exit_code == 0, res.output
    assert "promote" in res.output and "first" in res.output

    res = _cli("models", "rollback", "--reason", "operator request")
    assert res.exit_code == 0, res.output
    assert "production v2 → v1" in res.output
    assert registry.history(store)[0].action == "rollback"
    assert registry.show_version(1, store).aliases == ["production"]
    assert registry.show_version(2, store).aliases == ["previous"]

    res = _cli("models", "promote", "1", "--force")
    assert res.exit_code == 2 and "--reason" in res.output

    # a rejection is a normal outcome (exit 0) unless a script asks for a failure code
    bad = _train(store, data, params={"threshold_margin": 100.0})
    res = _cli("models", "promote", str(bad.version))
    assert res.exit_code == 0, res.output
    assert f"rejected v{bad.version}" in res.output and "production unchanged" in res.output
    res = _cli("models", "promote", str(bad.version), "--fail-on-reject")
    assert res.exit_code == 3
    assert registry.show_version(bad.version, store).tags["gate"] == "rejected"
    assert [e.action for e in registry.history(store)][:2] == ["reject", "reject"]


def test_cli_errors_without_tracebacks(store: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    res = _cli("models", "list")
    assert res.exit_code == 2
    assert "no registered model named 'sensor-failure-detector'" in res.output
    assert "Traceback" not in res.output
    res = _cli("models", "rollback")
    assert res.exit_code == 2 and "no registered model" in res.output
    res = _cli("models", "history")
    assert res.exit_code == 0 and "no lifecycle events" in res.output
    res = _cli("train", "does-not-exist.csv")
    assert res.exit_code == 2 and "Traceback" not in res.output
    res = _cli("train", "x.csv", "--param", "oops")
    assert res.exit_code == 2
