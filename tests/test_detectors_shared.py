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
    assert extra <= {"iforest.skops"}, extra
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
