"""Per-asset calibration (``asset-calibrated``) and fleet planning, without servers.

A fleet of simulated pumps at different operating points: the calibrated fleet model
sees each pump at its own baseline, saves and loads without pickle, and scores an asset
it never saw like an uncalibrated model would; readings-level scoring binds every asset
block to its own baseline.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sensorguard.data.simulator import SENSORS
from sensorguard.errors import SensorGuardError

FAST = {"max_states": 4, "silhouette_sample": 2000}
S = list(SENSORS)


@pytest.fixture(scope="module")
def fleet() -> Any:
    from sensorguard.pipelines.fleet import simulate_fleet

    return simulate_fleet(4, days=3, seed=3, spread=2.0)


def _fit(fleet: Any, **kw: Any) -> Any:
    from sensorguard.detectors import make_detector

    normal = fleet[fleet["machine_status"] == "NORMAL"]
    det = make_detector("asset-calibrated", base_params=FAST, **kw)
    return det.fit(normal[S], assets=normal["asset_id"])


def test_calibration_moves_every_asset_onto_the_fleet_baseline(fleet: Any) -> None:
    from sensorguard.detectors import make_detector

    det = _fit(fleet)
    assert det.assets_ == ["pump-00", "pump-01", "pump-02", "pump-03"]
    normal = fleet[fleet["machine_status"] == "NORMAL"]
    pooled = make_detector("operating-states", **FAST).fit(normal[S])
    # normal readings of each pump score lower against its own baseline than pooled
    # against the blur of all four (the spread of operating points is the point)
    own, blur = [], []
    for asset, rows in normal.groupby("asset_id"):
        own.append(np.median(det.for_asset(asset).score_samples(rows[S])))
        blur.append(np.median(pooled.score_samples(rows[S]) / pooled.threshold_))
    own_rel = np.asarray(own) / det.threshold_
    assert np.all(np.isfinite(own_rel))
    assert own_rel.mean() < np.mean(blur), (own_rel, blur)
    # per-asset gains stay within their documented range and differ between assets
    assert det.gains_.min() >= 0.5 and det.gains_.max() <= 2.0
    assert np.ptp(det.offsets_, axis=0).max() > 0
    assert det.for_asset("never-seen").asset is None  # unknown: uncalibrated
    assert det.for_asset("pump-01").asset == "pump-01"


def test_saved_pickle_free_and_scores_identically(fleet: Any, tmp_path: Path) -> None:
    from sensorguard.detectors import load_detector

    det = _fit(fleet, per_asset_threshold=True)
    det.save(tmp_path / "model")
    assert {p.name for p in (tmp_path / "model").iterdir()} >= {
        "detector.json",
        "arrays.npz",
        "base",
    }
    with np.load(tmp_path / "model" / "arrays.npz", allow_pickle=False) as npz:
        assert {"offsets_", "gains_", "levels_"} <= set(npz.files)
    back = load_detector(tmp_path / "model")
    a = det.detect_assets(fleet[S], fleet["asset_id"])
    b = back.detect_assets(fleet[S], fleet["asset_id"])
    np.testing.assert_allclose(a.score, b.score)
    np.testing.assert_array_equal(a.is_anomaly, b.is_anomaly)
    assert back.for_asset("pump-02").detect(fleet[S].head(50)).score.shape == (50,)


def test_readings_scoring_binds_each_asset(fleet: Any) -> None:
    from sensorguard.data import Readings
    from sensorguard.scoring.readings import detect_readings

    det = _fit(fleet)
    readings = Readings.from_frame(fleet, source="fleet")
    res = detect_readings(det, readings)
    direct = det.detect_assets(readings.X, readings.asset)
    np.testing.assert_allclose(res.score, direct.score)


def test_bad_parameters_are_one_line_errors(fleet: Any) -> None:
    from sensorguard.detectors import make_detector

    with pytest.raises(SensorGuardError, match="another detector"):
        make_detector("asset-calibrated", base="asset-calibrated").fit(fleet[S])
    with pytest.raises(SensorGuardError, match="unknown detector"):
        make_detector("asset-calibrated", base="nope").fit(fleet[S])
    with pytest.raises(SensorGuardError, match="asset ids for"):
        make_detector("asset-calibrated", base_params=FAST).fit(fleet[S], assets=["a"])


def test_fleet_default_detector_for_several_assets(fleet: Any) -> None:
    from sensorguard.config import get_settings
    from sensorguard.data import Readings
    from sensorguard.pipelines.fleet import fleet_detector

    settings = get_settings()
    several = Readings.from_frame(fleet, source="fleet")
    one = Readings.from_frame(fleet[fleet["asset_id"] == "pump-00"], source="one")
    assert fleet_detector(several, None, {"max_states": 4}, settings) == (
        "asset-calibrated",
        {"base": settings.detector, "base_params": {"max_states": 4}},
    )
    assert fleet_detector(several, "pca", None, settings) == ("pca", None)
    assert fleet_detector(one, None, None, settings) == (None, None)
    off = settings.model_copy(update={"fleet_calibration": False})
    assert fleet_detector(several, None, None, off) == (None, None)
    # a streaming default cannot be calibrated per asset: the fleet keeps operating-states
    for streaming in ("pca-smoothed", "drift-robust", "knn"):
        other = settings.model_copy(update={"detector": streaming})
        assert fleet_detector(several, None, None, other) == (
            "asset-calibrated",
            {"base": "operating-states", "base_params": {}},
        )
    plain = settings.model_copy(update={"detector": "iforest"})
    assert fleet_detector(several, None, None, plain)[1] == {"base": "iforest", "base_params": {}}


def test_plan_training_per_machine_type(sg_home: Path) -> None:
    from sensorguard.pipelines.fleet import plan_training
    from sensorguard.store.assets import put_asset

    base = {"window_days": 7.0, "eval_fraction": 0.3, "detector": None, "detector_params": {}}
    # nothing registered, no data source: the default model (extraction asks for data)
    assert [s["model"] for s in plan_training(base, "dflt")] == ["dflt"]
    # a data file trains the default model, as before
    assert plan_training({**base, "data_path": "x.csv"}, "dflt")[0]["data_path"] == "x.csv"
    # the asset registry: one model per machine type with its assets
    put_asset("p1", "pump-a")
    put_asset("p2", "pump-a")
    put_asset("f1", "fan-b")
    plan = plan_training(base, "dflt")
    assert [(s["model"], s["asset_ids"]) for s in plan] == [
        ("fan-b", ["f1"]),
        ("pump-a", ["p1", "p2"]),
    ]
    # an explicit list wins; job field names are accepted
    listed = plan_training(
        {
            **base,
            "models": [{"model": "m1", "data_path": "a.csv", "params": {"k": 1}, "holdout": 0.4}],
        },
        "dflt",
    )
    assert listed[0]["detector_params"] == {"k": 1} and listed[0]["eval_fraction"] == 0.4
    with pytest.raises(SensorGuardError, match="listed twice"):
        plan_training({**base, "models": [{"model": "m"}, {"model": "m"}]}, "dflt")
    with pytest.raises(SensorGuardError, match="model name"):
        plan_training({**base, "models": [{"data_path": "a.csv"}]}, "dflt")


def test_live_scoring_calibrates_each_asset_like_one_batch_pass(fleet: Any) -> None:
    from sensorguard.data import Readings
    from sensorguard.scoring.readings import detect_readings
    from sensorguard.scoring.stream import AssetStreams

    det = _fit(fleet)
    part = fleet[fleet["asset_id"].isin(["pump-01", "pump-02"])].reset_index(drop=True)
    readings = Readings.from_frame(part, source="two pumps")
    batch = detect_readings(det, readings)
    A = det.prepare(readings.X)
    assets = readings.asset.tolist()
    streams = AssetStreams(det)
    score = np.empty(len(A))
    flags = np.empty(len(A), dtype=bool)
    # interleave the two pumps in chunks of 7 readings, as a predictor would receive them
    order = np.argsort(np.arange(len(A)) % (len(A) // 2), kind="stable")
    for lo in range(0, len(order), 7):
        rows = order[lo : lo + 7]
        res = streams.score(A[rows].copy(), [assets[i] for i in rows])
        score[rows], flags[rows] = res.score, res.is_anomaly
    np.testing.assert_allclose(score, batch.score, rtol=1e-6)
    np.testing.assert_array_equal(flags, batch.is_anomaly)
    one = streams.score(A[:1].copy(), ["pump-02"])  # the one-reading path binds too
    bound = det.for_asset("pump-02").compute(A[:1].copy(), True).score
    np.testing.assert_allclose(one.score, bound, rtol=1e-6)
    assert not np.allclose(bound, det.compute(A[:1].copy(), True).score)
