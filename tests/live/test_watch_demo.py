"""The live part of the demo: simulated readings through the live path, in-process."""

from __future__ import annotations

from pathlib import Path

import pytest


def test_live_demo_streams_and_raises_the_injected_failures(
    sg_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sensorguard.config import get_settings
    from sensorguard.data.simulator import simulate_pump
    from sensorguard.detectors import make_detector
    from sensorguard.live.demo import run_live_demo
    from sensorguard.store.alarms import list_alarms

    train = simulate_pump(days=4, seed=1, failures=False)
    X = train.drop(columns=["timestamp", "asset_id", "machine_status", "failure_mode"])
    make_detector("operating-states").fit(X).save(tmp_path / "model")
    seen = []
    report = run_live_demo(
        get_settings(), days=1.5, model=str(tmp_path / "model"), on_transition=seen.append
    )
    assert report.readings == 1.5 * 24 * 60
    assert report.failures_injected == 2 and report.failures_caught == 2
    stored, _ = list_alarms(asset="pump-live", kind="failure", url=report.store_url)
    assert len(stored) == report.failure_events >= 2
    assert next(t.action for t in seen if t.kind == "failure") == "opened"
    # a second run continues the asset's history: new readings, new alarms
    again = run_live_demo(get_settings(), days=0.5, model=str(tmp_path / "model"))
    assert again.readings == 720
    from sensorguard.store.alarms import asset_live_status

    status = asset_live_status(["pump-live"], url=report.store_url)["pump-live"]
    assert status["scored"] == 2160 + 720 and status["late"] == 0
    assert all(t.start > max(s.start for s in seen) for t in again.transitions)
