"""OperatingStateDetector: conventions, schema enforcement, persistence, determinism."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from sensorguard.detectors import get_detector_class, load_detector, make_detector
from sensorguard.detectors.states import OperatingStateDetector, silhouettes
from sensorguard.errors import DataValidationError, NotFittedError, SchemaMismatchError
from sensorguard.evaluation.failure_types import assign_failure_type, profile_failures

SENSORS = ["a", "b", "c", "d"]
FAST = {"silhouette_sample": 1500, "max_states": 5}


def regimes(n: int, seed: int) -> pd.DataFrame:
    """Three operating regimes with correlated sensors in different units."""
    rng = np.random.default_rng(seed)
    level = np.repeat(rng.integers(0, 3, n // 50 + 1), 50)[:n].astype(float)
    load = 1.0 + level + rng.normal(0, 0.05, n)
    return pd.DataFrame(
        {
            "a": 100 * load + rng.normal(0, 2, n),
            "b": 3 * load**2 + rng.normal(0, 0.1, n),
            "c": 20 + 5 * load + rng.normal(0, 0.5, n),
            "d": rng.normal(0.0, 1.0, n),
        }
    )


@pytest.fixture(scope="module")
def train() -> pd.DataFrame:
    return regimes(3000, seed=1)


@pytest.fixture(scope="module")
def fitted(train: pd.DataFrame) -> OperatingStateDetector:
    return OperatingStateDetector(**FAST).fit(train)


def test_fit_returns_self(train: pd.DataFrame) -> None:
    det = OperatingStateDetector(**FAST)
    assert det.fit(train) is det


def test_learned_state_in_trailing_underscore_attributes(fitted: OperatingStateDetector) -> None:
    k = fitted.n_states_
    assert 3 <= k <= 5
    assert fitted.state_centers_.shape == (k, len(SENSORS))
    assert fitted.state_scales_.shape == (k, len(SENSORS))
    assert (fitted.state_scales_ > 0).all()
    assert fitted.state_sizes_.sum() == 3000
    assert set(fitted.silhouette_by_k_) == {"3", "4", "5"}
    assert fitted.silhouette_by_k_[str(k)] == pytest.approx(fitted.silhouette_, abs=1e-6)
    assert fitted.threshold_ > fitted.train_score_median_ > 0
    # parameters are stored as given, learned state is not set by __init__
    fresh = OperatingStateDetector(**FAST)
    assert fresh.get_params()["max_states"] == 5
    assert not [a for a in vars(fresh) if a.endswith("_")]
    assert clone(fitted).get_params() == fitted.get_params()


def test_three_regimes_are_found(fitted: OperatingStateDetector, train: pd.DataFrame) -> None:
    # every regime maps onto its own state(s): no state mixes two load levels
    state = fitted.detect(train).state
    level = np.rint((train["a"].to_numpy() / 100) - 1).astype(int)
    for s in np.unique(state):
        assert len(np.unique(level[state == s])) == 1


def test_normal_readings_score_about_one(fitted: OperatingStateDetector) -> None:
    test = regimes(2000, seed=2)
    score = fitted.score_samples(test)
    assert 0.5 < float(np.median(score)) < 1.5
    assert fitted.predict(test).mean() < 0.02


def test_contributions_are_shares(fitted: OperatingStateDetector) -> None:
    test = regimes(500, seed=3)
    c = fitted.contributions(test)
    assert c.shape == (500, len(SENSORS))
    assert (c >= 0).all()
    assert np.allclose(c.sum(axis=1), 1.0, atol=1e-4)


def test_not_fitted_errors() -> None:
    det = OperatingStateDetector()
    x = regimes(10, seed=0)
    for call in (det.score_samples, det.detect, det.contributions, det.predict):
        with pytest.raises(NotFittedError):
            call(x)
    with pytest.raises(NotFittedError):
        det.save("unused")


def test_column_order_does_not_matter(fitted: OperatingStateDetector) -> None:
    test = regimes(300, seed=4)
    a = fitted.detect(test)
    b = fitted.detect(test[["d", "c", "b", "a"]])
    assert np.array_equal(a.score, b.score)
    assert np.array_equal(a.state, b.state)
    assert np.array_equal(a.contributions, b.contributions)


def test_extra_columns_are_ignored(fitted: OperatingStateDetector) -> None:
    test = regimes(50, seed=4)
    out = fitted.score_samples(test.assign(extra=1.0))
    assert fitted.schema_.unused_columns(test.assign(extra=1.0)) == ["extra"]
    assert np.array_equal(out, fitted.score_samples(test))


def test_missing_sensor_is_a_clear_error(fitted: OperatingStateDetector) -> None:
    with pytest.raises(SchemaMismatchError, match=r"missing sensor column.*c") as info:
        fitted.score_samples(regimes(20, seed=5).drop(columns="c"))
    assert info.value.missing == ["c"]


def test_missing_values_are_filled(fitted: OperatingStateDetector) -> None:
    test = regimes(100, seed=6)
    test.iloc[10:15, 1] = np.nan
    test.iloc[0, 0] = np.nan
    assert np.isfinite(fitted.score_samples(test)).all()


def test_save_load_round_trip(fitted: OperatingStateDetector, tmp_path: Path) -> None:
    fitted.save(tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "detector.json").read_text())
    assert meta["detector"] == "operating-states"
    loaded = load_detector(tmp_path / "m")
    assert isinstance(loaded, OperatingStateDetector)
    test = regimes(1000, seed=7)
    a, b = fitted.detect(test), loaded.detect(test)
    assert np.array_equal(a.score, b.score)
    assert np.array_equal(a.is_anomaly, b.is_anomaly)
    assert np.array_equal(a.state, b.state)
    assert np.array_equal(a.contributions, b.contributions)
    assert loaded.threshold_ == fitted.threshold_
    assert loaded.silhouette_by_k_ == fitted.silhouette_by_k_
    assert loaded.get_params() == fitted.get_params()


def test_same_random_state_same_model(train: pd.DataFrame) -> None:
    a = OperatingStateDetector(**FAST, random_state=3).fit(train)
    b = OperatingStateDetector(**FAST, random_state=3).fit(train)
    assert np.array_equal(a.state_centers_, b.state_centers_)
    assert a.threshold_ == b.threshold_
    test = regimes(200, seed=8)
    assert np.array_equal(a.score_samples(test), b.score_samples(test))


def test_numpy_input_is_accepted(fitted: OperatingStateDetector) -> None:
    test = regimes(50, seed=9)
    assert np.array_equal(fitted.score_samples(test.to_numpy()), fitted.score_samples(test))
    with pytest.raises(SchemaMismatchError):
        fitted.score_samples(test.to_numpy()[:, :3])


def test_near_constant_sensor_does_not_explode() -> None:
    x = regimes(2000, seed=10)
    x["d"] = 5.0  # constant in training
    det = OperatingStateDetector(**FAST).fit(x)
    test = regimes(200, seed=11).assign(d=5.0)
    s = det.score_samples(test)
    assert np.isfinite(s).all() and float(np.median(s)) < 2
    # a real departure of the constant sensor is flagged and blamed on it
    moved = test.assign(d=6.0)
    res = det.detect(moved)
    assert float(np.median(res.score)) > det.threshold_
    assert res.top_sensors(1)[0] == ["d"]


def test_too_few_rows(train: pd.DataFrame) -> None:
    with pytest.raises(DataValidationError, match="too few readings"):
        OperatingStateDetector().fit(train.head(3))


def test_bad_state_range(train: pd.DataFrame) -> None:
    with pytest.raises(DataValidationError, match="state range"):
        OperatingStateDetector(min_states=5, max_states=3).fit(train)


def test_registry_by_name() -> None:
    det = make_detector("operating-states", max_states=4)
    assert isinstance(det, OperatingStateDetector)
    assert get_detector_class("operating-states") is OperatingStateDetector


def test_silhouettes_match_scikit_learn() -> None:
    from sklearn.metrics import silhouette_score

    rng = np.random.default_rng(0)
    z = np.concatenate([rng.normal(0, 1, (200, 3)), rng.normal(4, 1, (300, 3))])
    labs = [np.repeat([0, 1], [200, 300]), rng.integers(0, 3, 500)]
    ours = silhouettes(z.astype(np.float32), labs)
    ref = [silhouette_score(z, lab) for lab in labs]
    assert ours == pytest.approx(ref, abs=1e-4)


def test_state_profiles_are_json(fitted: OperatingStateDetector) -> None:
    prof = fitted.describe_states()
    json.dumps(prof)
    assert prof["n_states"] == fitted.n_states_
    assert sum(s["train_rows"] for s in prof["states"]) == 3000
    assert set(prof["states"][0]["center"]) == set(SENSORS)


def test_failure_types_from_labels(fitted: OperatingStateDetector) -> None:
    from sensorguard.data import Readings

    x = regimes(3000, seed=12)
    label = np.zeros(3000, dtype=int)
    # three episodes disturbing sensor c, three disturbing sensor d
    for s in (200, 900, 1600):
        x.loc[s : s + 29, "c"] += 10
        label[s : s + 30] = 1
    for s in (500, 1300, 2300):
        x.loc[s : s + 19, "d"] += 8
        label[s : s + 20] = 1
    frame = x.assign(timestamp=pd.date_range("2026-01-01", periods=3000, freq="1min"), label=label)
    readings = Readings.from_frame(frame)
    prof = profile_failures(fitted, readings)
    json.dumps(prof)
    assert prof["source"] == "labels"
    assert prof["n_episodes"] == 6
    assert prof["n_types"] == 2
    tops = sorted(t["top_sensors"][0] for t in prof["types"])
    assert tops == ["c", "d"]
    for t in prof["types"]:
        assert t["episodes"] == 3
        expect = 30 * 60 if t["top_sensors"][0] == "c" else 20 * 60
        assert t["duration_s"]["median"] == pytest.approx(expect)
        assert t["mean_deviation"][t["top_sensors"][0]] > 3
    # a new event disturbing d is assigned to d's type
    ev = x.iloc[2300:2320]
    d_type = next(t["type"] for t in prof["types"] if t["top_sensors"][0] == "d")
    assert assign_failure_type(prof, fitted.contributions(ev)) == d_type


def test_failure_types_are_saved_with_the_model(
    fitted: OperatingStateDetector, tmp_path: Path
) -> None:
    from sensorguard.data import Readings

    x = regimes(1000, seed=13)
    label = np.zeros(1000, dtype=int)
    x.loc[300:339, "b"] += 5
    label[300:340] = 1
    frame = x.assign(timestamp=pd.date_range("2026-01-01", periods=1000, freq="1min"), y=label)
    det = clone(fitted).fit(regimes(3000, seed=1))
    prof = profile_failures(det, Readings.from_frame(frame, label_column="y"))
    det.failure_types_ = prof
    assert prof["n_episodes"] == 1
    assert prof["types"][0]["top_sensors"][0] == "b"
    det.save(tmp_path / "m")
    assert load_detector(tmp_path / "m").failure_types_ == prof  # type: ignore[attr-defined]


def _independent(n: int, p: int, rng: np.random.Generator) -> pd.DataFrame:
    X = rng.normal(size=(n, p))
    X[:, 1] = X[:, 0] + 0.3 * X[:, 1]  # one real correlation among noise
    return pd.DataFrame(X, columns=[f"s{i}" for i in range(p)])


def test_few_rows_for_many_sensors_do_not_raise_false_alarms() -> None:
    # 450 rows of 50 sensors split into states of ~150 rows: with a fixed 5 % shrinkage
    # the states' correlations fit noise, and fresh readings of the same process alarmed
    # 19 % of the time (measured on this case before the Ledoit-Wolf rule)
    rng = np.random.default_rng(0)
    det = make_detector("operating-states").fit(_independent(450, 50, rng))
    result = det.detect(_independent(3000, 50, rng))
    assert result.is_anomaly.mean() < 0.02
    assert det.state_shrinkage_.min() > 0.5


def test_many_rows_keep_the_least_shrinkage() -> None:
    rng = np.random.default_rng(1)
    det = make_detector("operating-states", shrinkage=0.05).fit(_independent(20_000, 4, rng))
    assert det.state_shrinkage_.shape == (det.n_states_,)
    assert np.all(det.state_shrinkage_ >= 0.05)
    assert det.state_shrinkage_.max() < 0.06
