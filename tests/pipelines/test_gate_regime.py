"""The quality gate refuses a candidate whose evaluation data are a regime change for it.

The verdict is ``sensorguard score``'s and the watch service's (evaluation.regime),
computed against the training profile logged with the candidate's run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from support.lifecycle import seed_store

from sensorguard.config import Settings, get_settings


def _readings(days: float, seed: int, shift: float = 0.0, **kw: Any) -> Any:
    from sensorguard.data import Readings
    from sensorguard.data.simulator import simulate_pump

    frame = simulate_pump(days=days, seed=seed, freq="2min", **kw)
    frame["bearing_temp"] += shift  # from the first reading on: a generated regime change
    return Readings.from_frame(frame, source=f"sim seed {seed}")


def _decision() -> Any:
    from sensorguard.pipelines.gate import GateDecision

    return GateDecision(
        passed=True, candidate_version=2, production_version=None, candidate={}, production=None
    )


def test_regime_check_rejects_a_shifted_window_and_records_the_verdict() -> None:
    from sensorguard.pipelines.drift import training_profile
    from sensorguard.pipelines.gate import GateDecision, add_regime_check

    profile = training_profile(_readings(3, seed=1, failures=False).X)
    ok = _decision()
    add_regime_check(ok, _readings(2, seed=2), profile, "evaluation data")
    assert ok.passed and ok.regime is not None and ok.regime["verdict"] == "ok"
    bad = _decision()
    add_regime_check(bad, _readings(2, seed=2, shift=40.0), profile, "evaluation data")
    assert not bad.passed
    (reason,) = bad.reasons
    assert "regime change" in reason and "bearing_temp" in reason and "retrain" in reason
    assert bad.regime is not None and bad.regime["verdict"] == "regime_change"
    (verdict,) = bad.regime["assets"].values()
    assert [s["sensor"] for s in verdict["sensors"]] == ["bearing_temp"] and verdict["since"] == 0
    # it travels with the decision (XCom, audit)
    assert GateDecision.from_dict(bad.to_dict()).regime == bad.regime
    # no profile to judge by: noted, not failed
    none = _decision()
    add_regime_check(none, _readings(2, seed=2, shift=40.0), None, "evaluation data")
    assert none.passed and none.regime is None and "not judged" in none.checks[0].detail


@pytest.fixture
def store(sg_home: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("SENSORGUARD_GATE_MIN_F1", "0.0")
    monkeypatch.setenv("SENSORGUARD_GATE_MIN_EVENT_RECALL", "0.0")
    monkeypatch.setenv("SENSORGUARD_GATE_MAX_FALSE_ALARMS_PER_DAY", "1000")
    get_settings.cache_clear()
    seed_store(sg_home)
    return get_settings()


def test_gate_reads_the_candidates_profile_and_rejects_a_regime_change(store: Settings) -> None:
    from sensorguard.pipelines import lifecycle
    from sensorguard.pipelines.training import train_and_register
    from sensorguard.registry.versions import version_tags

    r1 = train_and_register(
        _readings(5, seed=1),
        params={"max_states": 4, "silhouette_sample": 2000},
        settings=store,
        trigger="test",
        holdout=0.4,
    )
    # the profile comes from the run (nothing passed in): the same data pass
    same = lifecycle.evaluate_gate(r1.version, _readings(2, seed=2), settings=store)
    assert same.regime is not None and same.regime["verdict"] == "ok"
    assert "training regime" in [c.name for c in same.checks]
    out = lifecycle.gate_and_promote(
        r1.version, _readings(2, seed=2, shift=40.0), settings=store, trigger="test"
    )
    assert out.action == "reject" and out.decision is not None
    assert out.decision.regime is not None and out.decision.regime["verdict"] == "regime_change"
    reasons = version_tags(store.model_name, r1.version, store)["gate_reasons"]
    assert "regime change" in reasons and "bearing_temp" in reasons and "retrain" in reasons
