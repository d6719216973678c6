"""Drift measures (pure functions) and `sensorguard drift --reference` (no registry)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from sensorguard.errors import DataValidationError, SchemaMismatchError
from sensorguard.pipelines.drift import compute_drift, training_profile

SENSORS = ["flow", "pressure", "temp", "vibration"]


def _frame(n: int, seed: int, shift: dict[str, float] | None = None) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(rng.normal(size=(n, len(SENSORS))), columns=SENSORS)
    for col, by in (shift or {}).items():
        df[col] += by
    return df


@pytest.fixture(scope="module")
def profile() -> dict:
    return training_profile(_frame(5000, seed=0))


def test_profile_is_json_with_bins_that_hold_the_training_data(profile: dict) -> None:
    again = json.loads(json.dumps(profile))
    assert again == profile
    for p in profile["sensors"].values():
        assert len(p["fractions"]) == len(p["edges"]) + 2  # bins + missing
        assert math.isclose(sum(p["fractions"]), 1.0)
        assert all(abs(f - 0.1) < 0.01 for f in p["fractions"][:-1])  # deciles
        assert p["fractions"][-1] == 0.0


def test_same_distribution_is_not_drift(profile: dict) -> None:
    report = compute_drift(profile, _frame(1000, seed=1))
    assert not report.drifted
    assert report.overall_psi < 0.05
    assert all(s.psi < 0.1 and s.mean_shift < 0.2 for s in report.sensors)


def test_shifted_regime_is_drift_and_names_the_sensors(profile: dict) -> None:
    report = compute_drift(profile, _frame(1000, seed=2, shift={"flow": 2.0, "pressure": 1.5}))
    assert report.drifted
    assert [s.sensor for s in report.top(2)] == ["flow", "pressure"]
    flow = next(s for s in report.sensors if s.sensor == "flow")
    assert flow.mean_shift == pytest.approx(2.0, abs=0.15)
    assert "DRIFT" in report.summary() and "flow" in report.summary()
    metrics = report.metrics()
    assert metrics["drift_detected"] == 1.0 and metrics["psi.flow"] == flow.psi


@pytest.mark.parametrize("metric", ["mean_shift", "psi"])
def test_threshold_and_metric_decide(profile: dict, metric: str) -> None:
    recent = _frame(1000, seed=3, shift={"temp": 0.8})
    report = compute_drift(profile, recent, metric=metric)
    expected = report.overall_psi if metric == "psi" else report.overall_mean_shift
    assert report.score == expected
    assert report.threshold == {"mean_shift": 0.75, "psi": 1.0}[metric]
    assert compute_drift(profile, recent, threshold=expected * 0.9, metric=metric).drifted
    assert not compute_drift(profile, recent, threshold=expected * 1.1, metric=metric).drifted


def test_a_sensor_that_stops_reporting_drifts_without_breaking_json(profile: dict) -> None:
    recent = _frame(500, seed=4)
    recent["vibration"] = np.nan
    report = compute_drift(profile, recent)
    vib = next(s for s in report.sensors if s.sensor == "vibration")
    assert math.isfinite(vib.psi) and vib.psi > 1.0
    assert report.drifted  # by mean shift: undefined for a silent sensor
    assert compute_drift(profile, recent, metric="psi").drifted
    out = report.to_dict()
    json.dumps(out, allow_nan=False)  # NaN means become None, PSI stays a number
    row = next(s for s in out["sensors"] if s["sensor"] == "vibration")
    assert row["mean_recent"] is None and row["psi"] == vib.psi


def test_constant_training_sensor_does_not_divide_by_zero() -> None:
    train = _frame(300, seed=5)
    train["temp"] = 20.0
    report = compute_drift(training_profile(train), _frame(300, seed=6, shift={"temp": 20.0}))
    assert all(math.isfinite(s.psi) and math.isfinite(s.mean_shift) for s in report.sensors)


def test_bad_inputs_say_what_is_wrong(profile: dict) -> None:
    with pytest.raises(SchemaMismatchError, match="vibration"):
        compute_drift(profile, _frame(10, seed=7).drop(columns=["vibration"]))
    with pytest.raises(DataValidationError, match="no recent readings"):
        compute_drift(profile, _frame(0, seed=7))
    with pytest.raises(DataValidationError, match="threshold"):
        compute_drift(profile, _frame(10, seed=7), threshold=0)
    with pytest.raises(DataValidationError, match="unknown drift metric"):
        compute_drift(profile, _frame(10, seed=7), metric="kl")
    with pytest.raises(DataValidationError, match="not a SensorGuard training profile"):
        compute_drift({"sensors": {}}, _frame(10, seed=7))
    with pytest.raises(DataValidationError, match="no readings"):
        training_profile(_frame(0, seed=7))


# ---------------------------------------------------------------- CLI


def _csv(path: Path, df: pd.DataFrame) -> Path:
    out = df.copy()
    out.insert(0, "timestamp", pd.date_range("2026-01-01", periods=len(df), freq="1min"))
    out.to_csv(path, index=False)
    return path


def test_cli_drift_against_reference(tmp_path: Path) -> None:
    from sensorguard.cli import app

    ref = _csv(tmp_path / "ref.csv", _frame(2000, seed=0))
    same = _csv(tmp_path / "same.csv", _frame(500, seed=1))
    moved = _csv(tmp_path / "moved.csv", _frame(500, seed=2, shift={"flow": 3.0}))
    runner = CliRunner()

    res = runner.invoke(app, ["drift", str(same), "--reference", str(ref), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["drifted"] is False

    plot = tmp_path / "psi.png"
    args = ["drift", str(moved), "-r", str(ref), "--fail-on-drift", "--plot", str(plot)]
    res = runner.invoke(app, args)
    assert res.exit_code == 3, res.output
    assert "DRIFT" in res.stdout and "flow" in res.stdout
    assert plot.stat().st_size > 1000

    res = runner.invoke(app, ["drift", str(tmp_path / "nope.csv"), "-r", str(ref)])
    assert res.exit_code == 2
    assert "Traceback" not in res.output and "nope.csv" in res.output
