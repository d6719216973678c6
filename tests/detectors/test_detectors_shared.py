"""Every registered detector through the same protocol tests (model behaviour tier)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from sensorguard.detectors import available_detectors, load_detector, make_detector
from sensorguard.errors import NotFittedError, SchemaMismatchError

SENSORS = ["vibration", "current", "pressure", "flow", "temp bearing"]


def _normal(n: int, seed: int) -> pd.DataFrame:
    """Correlated normal readings around one operating point, with noise."""
    rng = np.random.default_rng(seed)
    load = 0.3 * rng.standard_normal(n)
    noise = rng.standard_normal((n, len(SENSORS)))
    data = np.column_stack(
        [
            1.0 + 0.2 * load + 0.1 * noise[:, 0],
            10.0 + 1.5 * load + 0.2 * noise[:, 1],
            5.0 - 0.8 * load + 0.1 * noise[:, 2],
            30.0 + 3.0 * load + 0.3 * noise[:, 3],
            60.0 + 0.5 * load + 0.2 * noise[:, 4],
        ]
    )
    return pd.DataFrame(data, columns=SENSORS)


@pytest.fixture(scope="module")
def train() -> pd.DataFrame:
    return _normal(600, 1)


@pytest.fixture(scope="module")
def fresh() -> pd.DataFrame:
    return _normal(400, 2)


@pytest.fixture(scope="module", params=available_detectors())
def fitted(request: pytest.FixtureRequest, train: pd.DataFrame):  # type: ignore[no-untyped-def]
    det = make_detector(request.param)
    out = det.fit(train)
    assert out is det  # fit returns self
    return det


def test_fit_sets_only_trailing_underscore_attributes(train: pd.DataFrame) -> None:
    for name in available_detectors():
        det = make_detector(name)
        params = set(det.get_params(deep=False))
        before = set(vars(det))
        det.fit(train)
        learned = set(vars(det)) - before - params
        assert learned, name
        assert all(k.endswith("_") for k in learned if not k.startswith("_")), (name, learned)
        assert hasattr(det, "threshold_")


@pytest.mark.parametrize("name", available_detectors())
def test_unfitted_detector_raises(name: str, fresh: pd.DataFrame) -> None:
    with pytest.raises(NotFittedError):
        make_detector(name).score_samples(fresh)


def test_column_order_does_not_matter(fitted, fresh: pd.DataFrame) -> None:  # type: ignore[no-untyped-def]
    a = fitted.score_samples(fresh)
    b = fitted.score_samples(fresh[list(reversed(SENSORS))])
    np.testing.assert_array_equal(a, b)


def test_missing_sensor_is_a_clear_error(fitted, fresh: pd.DataFrame) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SchemaMismatchError, match="pressure"):
        fitted.score_samples(fresh.drop(columns=["pressure"]))


def test_save_load_round_trip_is_pickle_free_and_identical(fitted, fresh, tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = fitted.save(tmp_path / "model")
    meta = json.loads((path / "detector.json").read_text())
    assert meta["detector"] == fitted.name
    # every learned array reads back without pickle (object arrays would raise here)
    with np.load(path / "arrays.npz", allow_pickle=False) as npz:
        assert npz.files, "no learned arrays saved"
        assert all(npz[key].dtype != object for key in npz.files)
    # nothing else but these and, for the forest, its skops file (type-checked on load)
    extra = {f.name for f in path.iterdir()} - {"arrays.npz", "detector.json"}
    assert extra <= {"iforest.skops", "base"}, extra  # base/: a wrapped detector, saved alike
    loaded = load_detector(path)
    assert type(loaded) is type(fitted)
    np.testing.assert_array_equal(loaded.score_samples(fresh), fitted.score_samples(fresh))
    np.testing.assert_array_equal(loaded.predict(fresh), fitted.predict(fresh))
    assert loaded.threshold_ == fitted.threshold_


def test_deterministic(fitted, train: pd.DataFrame, fresh: pd.DataFrame) -> None:  # type: ignore[no-untyped-def]
    again = make_detector(fitted.name, **fitted.get_params(deep=False)).fit(train)
    np.testing.assert_array_equal(again.score_samples(fresh), fitted.score_samples(fresh))
    # scoring twice gives the same answer (no state carried between calls)
    np.testing.assert_array_equal(fitted.score_samples(fresh), fitted.score_samples(fresh))


def test_normal_data_mostly_below_threshold(fitted, fresh: pd.DataFrame) -> None:  # type: ignore[no-untyped-def]
    flags = fitted.predict(fresh)
    assert flags.mean() <= 0.1, f"{fitted.name}: {flags.mean():.1%} of normal readings alarmed"


def test_shifted_sensor_raises_score_and_is_blamed(fitted, train, fresh) -> None:  # type: ignore[no-untyped-def]
    bad = fresh.copy()
    bad.loc[200:, "pressure"] += 8 * train["pressure"].std()
    base = fitted.score_samples(fresh)
    shifted = fitted.score_samples(bad)[250:]
    # most shifted readings score above 95 % of normal ones
    assert np.median(shifted) > np.quantile(base, 0.95), fitted.name
    res = fitted.detect(bad)
    top = [row[0] for row in res.top_sensors(1)[250:]]
    assert pd.Series(top).value_counts().index[0] == "pressure", fitted.name


# ---------------------------------------------- scikit-learn and river estimator checks
def test_clone_gives_equal_params_and_an_unfitted_copy(fitted) -> None:  # type: ignore[no-untyped-def]
    from sklearn.base import clone
    from sklearn.exceptions import NotFittedError as SklearnNotFitted
    from sklearn.utils.validation import check_is_fitted

    twin = clone(fitted)
    assert twin.get_params() == fitted.get_params()
    check_is_fitted(fitted)  # __sklearn_is_fitted__
    with pytest.raises(SklearnNotFitted):  # our NotFittedError is scikit-learn's too
        check_is_fitted(twin)
    with pytest.raises(SklearnNotFitted):
        twin.predict(np.zeros((2, len(SENSORS))))


@pytest.mark.parametrize("name", available_detectors())
def test_set_params_is_idempotent(name: str) -> None:
    det = make_detector(name)
    params = det.get_params()
    det.set_params(**params)
    assert det.get_params() == params
    det.set_params(**det.get_params())
    assert det.get_params() == params


@pytest.mark.parametrize("name", ["operating-states", "pca", "iforest", "drift-robust"])
def test_parameter_rules_apply_to_direct_construction(name: str, train: pd.DataFrame) -> None:
    from sensorguard.detectors import get_detector_class
    from sensorguard.errors import SensorGuardError

    cls = get_detector_class(name)
    with pytest.raises(SensorGuardError, match="'quantile'"):
        cls(quantile=7).fit(train)
    with pytest.raises(SensorGuardError, match="'margin'"):
        cls(margin=0).fit(train)
    with pytest.raises(SensorGuardError, match="'smooth_window'"):
        make_detector(name).set_params(smooth_window=0).fit(train)


def test_one_compute_hook_gives_every_output(fitted, fresh: pd.DataFrame) -> None:  # type: ignore[no-untyped-def]
    res = fitted.detect(fresh)
    np.testing.assert_array_equal(res.score, fitted.score_samples(fresh))
    np.testing.assert_array_equal(res.contributions, fitted.contributions(fresh))
    np.testing.assert_array_equal(res.is_anomaly, fitted.predict(fresh).astype(bool))
    np.testing.assert_array_equal(res.is_anomaly, fitted.alarm_rule_.flags(res.score))
    assert res.threshold == fitted.alarm_rule_.threshold == fitted.threshold_


def test_score_one_equals_the_batch_path(fitted, fresh: pd.DataFrame) -> None:  # type: ignore[no-untyped-def]
    from sensorguard.detectors.base import StreamingDetector

    if isinstance(fitted, StreamingDetector):
        pytest.skip("a streaming detector scores a reading from its stream state")
    A = fitted.prepare(fresh.head(30))
    batch = fitted.compute(A)
    for i in range(A.shape[0]):
        one = fitted.score_one(A[i])
        np.testing.assert_allclose(one.score, batch.score[i : i + 1], rtol=1e-6)
        np.testing.assert_allclose(one.contributions, batch.contributions[i : i + 1], rtol=1e-5)
        assert one.states().tolist() == batch.states()[i : i + 1].tolist()


def test_streaming_capability_is_a_protocol(fitted) -> None:  # type: ignore[no-untyped-def]
    from sensorguard.detectors.base import Detector, StreamingDetector

    assert isinstance(fitted, Detector)
    streaming = {"drift-robust", "pca-smoothed", "knn"}  # filter states: baseline, running mean
    assert isinstance(fitted, StreamingDetector) == (fitted.name in streaming)


def _chunks(n: int, seed: int) -> list[int]:
    rng = np.random.default_rng(seed)
    out, i = [], 0
    while i < n:
        k = int(rng.choice([1, 1, 2, 3, 7, 16, 17, 40, 150]))
        out.append(k)
        i += k
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_live_tracker_over_random_chunkings_equals_the_live_pass(  # type: ignore[no-untyped-def]
    fitted, train: pd.DataFrame, fresh: pd.DataFrame, seed: int
) -> None:
    from sensorguard.detectors.events import hysteresis, on_delay

    bad = fresh.copy()
    bad.loc[150:300, "pressure"] += 6 * train["pressure"].std()
    score = fitted.score_samples(bad)
    rule = fitted.alarm_rule_
    kw = {k: getattr(rule, k) for k in ("smooth_window", "min_duration", "off_ratio", "release")}
    live = on_delay(hysteresis(score, rule.threshold, **kw), rule.confirm)
    assert live.any()
    tracker, got, i = rule.tracker(), [], 0
    for k in _chunks(score.size, seed):
        got.append(tracker.update(score[i : i + k]))
        i += k
    np.testing.assert_array_equal(np.concatenate(got), live)
    if rule.confirm <= 1:  # without an on-delay the live flags are the batch flags
        np.testing.assert_array_equal(live, fitted.predict(bad).astype(bool))


@pytest.mark.parametrize("seed", [0, 1])
def test_stream_scoring_over_random_chunkings_and_restarts_equals_one_pass(  # type: ignore[no-untyped-def]
    fitted, train: pd.DataFrame, fresh: pd.DataFrame, seed: int
) -> None:
    from sensorguard.scoring.stream import AssetStreams

    bad = fresh.copy()
    bad.loc[150:300, "pressure"] += 6 * train["pressure"].std()
    A = bad[SENSORS].to_numpy(dtype=np.float64, copy=True)
    A[np.random.default_rng(seed).random(A.shape) < 0.03] = np.nan  # dropouts
    one = AssetStreams(fitted).score(A.copy(), ["m"] * len(A))
    streams, scores, flags, i = AssetStreams(fitted), [], [], 0
    for n, k in enumerate(_chunks(len(A), seed)):
        res = streams.update("m", None, A[i : i + k])
        scores.append(res.score)
        flags.append(res.is_anomaly)
        i += k
        if n % 5 == 4:  # checkpoint through JSON, restart from it
            state = json.loads(json.dumps(streams.state_of("m"), allow_nan=False))
            streams = AssetStreams(fitted)
            streams.restore("m", state)
    np.testing.assert_allclose(np.concatenate(scores), one.score, rtol=1e-6)
    np.testing.assert_array_equal(np.concatenate(flags), one.is_anomaly)
