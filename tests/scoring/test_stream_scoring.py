"""``sensorguard.scoring.stream.AssetStreams``: per-asset live scoring shared by the
predictor and the watch service (alarm transitions, checkpoints, bounds)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from sensorguard.data.simulator import SENSORS, simulate_pump
from sensorguard.detectors import make_detector
from sensorguard.detectors.events import flag_spans
from sensorguard.errors import SchemaMismatchError, SensorGuardError
from sensorguard.scoring.stream import AssetStreams


@pytest.fixture(scope="module")
def detector():  # type: ignore[no-untyped-def]
    train = simulate_pump(days=2, seed=1, failures=False)
    return make_detector("operating-states", max_states=4, silhouette_sample=2000).fit(
        train[list(SENSORS)]
    )


@pytest.fixture(scope="module")
def stream() -> pd.DataFrame:
    return simulate_pump(days=1, seed=10, n_failures=1)


def test_transitions_are_reported_once_with_their_times(detector, stream) -> None:  # type: ignore[no-untyped-def]
    expected = detector.detect(stream[list(SENSORS)]).is_anomaly
    starts, ends = flag_spans(expected)
    assert len(starts) >= 1
    streams = AssetStreams(detector)
    opened, closed, i = [], [], 0
    rng = np.random.default_rng(0)
    while i < len(stream):
        n = int(rng.choice([1, 3, 40, 200]))
        part = stream.iloc[i : i + n]
        res = streams.update("pump-1", part["timestamp"].tolist(), part[list(SENSORS)])
        for t in res.transitions:
            assert t.asset == "pump-1" and t.time == part["timestamp"].iloc[t.row]
            (opened if t.kind == "opened" else closed).append(i + t.row)
        i += n
    assert opened == starts.tolist()
    still_on = bool(expected[-1])
    assert closed == [e + 1 for e in ends.tolist()][: len(ends) - int(still_on)]


def test_a_checkpoint_belongs_to_its_alarm_rule(detector, stream) -> None:  # type: ignore[no-untyped-def]
    streams = AssetStreams(detector)
    streams.update("a", None, stream[list(SENSORS)].iloc[:50])
    state = json.loads(json.dumps(streams.state_of("a"), allow_nan=False))
    other = make_detector("operating-states", max_states=4, silhouette_sample=2000, margin=2.0)
    other.fit(simulate_pump(days=2, seed=1, failures=False)[list(SENSORS)])
    with pytest.raises(SensorGuardError, match="another model or alarm rule"):
        AssetStreams(other).restore("a", state)
    assert streams.state_of("nobody") is None
    streams.drop("a")
    assert "a" not in streams and len(streams) == 0


def test_unbounded_and_bounded_assets(detector) -> None:  # type: ignore[no-untyped-def]
    row = np.asarray([detector.schema_.fill_values], dtype=np.float64)
    unbounded, bounded = AssetStreams(detector, max_assets=None), AssetStreams(detector, 3)
    for i in range(20):
        unbounded.score(row.copy(), [f"m{i}"])
        bounded.score(row.copy(), [f"m{i}"])
    assert len(unbounded) == 20 and unbounded.evicted == 0
    assert len(bounded) == 3 and bounded.evicted == 17


def test_a_frame_without_a_sensor_is_a_clear_error(detector, stream) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SchemaMismatchError, match="flow_rate"):
        AssetStreams(detector).update("a", None, stream[list(SENSORS)].drop(columns="flow_rate"))


def test_the_ranking_of_any_cut_equals_one_pass(detector, stream) -> None:  # type: ignore[no-untyped-def]
    # the ranking averages shares over the excursion / the last 10 readings, so a
    # stream cut anywhere (one reading per request, checkpoints) must carry its sums
    X = stream[list(SENSORS)]
    whole = detector.detect(X)
    assert whole.is_anomaly.any()
    names = [list(t) for t in whole.top_sensors(3)]
    own = np.argsort(-whole.contributions, axis=1, kind="stable")[:, :3]
    assert (np.asarray(detector.schema_.sensors)[own].tolist()) != names  # it differs
    streams = AssetStreams(detector)
    got: list[list[str]] = []
    rng = np.random.default_rng(3)
    i = 0
    while i < len(X):
        n = int(rng.choice([1, 1, 2, 17, 150]))
        res = streams.update("p", None, X.iloc[i : i + n])
        got += [[detector.schema_.sensors[j] for j in row] for row in res.top.tolist()]
        i += n
        if rng.random() < 0.2:  # a restart from a checkpoint
            state = json.loads(json.dumps(streams.state_of("p"), allow_nan=False))
            streams = AssetStreams(detector)
            streams.restore("p", state)
    assert got == names


def test_a_checkpoint_without_ranking_sums_still_restores(detector, stream) -> None:  # type: ignore[no-untyped-def]
    streams = AssetStreams(detector)
    streams.update("a", None, stream[list(SENSORS)].iloc[:50])
    state = streams.state_of("a")
    assert state is not None and state["format"] == 2 and state["blame"]["ewma"] is not None
    old = {k: v for k, v in state.items() if k != "blame"} | {"format": 1}
    again = AssetStreams(detector)
    again.restore("a", old)  # saved before the ranking carried state: it starts afresh
    again.update("a", None, stream[list(SENSORS)].iloc[50:60])
    fresh = AssetStreams(detector)
    fresh.update("b", None, stream[list(SENSORS)].iloc[50:60])
    assert again.state_of("a")["blame"] == fresh.state_of("b")["blame"]  # type: ignore[index]


def test_warm_leaves_no_stream_and_changes_no_result(detector, stream) -> None:  # type: ignore[no-untyped-def]
    warmed, cold = AssetStreams(detector, max_assets=2), AssetStreams(detector, max_assets=2)
    warmed.warm()
    assert len(warmed) == 0 and warmed.evicted == 0
    X = stream[list(SENSORS)]
    a, b = warmed.update("p", None, X), cold.update("p", None, X)
    assert np.array_equal(a.score, b.score) and np.array_equal(a.is_anomaly, b.is_anomaly)
    assert np.array_equal(a.top, b.top) and warmed.state_of("p") == cold.state_of("p")
    warmed.update("q", None, X.iloc[:10])  # full: a throwaway stream would evict "p"
    warmed.warm()  # so with streams there it does nothing
    assert len(warmed) == 2 and warmed.evicted == 0 and "p" in warmed
