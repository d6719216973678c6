"""pca-smoothed: slow re-centring as a stream filter (batch == any chunking), what it
absorbs (slow drift) and what it does not (a step)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from sensorguard.detectors import make_detector


def readings(n: int, seed: int = 0, drift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    load = rng.normal(0, 1, n)
    X = np.column_stack(
        [
            load + rng.normal(0, 0.3, n),
            2 * load + rng.normal(0, 0.3, n),
            -load + rng.normal(0, 0.3, n),
            rng.normal(0, 1, n),
        ]
    )
    X[:, 3] += drift * np.arange(n)
    return pd.DataFrame(X, columns=["a", "b", "c", "temp"])


@pytest.fixture(scope="module")
def fitted():  # type: ignore[no-untyped-def]
    return make_detector("pca-smoothed").fit(readings(400))


@pytest.mark.parametrize("seed", [0, 1])
def test_any_chunking_of_the_stream_scores_like_one_pass(fitted, seed: int) -> None:  # type: ignore[no-untyped-def]
    X = readings(3000, seed=7, drift=0.002).to_numpy()
    batch = fitted.compute(fitted.prepare(X))
    rng = np.random.default_rng(seed)
    state, scores, contrib, i = None, [], [], 0
    while i < len(X):
        k = int(rng.choice([1, 2, 5, 17, 150, 400]))
        c, state = fitted.score_stream(X[i : i + k], state)
        # the checkpoint of the state is strict JSON and restores the same state
        state = fitted.stream_state_from_dict(
            json.loads(json.dumps(fitted.stream_state_to_dict(state), allow_nan=False))
        )
        scores.append(c.score)
        contrib.append(c.contributions)
        i += k
    np.testing.assert_allclose(np.concatenate(scores), batch.score, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(np.vstack(contrib), batch.contributions, rtol=1e-9, atol=1e-12)


def test_live_streams_flag_like_the_batch(fitted) -> None:  # type: ignore[no-untyped-def]
    from sensorguard.scoring.stream import AssetStreams

    X = readings(1500, seed=3, drift=0.002)
    X.loc[900:1000, "b"] += 8.0
    batch = fitted.detect(X)
    streams = AssetStreams(fitted)
    flags = [
        streams.update("pump-1", None, X.iloc[i : i + 37]).is_anomaly for i in range(0, 1500, 37)
    ]
    np.testing.assert_array_equal(np.concatenate(flags), batch.is_anomaly)


def test_slow_drift_is_absorbed_a_step_is_not() -> None:
    train = readings(400)
    # 8 training std-devs by the end; the running mean (time constant 4 x 400 readings)
    # lags a ramp by slope x 1600 = 1.6 std-devs (a faster ramp alarms: 0.002/reading
    # flags 76 % of the rows)
    drifting = readings(8000, seed=5, drift=0.001)
    fixed = make_detector("pca-smoothed", adapt=0).fit(train)
    adapting = make_detector("pca-smoothed").fit(train)
    assert fixed.detect(drifting).is_anomaly.mean() > 0.5
    assert adapting.detect(drifting).is_anomaly.mean() < 0.1
    step = readings(3000, seed=6)
    step.loc[2000:2300, "b"] += 10.0
    flags = adapting.detect(step).is_anomaly
    assert flags[2000:2300].mean() > 0.9 and flags[:2000].mean() < 0.05


def test_a_huge_reading_does_not_poison_the_running_mean(fitted) -> None:  # type: ignore[no-untyped-def]
    X = readings(2000, seed=8)
    clean = fitted.detect(X).is_anomaly
    X.loc[100, "a"] = 1e300
    flags = fitted.detect(X).is_anomaly
    assert flags[100:110].any()  # it alarms
    assert not flags[400:].any() and not clean[400:].any()  # and later readings are fine


def test_adapt_must_not_be_negative() -> None:
    from sensorguard.errors import SensorGuardError

    with pytest.raises(SensorGuardError, match="adapt"):
        make_detector("pca-smoothed", adapt=-1.0)
