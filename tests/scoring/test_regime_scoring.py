"""`sensorguard score` reports the regime-change verdict instead of one alarm over a file.

The verdict and the suppression are ``evaluation.regime``'s (the watch service gives
the same alarms reading by reading: ``tests/live/test_watch.py``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from sensorguard.cli import app
from sensorguard.data import Readings, write_frame
from sensorguard.data.simulator import simulate_pump
from sensorguard.detectors.states import OperatingStateDetector
from sensorguard.pipelines.drift import training_profile

runner = CliRunner()


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    root = tmp_path_factory.mktemp("regime_score")
    train = Readings.from_frame(simulate_pump(days=3, seed=31, failures=False))
    det = OperatingStateDetector(silhouette_sample=1500, max_states=5).fit(train.X)
    det.save(root / "model")
    profile = training_profile(train.X)
    (root / "model" / "training_profile.json").write_text(json.dumps(profile))
    det.save(root / "bare")  # no training profile: no verdict
    return {"root": root, "detector": det, "profile": profile}


def _shifted(asset: str, seed: int, by: float) -> pd.DataFrame:
    f = simulate_pump(days=1, seed=seed, n_failures=1, asset_id=asset)
    f["bearing_temp"] += by  # from the first reading: a replaced, offset sensor
    return f


def test_regime_of_readings_judges_each_asset_and_drops_only_its_alarm(model) -> None:
    from sensorguard.evaluation.regime import apply_regime
    from sensorguard.scoring.readings import detect_readings

    both = Readings.from_frame(
        pd.concat([_shifted("pump-a", 32, 40.0), _shifted("pump-b", 33, 0.0)], ignore_index=True)
    )
    raw = detect_readings(model["detector"], both)
    result, regimes = apply_regime(raw, both, model["profile"])
    assert regimes is not None and regimes.regime_change
    assert set(regimes.changed()) == {"pump-a"}
    (shift,) = regimes.verdicts["pump-a"].sensors
    assert shift.sensor == "bearing_temp" and shift.median > shift.train_max
    a = (both.asset == "pump-a").to_numpy()
    # pump-a's alarm over the new regime is gone, pump-b's flags are untouched
    assert raw.is_anomaly[a][:200].any() and not result.is_anomaly[a][:200].any()
    assert np.array_equal(result.is_anomaly[~a], raw.is_anomaly[~a])
    assert regimes.removed == int(raw.is_anomaly.sum() - result.is_anomaly.sum()) > 0
    d = regimes.to_dict()
    assert d["verdict"] == "regime_change" and list(d["assets"]) == ["pump-a"]
    # no profile (folder model, older version): no verdict, nothing changed
    assert apply_regime(raw, both, None) == (raw, None)


def test_score_prints_the_verdict_and_no_failure_alarm_over_it(model) -> None:
    root = Path(model["root"])  # type: ignore[arg-type]
    write_frame(_shifted("pump-a", 32, 40.0), root / "shifted.csv")
    out = root / "out.csv"
    res = runner.invoke(
        app, ["score", str(root / "shifted.csv"), "-m", str(root / "model"), "-o", str(out)]
    )
    assert res.exit_code == 0, res.output
    assert (
        "regime change: bearing_temp outside the training range from the first reading"
        in res.output
    )
    assert "retrain" in res.output
    frame = pd.read_csv(out)
    assert not frame["is_anomaly"].iloc[:200].any()
    bare = runner.invoke(
        app, ["score", str(root / "shifted.csv"), "-m", str(root / "bare"), "-o", str(out)]
    )
    assert bare.exit_code == 0 and "regime change" not in bare.output
    assert pd.read_csv(out)["is_anomaly"].iloc[:200].any()  # one alarm over the file
