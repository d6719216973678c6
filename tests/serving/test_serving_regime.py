"""The regime-change verdict on ``POST /v1/predict`` (serving/regime.py).

The rule is ``evaluation.regime``'s; what is tested here is the predictor's use of it
across requests: an asset whose readings are out of the training range from the first
one gets ``regime`` from the 60th reading on, and the alarm the regime carries is no
longer reported from there, exactly as ``suppress_regime_alarms`` drops it in batch; a
normal asset's responses are unchanged; any cut into requests gives the same answers;
a stateless batch is judged alone; a version without a training profile is not judged.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from sensorguard.data.simulator import SENSORS, simulate_pump
from sensorguard.detectors import make_detector
from sensorguard.evaluation.regime import regime_check, suppress_regime_alarms
from sensorguard.pipelines.drift import training_profile
from sensorguard.registry.models import LoadedModel
from sensorguard.serving.model import ServedModel
from sensorguard.serving.schemas import PredictResponse

pytestmark = pytest.mark.model
HEAD = 60


@pytest.fixture(scope="module")
def fitted() -> dict[str, Any]:
    train = simulate_pump(days=2, seed=1, failures=False)[list(SENSORS)]
    det = make_detector("operating-states", max_states=4).fit(train)
    return {"detector": det, "profile": training_profile(train)}


def _served(fitted: dict[str, Any], profile: bool = True) -> ServedModel:
    loaded = LoadedModel(
        "pump-model",
        1,
        "production",
        None,
        fitted["detector"],
        training_profile=fitted["profile"] if profile else None,
    )
    return ServedModel(loaded)


def _stream(seed: int, by: float = 0.0, n: int = 600) -> np.ndarray:
    f = simulate_pump(days=1, seed=seed, n_failures=1)[list(SENSORS)].iloc[:n].copy()
    f["bearing_temp"] += by  # from the first reading: a replaced, offset sensor
    return f.to_numpy(dtype=np.float64)


def _send(served: ServedModel, A: np.ndarray, asset: str, sizes: list[int]) -> dict[str, Any]:
    flags, regime_at, k, i = [], [], 0, 0
    while i < A.shape[0]:
        n = sizes[k % len(sizes)]
        k += 1
        part = A[i : i + n].copy()
        s = served.score(part, [asset] * part.shape[0])
        flags.append(s.is_anomaly.copy())
        regime_at.append((i, part.shape[0], s.regime))
        i += part.shape[0]
    return {"flags": np.concatenate(flags), "regime": regime_at}


def test_a_shifted_asset_gets_the_verdict_and_loses_the_alarm_it_carries(fitted) -> None:
    A = _stream(32, by=40.0)
    bare = _served(fitted, profile=False)
    raw = bare.score(A.copy(), ["p"] * A.shape[0]).is_anomaly
    assert raw[5:HEAD].all()  # the shift alarms from the start: one alarm over everything
    v = regime_check(A, fitted_ranges(fitted), sensors=list(SENSORS))
    assert v.regime_change
    batch, removed = suppress_regime_alarms(raw, v)
    assert removed > HEAD
    for sizes in ([1], [7, 1, 50, 13], [600], [59, 1, 2]):
        got = _send(_served(fitted), A, "p", sizes)
        # answered before the verdict: as the detector said; from the head on: as batch
        np.testing.assert_array_equal(got["flags"][HEAD:], batch[HEAD:])
        for start, n, regime in got["regime"]:
            if start + n < HEAD:  # the head is not judged yet
                assert regime is None
                np.testing.assert_array_equal(
                    got["flags"][start : start + n], raw[start : start + n]
                )
            else:
                assert regime is not None, (sizes, start)
                (entry,) = regime
                assert entry["asset_id"] == "p" and entry["verdict"] == "regime_change"
                assert [s["sensor"] for s in entry["sensors"]] == ["bearing_temp"]
                assert entry["sensors"][0]["median"] > entry["sensors"][0]["train_max"]
                assert "retrain" in entry["hint"]
                # rows of the judging request before the head's end lose the alarm too
                np.testing.assert_array_equal(
                    got["flags"][start : start + n], batch[start : start + n]
                )
                break


def fitted_ranges(fitted: dict[str, Any]) -> dict[str, tuple[float, float]]:
    from sensorguard.evaluation.regime import ranges_from_profile

    return ranges_from_profile(fitted["profile"])


def test_a_normal_asset_is_answered_as_without_the_rule(fitted) -> None:
    A = _stream(33)
    judged, bare = _served(fitted), _served(fitted, profile=False)
    for start in range(0, A.shape[0], 25):
        part = A[start : start + 25]
        a = judged.score(part.copy(), ["n"] * part.shape[0])
        b = bare.score(part.copy(), ["n"] * part.shape[0])
        assert a.regime is None
        np.testing.assert_array_equal(a.is_anomaly, b.is_anomaly)
        np.testing.assert_array_equal(a.score, b.score)
    assert bare.regimes is None and judged.regimes is not None


def test_mixed_assets_in_one_request_each_get_their_own_verdict(fitted) -> None:
    shifted, normal = _stream(34, by=40.0, n=200), _stream(35, n=200)
    served = _served(fitted)
    A = np.empty((400, len(SENSORS)))
    A[0::2], A[1::2] = shifted, normal
    assets = ["s", "n"] * 200
    out = served.score(A.copy(), assets)
    assert out.regime is not None and [e["asset_id"] for e in out.regime] == ["s"]
    alone = _served(fitted, profile=False).score(normal.copy(), ["n"] * 200)
    np.testing.assert_array_equal(out.is_anomaly[1::2], alone.is_anomaly)
    assert not out.is_anomaly[0::2][HEAD:].any()  # the regime's own alarm, dropped


def test_the_response_carries_it_in_both_layouts_and_matches_the_schema(fitted) -> None:
    import orjson

    served = _served(fitted)
    A = _stream(36, by=40.0, n=80)
    s = served.score(A, ["p"] * 80)
    for orient in ("records", "columns"):
        doc = orjson.loads(served.encode(s, {"asset_id": ["p"] * 80}, orient))
        assert doc["regime"][0]["state"] == "open"
        PredictResponse.model_validate(doc)
    quiet = served.score(_stream(37, n=5), ["q"] * 5)
    assert "regime" not in orjson.loads(served.encode(quiet, {}, "records"))


def test_the_regime_closes_when_the_sensor_comes_back(fitted) -> None:
    A = _stream(38, n=400)
    A[:150, list(SENSORS).index("bearing_temp")] += 40.0  # back in range at row 150
    served = _served(fitted)
    states = []
    for start in range(0, 400, 10):
        r = served.score(A[start : start + 10].copy(), ["p"] * 10).regime
        states.append(None if r is None else r[0]["state"])
    # open from the head, closed once (60 readings back in range: row 209), then absent
    first_open = states.index("open")
    assert first_open * 10 <= HEAD - 1 < first_open * 10 + 10
    assert states.count("closed") == 1 and states.index("closed") == 20
    assert set(states[21:]) == {None}


def test_stateless_batches_are_judged_alone_and_short_ones_not(fitted) -> None:
    served = _served(fitted)
    A = _stream(39, by=40.0, n=300)
    long = served.score(A.copy(), stateless=True)
    assert long.regime is not None and long.regime[0]["asset_id"] is None
    assert not long.is_anomaly.any()
    short = served.score(A[:10].copy(), stateless=True)
    assert short.regime is None and short.is_anomaly.any()


def test_gaps_are_judged_as_sent_not_as_filled(fitted) -> None:
    # scoring fills gaps in place (a first reading's gap with the training median, in
    # range): the rule must see the gap, which counts neither in nor out, so the first
    # valid reading is the one judged
    A = _stream(40, by=40.0, n=120)
    j = list(SENSORS).index("bearing_temp")
    A[0, j] = np.nan
    got = _served(fitted).score(A.copy(), ["p"] * 120)
    assert got.regime is not None
    ranges = fitted_ranges(fitted)
    assert regime_check(pd.DataFrame(A, columns=list(SENSORS)), ranges).regime_change


# ------------------------------------------------------------------ through the HTTP API
class _ProfiledSource:
    """One version of a fitted detector with its training profile (as registered
    versions carry it); the interface of the predictor's model source."""

    name = "pump-model"
    alias = "production"

    def __init__(self, fitted: dict[str, Any]) -> None:
        self.fitted = fitted

    def resolve(self) -> int:
        return 1

    def load(self, version: int) -> ServedModel:
        return _served(self.fitted)

    def location(self) -> str:
        return "memory"


def test_the_http_response_carries_the_verdict_and_the_schema_lists_it(fitted, tmp_path) -> None:
    import time

    from fastapi.testclient import TestClient

    from sensorguard.serving.app import create_app
    from sensorguard.serving.settings import ServingSettings

    settings = ServingSettings(home=tmp_path, api_token="t", poll_interval=60.0)
    A = _stream(41, by=40.0, n=120)
    readings = []
    for row in A:
        r: dict[str, Any] = {
            s: (None if np.isnan(v) else float(v)) for s, v in zip(SENSORS, row, strict=True)
        }
        r["asset_id"] = "p7"
        readings.append(r)
    auth = {"authorization": "Bearer t"}
    with TestClient(create_app(settings, _ProfiledSource(fitted))) as client:
        deadline = time.monotonic() + 30
        while client.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        first = client.post("/v1/predict", json={"readings": readings[:30]}, headers=auth)
        assert first.status_code == 200 and "regime" not in first.json()  # head not judged
        rest = client.post("/v1/predict", json={"readings": readings[30:]}, headers=auth)
        assert rest.status_code == 200
        doc = rest.json()
        (entry,) = doc["regime"]
        assert entry["asset_id"] == "p7" and entry["state"] == "open"
        assert entry["sensors"][0]["sensor"] == "bearing_temp"
        assert not any(p["is_anomaly"] for p in doc["predictions"])
        assert all(p["above_threshold"] for p in doc["predictions"][-30:])
        again = client.post("/v1/predict", json={"readings": readings[-5:]}, headers=auth)
        assert again.json()["regime"][0]["state"] == "open"
        metrics = client.get("/metrics").text
        # counted once per asset, not once per response that carries it
        assert 'sensorguard_regime_changes_total{model="pump-model",version="1"} 1.0' in metrics
        schema = client.get("/openapi.json").json()["components"]["schemas"]
        assert "regime" in schema["PredictResponse"]["properties"]
        assert set(schema["RegimeEntry"]["required"]) >= {"verdict", "state", "sensors", "hint"}
