"""``sensorguard demo`` end to end (reduced size) on a temporary embedded store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.lifecycle import seed_store
from typer.testing import CliRunner

from sensorguard.config import get_settings


@pytest.mark.slow
def test_demo_runs_twice_and_leaves_a_production_model(
    sg_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sensorguard.cli import _common, app
    from sensorguard.registry import history, list_versions, load_by_alias

    seed_store(sg_home)
    monkeypatch.setattr(_common.console, "width", 200)
    out_dir = sg_home / "demo-out"
    runner = CliRunner()

    first = runner.invoke(app, ["demo", "--quick", "--output-dir", str(out_dir)])
    assert first.exit_code == 0, first.output
    assert "gate passed for v1" in first.output
    assert "failures found vs. truth" in first.output
    assert "loaded by alias" in first.output
    assert "sensorguard ui" in first.output

    report = json.loads((out_dir / "demo_report.json").read_text())
    assert report["production_version"] == report["scored_version"] == 1
    assert report["events_total"] >= 5  # every failure mode appears in the new readings
    assert {m["mode"] for m in report["modes"]} >= {"bearing_wear", "leak", "spike"}
    assert report["events_detected"] >= 4
    assert (out_dir / "demo_scores.png").read_bytes()[:4] == b"\x89PNG"

    settings = get_settings()
    loaded = load_by_alias(settings.model_name, "production", settings)
    assert loaded.version == 1

    # a second run trains a new candidate and the gate judges it against production v1
    second = runner.invoke(app, ["demo", "--quick", "--output-dir", str(out_dir)])
    assert second.exit_code == 0, second.output
    assert "against production v1" in second.output
    report2 = json.loads((out_dir / "demo_report.json").read_text())
    assert report2["candidate_version"] == 2
    assert report2["gate"]["production_version"] == 1
    assert report2["gate"]["production"]["f1"] is not None
    versions = {v.version: v for v in list_versions(settings, with_metrics=False)}
    assert set(versions) == {1, 2}
    production = [v for v, info in versions.items() if "production" in info.aliases]
    assert production == [2 if report2["gate_passed"] else 1]
    assert [e.trigger for e in history(settings)] == ["demo", "demo"]
