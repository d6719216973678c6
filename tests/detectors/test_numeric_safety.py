"""One huge or non-finite value never blinds the alarm (reliability finding H1).

The moving average used to be a difference of running sums: one ``inf``, ``1e308`` or a
saturating score (3.4e38, a PLC's error value) cancelled or overflowed every smoothed
score after it, so the failures later in the batch were never flagged. The rules now:

* scores: each window is summed on its own, infinite or overflowing scores count as
  ``SCORE_CAP`` (a score off the scale alarms like one), NaN scores as 0 (a dropout);
* readings: an infinite reading is an error naming the cell; a huge finite one is
  scored (and alarms) like the impossible value it is.

The first tests use only ``hysteresis`` (present before the fix too), so they show the
defect against the earlier code; the property tests state the guarantee: one bad value
changes the flags of at most the window around it.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sensorguard.detectors import make_detector
from sensorguard.detectors.alarm import AlarmRule, AlarmTracker
from sensorguard.detectors.events import SCORE_CAP, hysteresis, rolling_mean
from sensorguard.errors import DataValidationError

BAD = [np.inf, 1e308, 3.4e38, np.finfo(np.float64).max]
KW: dict[str, Any] = {"smooth_window": 5, "min_duration": 3, "off_ratio": 0.8, "release": 5}


def _scores(n: int = 600, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    s = rng.gamma(2.0, 0.5, n)
    s[300:360] += 4  # a failure after the glitch
    s[450:520] += 4  # and another
    return s


@pytest.mark.parametrize("bad", BAD)
def test_one_huge_score_does_not_blind_the_rest_of_the_batch(bad: float) -> None:
    score = _scores()
    clean = hysteresis(score, 2.0, **KW)
    assert clean[300:360].sum() > 40 and clean[450:520].sum() > 50
    glitch = score.copy()
    glitch[100] = bad
    flags = hysteresis(glitch, 2.0, **KW)
    # the glitch alarms around itself; everything after its window is as before
    assert flags[102:105].all()  # on after min_duration readings of its window
    np.testing.assert_array_equal(flags[:100], clean[:100])
    np.testing.assert_array_equal(flags[120:], clean[120:])


def test_inf_then_minus_inf_is_not_one_endless_alarm() -> None:
    score = _scores()
    glitch = score.copy()
    glitch[100], glitch[200] = np.inf, -np.inf
    flags = hysteresis(glitch, 2.0, **KW)
    np.testing.assert_array_equal(flags[220:], hysteresis(score, 2.0, **KW)[220:])


def test_windowed_mean_caps_and_never_cancels() -> None:
    x = np.array([1.0, np.inf, 1.0, 1.0, np.nan, 1.0, -np.inf, 2.0, 2.0, 2.0])
    out = rolling_mean(x, 3)
    assert np.isfinite(out).all()
    assert out[1] == pytest.approx(SCORE_CAP / 3) and out[3] == pytest.approx(SCORE_CAP / 3)
    assert out[4] == pytest.approx(2 / 3)  # NaN counts as 0, the inf has left the window
    assert out[9] == 2.0


# ------------------------------------------------------------------ property tests
finite = st.floats(min_value=0.0, max_value=50.0, allow_nan=False)
bad_values = st.sampled_from([np.inf, np.nan, 1e308, 3.4e38, -np.inf, 1e200])


@st.composite
def rules(draw: st.DrawFn, band: bool) -> AlarmRule:
    w = draw(st.integers(1, 6))
    m = draw(st.integers(1, 4))
    if not band:
        return AlarmRule(draw(st.floats(0.5, 5.0)), w, m, 1.0, 1)
    return AlarmRule(
        draw(st.floats(0.5, 5.0)),
        w,
        m,
        draw(st.floats(0.3, 1.0)),
        draw(st.integers(1, 6)),
        confirm=draw(st.sampled_from([0, 0, 3, 8])),
        backdate=draw(st.sampled_from([0.0, 0.5])),
        max_back=draw(st.sampled_from([None, 5])),
    )


@settings(max_examples=300, deadline=None)
@given(
    score=st.lists(finite, min_size=30, max_size=300),
    rule=rules(band=False),
    at=st.floats(0, 1, exclude_max=True),
    bad=bad_values,
)
def test_one_bad_score_changes_flags_only_within_its_window(
    score: list[float], rule: AlarmRule, at: float, bad: float
) -> None:
    x = np.asarray(score)
    i = int(at * x.size)
    y = x.copy()
    y[i] = bad
    clean, got = (
        hysteresis(x, rule.threshold, **_kw(rule)),
        hysteresis(y, rule.threshold, **_kw(rule)),
    )
    reach = i + rule.smooth_window + rule.min_duration  # the window, then the on-delay
    np.testing.assert_array_equal(got[:i], clean[:i])
    np.testing.assert_array_equal(got[reach:], clean[reach:])


@settings(max_examples=300, deadline=None)
@given(
    score=st.lists(finite, min_size=30, max_size=300),
    rule=rules(band=True),
    at=st.floats(0, 1, exclude_max=True),
    bad=st.sampled_from([np.inf, 1e308, 3.4e38, 1e200]),
)
def test_a_huge_score_only_adds_alarms_and_never_changes_the_past(
    score: list[float], rule: AlarmRule, at: float, bad: float
) -> None:
    x = np.asarray(score)
    i = int(at * x.size)
    y = x.copy()
    y[i] = bad
    clean, got = (
        hysteresis(x, rule.threshold, **_kw(rule)),
        hysteresis(y, rule.threshold, **_kw(rule)),
    )
    np.testing.assert_array_equal(got[:i], clean[:i])  # causal
    if rule.min_duration <= rule.smooth_window:  # the bad value's window alarms
        assert got[i + rule.min_duration - 1 : i + rule.smooth_window].all()
    assert (got | ~clean).all()  # higher scores never end an alarm (hysteresis is monotone)
    flags = rule.flags(y)
    assert np.isfinite(rolling_mean(y, rule.smooth_window)).all() and flags.dtype == bool


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    score=st.lists(st.one_of(finite, bad_values), min_size=1, max_size=200),
    rule=rules(band=True),
    cuts=st.lists(st.integers(1, 40), min_size=1, max_size=8),
)
def test_live_tracker_equals_one_pass_with_bad_values_and_checkpoints(
    score: list[float], rule: AlarmRule, cuts: list[int]
) -> None:
    x = np.asarray(score, dtype=np.float64)
    kw = _kw(rule)
    from sensorguard.detectors.events import on_delay

    expected = on_delay(hysteresis(x, rule.threshold, **kw), rule.confirm)
    t, got, i, k = rule.tracker(), [], 0, 0
    while i < x.size:
        n = cuts[k % len(cuts)]
        got.append(t.update(x[i : i + n]))
        i, k = i + n, k + 1
        t = AlarmTracker.restore(rule, json.loads(json.dumps(t.state(), allow_nan=False)))
    np.testing.assert_array_equal(np.concatenate(got), expected)


def _kw(rule: AlarmRule) -> dict[str, Any]:
    return {
        "smooth_window": rule.smooth_window,
        "min_duration": rule.min_duration,
        "off_ratio": rule.off_ratio,
        "release": rule.release,
    }


# ------------------------------------------------------------------ readings
def _readings(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    load = rng.normal(0, 0.3, n)
    return pd.DataFrame(
        {
            "a": 1 + 0.5 * load + 0.05 * rng.standard_normal(n),
            "b": 10 + 2 * load + 0.2 * rng.standard_normal(n),
            "c": 5 - load + 0.1 * rng.standard_normal(n),
        }
    )


@pytest.fixture(scope="module")
def fitted() -> dict[str, object]:
    train = _readings(800, 1)
    params = {"operating-states": {"max_states": 4, "silhouette_sample": 600}}
    return {
        name: make_detector(name, **params.get(name, {})).fit(train)
        for name in ("pca", "operating-states", "iforest", "drift-robust", "pca-smoothed", "knn")
    }


def _with_failure(seed: int) -> pd.DataFrame:
    test = _readings(300, seed)
    test.loc[150:280, "b"] += 3.0  # a sustained fault late in the batch
    return test


@pytest.mark.parametrize(
    "name", ["pca", "operating-states", "iforest", "drift-robust", "pca-smoothed", "knn"]
)
@pytest.mark.parametrize("bad", [1e308, 3.4e38, -1e308])
def test_a_huge_reading_alarms_and_the_later_failure_is_still_flagged(
    fitted: dict[str, object], name: str, bad: float
) -> None:
    det = fitted[name]
    test = _with_failure(2)
    clean = det.detect(test)  # type: ignore[attr-defined]
    assert clean.is_anomaly[150:282].mean() > 0.5
    glitch = test.copy()
    glitch.loc[50, "a"] = bad
    res = det.detect(glitch)  # type: ignore[attr-defined]
    assert np.isfinite(res.score).all() and np.isfinite(res.contributions).all()
    assert res.score[50] >= clean.score[50] and res.score[50] > det.threshold_  # type: ignore[attr-defined]
    assert res.top_sensors(1)[50] == ["a"]  # the impossible sensor is blamed
    assert res.is_anomaly[150:282].mean() > 0.5  # not blinded
    if name in ("pca-smoothed", "knn"):  # the running mean ignores a one-reading glitch
        later = np.r_[0:50, 51:300]
        # the median moves the running mean by a hair; knn's nearest readings can then
        # change, a jump in a score far below the threshold (0.008 -> 0.0006 of 0.7)
        atol = (0.01 if name == "pca-smoothed" else 0.02) * det.threshold_  # type: ignore[attr-defined]
        np.testing.assert_allclose(res.score[later], clean.score[later], rtol=0.01, atol=atol)
    elif name != "drift-robust":  # stateless scores: only the glitch row changes
        changed = np.flatnonzero(res.score != clean.score)
        assert changed.tolist() == [50]
        assert (res.is_anomaly | ~clean.is_anomaly).all()


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(row=st.integers(0, 299), col=st.sampled_from(["a", "b", "c"]), bad=st.sampled_from(BAD[1:]))
def test_pca_one_huge_reading_changes_only_its_own_flag(
    fitted: dict[str, object], row: int, col: str, bad: float
) -> None:
    det = fitted["pca"]  # defaults: no smoothing, so the window is the reading itself
    test = _with_failure(3)
    clean = det.predict(test)  # type: ignore[attr-defined]
    glitch = test.copy()
    glitch.loc[row, col] = bad
    got = det.predict(glitch)  # type: ignore[attr-defined]
    assert got[row] == 1
    assert np.flatnonzero(got != clean).tolist() in ([], [row])


@pytest.mark.parametrize("value", [np.inf, -np.inf])
def test_an_infinite_reading_is_an_error_naming_the_cell(
    fitted: dict[str, object], value: float
) -> None:
    test = _readings(20, 4)
    test.loc[7, "b"] = value
    with pytest.raises(DataValidationError, match=r"sensor 'b' has an infinite value .* at row 7"):
        fitted["pca"].detect(test)  # type: ignore[attr-defined]


def test_an_infinite_cell_in_readings_names_source_sensor_time_and_asset(
    fitted: dict[str, object],
) -> None:
    from sensorguard.data import Readings
    from sensorguard.scoring.readings import detect_readings

    frame = _readings(40, 5).assign(
        timestamp=pd.date_range("2026-03-01", periods=40, freq="1min"),
        asset_id=["p1"] * 20 + ["p2"] * 20,
    )
    frame.loc[25, "c"] = np.inf
    readings = Readings.from_frame(frame, source="plant.csv")
    with pytest.raises(
        DataValidationError,
        match=r"plant.csv: sensor 'c' has an infinite value inf at 2026-03-01 00:25:00 of asset p2",
    ):
        detect_readings(fitted["operating-states"], readings)  # type: ignore[arg-type]
