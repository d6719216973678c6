"""Alarm state across requests: per-asset trackers in the predictor.

Model behaviour: a stream sent in requests of any size (one reading each, mixed assets,
random batch sizes) gets exactly the flags and scores of one ``detect()`` over each
asset's whole stream; trackers start afresh on a model swap; ``?stateless=true`` keeps
the per-batch behaviour. The app runs in-process on a folder-backed model source (real
saved detectors, the real holder and hot swap).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from sensorguard.data.simulator import SENSORS, simulate_pump
from sensorguard.detectors import load_detector, make_detector
from sensorguard.detectors.alarm import AlarmRule, AlarmTracker
from sensorguard.detectors.events import hysteresis, on_delay
from sensorguard.registry.models import LoadedModel
from sensorguard.scoring.stream import AssetStreams
from sensorguard.serving.app import create_app
from sensorguard.serving.model import ServedModel
from sensorguard.serving.settings import ServingSettings

pytestmark = pytest.mark.model
AUTH = {"authorization": "Bearer t"}


class FolderSource:
    """Model versions saved with ``Detector.save``; ``current`` plays the alias."""

    name = "pump-model"
    alias = "production"

    def __init__(self, folders: dict[int, Path], max_assets: int) -> None:
        self.folders = folders
        self.current = 1
        self.max_assets = max_assets

    def resolve(self) -> int:
        return self.current

    def load(self, version: int) -> ServedModel:
        det = load_detector(self.folders[version])
        loaded = LoadedModel(self.name, version, self.alias, None, det, loaded_at=datetime.now(UTC))
        return ServedModel(loaded, max_assets=self.max_assets)

    def location(self) -> str:
        return "folders"


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("serving-alarms")
    train = simulate_pump(days=2, seed=1, failures=False)
    det = make_detector("operating-states", max_states=4).fit(train[list(SENSORS)])
    folders = {v: det.save(root / f"v{v}") for v in (1, 2)}
    return {"root": root, "detector": load_detector(folders[1]), "folders": folders}


@pytest.fixture
def app(saved: dict[str, Any]) -> Iterator[tuple[TestClient, FolderSource]]:
    settings = ServingSettings(
        home=saved["root"], api_token="t", poll_interval=60.0, max_batch=2_000, max_body_mb=8
    )
    source = FolderSource(saved["folders"], max_assets=3)
    with TestClient(create_app(settings, source)) as client:
        deadline = time.monotonic() + 30
        while client.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, client.get("/readyz").json()
            time.sleep(0.02)
        yield client, source


def _records(df: pd.DataFrame, asset: str | None) -> list[dict[str, Any]]:
    out = []
    for row in df[list(SENSORS)].itertuples(index=False):
        r: dict[str, Any] = {
            s: (None if np.isnan(v) else float(v)) for s, v in zip(SENSORS, row, strict=True)
        }
        if asset is not None:
            r["asset_id"] = asset
        out.append(r)
    return out


def _stream(seed: int) -> pd.DataFrame:
    return simulate_pump(days=1, seed=seed, n_failures=1)


def _predict(client: TestClient, readings: list[dict[str, Any]], query: str = "") -> Any:
    r = client.post(f"/v1/predict{query}", json={"readings": readings}, headers=AUTH)
    assert r.status_code == 200, r.text
    return r.json()["predictions"]


# ------------------------------------------------------------------ the tracker itself
@pytest.mark.parametrize(
    "params",
    [
        {"smooth_window": 5, "min_duration": 3, "off_ratio": 0.8, "release": 5},
        {"smooth_window": 1, "min_duration": 1, "off_ratio": 1.0, "release": 1},
        {"smooth_window": 3, "min_duration": 2, "off_ratio": 0.7, "release": 2},
        {"smooth_window": 4, "min_duration": 6, "off_ratio": 0.5, "release": 1},
        {"smooth_window": 3, "min_duration": 2, "off_ratio": 0.7, "release": 2, "confirm": 30},
    ],
)
def test_stream_tracker_equals_one_pass_for_any_chunking(params: dict[str, Any]) -> None:
    rng = np.random.default_rng(0)
    score = np.abs(rng.normal(1.0, 0.6, 3_000)) + np.repeat(rng.random(60) > 0.7, 50) * 1.5
    score[rng.random(score.size) < 0.02] = np.nan  # dropouts count as 0 in the smoothing
    kw = {k: v for k, v in params.items() if k != "confirm"}
    expected = on_delay(hysteresis(score, 1.8, **kw), params.get("confirm", 0))
    assert 0 < expected.sum() < expected.size  # alarms start and end
    rule = AlarmRule(1.8, **params)
    for sizes in ([1], [17, 40, 1, 2, 300], [1, 1, 33, 1, 16, 17, 5]):
        t = rule.tracker()
        got, i, k = [], 0, 0
        while i < score.size:
            n = sizes[k % len(sizes)]
            got.append(t.update(score[i : i + n]))
            i, k = i + n, k + 1
            if k % 7 == 0:  # a checkpoint through JSON and a restart continue exactly
                t = AlarmTracker.restore(rule, json.loads(json.dumps(t.state())))
        np.testing.assert_array_equal(np.concatenate(got), expected, err_msg=str(sizes))


@pytest.mark.parametrize(
    "name", ["operating-states", "pca", "iforest", "drift-robust", "pca-smoothed", "knn"]
)
def test_every_detector_gets_its_own_smoothing(name: str) -> None:
    X = simulate_pump(days=0.5, seed=3, failures=False)[list(SENSORS)]
    det = make_detector(name).fit(X)
    rule = det.alarm_rule_
    params = det.get_params()
    assert rule.threshold == det.threshold_
    for key in ("smooth_window", "min_duration", "off_ratio", "release"):
        assert getattr(rule, key) == params[key], key
    assert rule.confirm == params.get("confirm", 0)
    t = rule.tracker()
    # on the detector's own scores the streamed flags are its hysteresis alarm, raised
    # after its on-delay (equal to the batch alarm for detectors without one)
    test = simulate_pump(days=0.5, seed=4, n_failures=1)[list(SENSORS)].ffill().bfill()
    score = det.score_samples(test)
    flags = np.concatenate([t.update(score[i : i + 7]) for i in range(0, score.size, 7)])
    kw = {k: getattr(det, k) for k in ("smooth_window", "min_duration", "off_ratio", "release")}
    live = on_delay(hysteresis(score, det.threshold_, **kw), rule.confirm)
    np.testing.assert_array_equal(flags, live)
    if rule.confirm <= 1:
        np.testing.assert_array_equal(flags, det.predict(test).astype(bool))


def test_detectors_without_smoothing_fall_back_to_a_plain_threshold() -> None:
    from sensorguard.detectors.base import BaseDetector, Computed

    class Plain(BaseDetector):
        name = "plain-test"

        def _fit(self, A: np.ndarray) -> None:
            self.threshold_ = 1.0

        def _compute(self, A: np.ndarray, want_contrib: bool = True) -> Computed:
            return Computed(np.asarray(A[:, 0], dtype=np.float64), np.abs(A))

    det = Plain().fit(pd.DataFrame({"a": [0.0, 2.0], "b": [1.0, 1.0]}))
    assert det.alarm_rule_ == AlarmRule(1.0)
    streams = AssetStreams(det)
    A = np.array([[0.5, 1.0], [1.5, 1.0], [0.9, 1.0], [2.0, 1.0]])
    assert streams.score(A.copy(), None).is_anomaly.tolist() == [False, True, False, True]
    one = [streams.score(A[i : i + 1].copy(), ["x"]).is_anomaly[0] for i in (1, 2)]
    assert one == [True, False]
    # a score exactly at the threshold neither starts nor ends an alarm
    assert det.alarm_rule_.flags([2.0, 1.0, 0.0, 1.0]).tolist() == [True, True, False, False]


def test_trackers_are_bounded_least_recently_used_first(saved: dict[str, Any]) -> None:
    det = saved["detector"]
    streams = AssetStreams(det, max_assets=2)
    row = np.asarray([det.schema_.fill_values], dtype=np.float64)
    for a in ("a", "b", "a", "c"):
        streams.score(row.copy(), [a])
    assert len(streams) == 2 and "a" in streams and "c" in streams and "b" not in streams
    assert streams.evicted == 1


# ------------------------------------------------------------------ through the service
def test_one_reading_per_request_raises_the_alarm_like_one_pass(
    app: tuple[TestClient, FolderSource], saved: dict[str, Any]
) -> None:
    client, _ = app
    stream = _stream(10)
    expected = saved["detector"].detect(stream[list(SENSORS)])
    assert expected.is_anomaly.sum() > 10  # the failure raises an alarm
    assert stream[list(SENSORS)].isna().any().any()  # gaps continue the asset's values
    preds = [_predict(client, [r])[0] for r in _records(stream, "pump-07")]
    assert [p["is_anomaly"] for p in preds] == expected.is_anomaly.tolist()
    np.testing.assert_allclose([p["score"] for p in preds], expected.score, rtol=1e-6)
    assert [p["above_threshold"] for p in preds] == (expected.score > expected.threshold).tolist()
    # one reading without context can never raise an alarm on its own
    alone = _predict(client, _records(stream, "pump-07")[:1], "?stateless=true")
    assert alone[0]["is_anomaly"] is False


def test_mixed_asset_batches_of_any_size_match_each_assets_stream(
    app: tuple[TestClient, FolderSource], saved: dict[str, Any]
) -> None:
    client, _ = app
    det = saved["detector"]
    streams = {"a": _stream(11), "b": _stream(12), None: _stream(13)}
    recs = {k: _records(df, k) for k, df in streams.items()}
    # interleave the three streams (each in its own order) and cut into random batches
    rng = np.random.default_rng(5)
    order = rng.permutation(np.repeat([0, 1, 2], [len(r) for r in recs.values()]))
    keys = list(recs)
    pos = dict.fromkeys(keys, 0)
    merged = []
    for j in order:
        k = keys[j]
        merged.append((k, recs[k][pos[k]]))
        pos[k] += 1
    got: dict[Any, list[bool]] = {k: [] for k in keys}
    i = 0
    while i < len(merged):
        n = int(rng.choice([1, 2, 5, 40, 300]))
        chunk = merged[i : i + n]
        preds = _predict(client, [r for _, r in chunk])
        for (k, _), p in zip(chunk, preds, strict=True):
            assert p.get("asset_id") == k
            got[k].append(p["is_anomaly"])
        i += n
    for k, df in streams.items():
        expected = det.detect(df[list(SENSORS)]).is_anomaly.tolist()
        assert sum(expected) > 0
        assert got[k] == expected, k


def test_stateless_scores_each_batch_on_its_own(
    app: tuple[TestClient, FolderSource], saved: dict[str, Any]
) -> None:
    client, _ = app
    stream = _stream(14)
    recs = _records(stream, "pump-09")
    window = recs[600:700]
    for _ in range(2):  # stateless requests neither read nor change the asset's state
        preds = _predict(client, window, "?stateless=true")
        filled = saved["detector"].detect(stream[list(SENSORS)].iloc[600:700])
        assert [p["is_anomaly"] for p in preds] == filled.is_anomaly.tolist()
    assert client.get("/v1/model").json()["tracked_assets"] == 0
    r = client.post("/v1/predict?stateless=maybe", json={"readings": window}, headers=AUTH)
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request"
    bad = client.post(
        "/v1/predict", json={"readings": [{**recs[0], "asset_id": [1]}]}, headers=AUTH
    )
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "bad_asset_id"


def test_trackers_start_afresh_after_a_model_swap(
    app: tuple[TestClient, FolderSource], saved: dict[str, Any]
) -> None:
    client, source = app
    stream = _stream(10)
    flags = saved["detector"].detect(stream[list(SENSORS)]).is_anomaly
    first_on = int(np.flatnonzero(flags)[0])
    recs = _records(stream, "pump-07")
    for r in recs[: first_on + 1]:
        last = _predict(client, [r])[0]
    assert last["is_anomaly"] is True  # the alarm is on for pump-07
    assert client.get("/v1/model").json()["tracked_assets"] == 1
    source.current = 2
    r = client.post("/v1/admin/reload", headers=AUTH).json()
    assert (r["changed"], r["version"]) == (True, 2)
    info = client.get("/v1/model").json()
    assert info["tracked_assets"] == 0 and info["alarm"] == "hysteresis"
    # the same next reading under version 2: no history, so no alarm yet
    nxt = _predict(client, [recs[first_on + 1]])[0]
    assert nxt["above_threshold"] is True and nxt["is_anomaly"] is False


def test_the_tracker_bound_comes_from_the_settings(app: tuple[TestClient, FolderSource]) -> None:
    client, _ = app
    X = simulate_pump(days=0.01, seed=2, failures=False)
    rec = _records(X.head(1), None)[0]
    _predict(client, [{**rec, "asset_id": f"m{i}"} for i in range(5)])
    assert client.get("/v1/model").json()["tracked_assets"] == 3
    assert "sensorguard_tracked_assets 3.0" in client.get("/metrics").text


def test_openapi_documents_the_stateless_option(app: tuple[TestClient, FolderSource]) -> None:
    client, _ = app
    op = client.get("/openapi.json").json()["paths"]["/v1/predict"]["post"]
    params = {p["name"]: p for p in op["parameters"]}
    assert params["stateless"]["schema"]["type"] == "boolean"
    assert "per-asset alarm state" in params["stateless"]["description"]


# ------------------------------------------------------- a detector whose score has state
def test_drift_robust_continues_each_assets_baseline_across_requests() -> None:
    from sensorguard.evaluation.synthetic import SENSORS as RIG
    from sensorguard.evaluation.synthetic import pump_rig_file

    det = make_detector("drift-robust").fit(
        pump_rig_file(0, kind="valve_outlet", strength_range=(1.2, 1.6))[RIG].iloc[:400]
    )
    served = ServedModel(LoadedModel(name="rig", version=1, alias=None, run_id=None, detector=det))
    streams = {
        "a": pump_rig_file(0, kind="valve_outlet", strength_range=(1.2, 1.6))[RIG]
        .iloc[400:]
        .to_numpy(),
        "b": pump_rig_file(1, kind="none")[RIG].iloc[400:1000].to_numpy(),
    }
    kw = {k: getattr(det, k) for k in ("smooth_window", "min_duration", "off_ratio", "release")}
    expected = {}
    for key, A in streams.items():
        score = det.score_samples(A)
        expected[key] = (score, on_delay(hysteresis(score, det.threshold_, **kw), det.confirm))
    assert expected["a"][1].any()  # the valve closure is raised live
    # interleave both assets in requests of varying size, some mixed, some single readings
    got: dict[str, list[tuple[float, bool]]] = {"a": [], "b": []}
    pos = {"a": 0, "b": 0}
    sizes = [1, 5, 1, 40, 2, 1, 120, 3]
    k = 0
    while pos["a"] < len(streams["a"]) or pos["b"] < len(streams["b"]):
        n = sizes[k % len(sizes)]
        k += 1
        rows, assets = [], []
        for key in ("a", "b") if k % 2 else ("b", "a"):
            take = streams[key][pos[key] : pos[key] + n]
            pos[key] += len(take)
            rows.extend(take)
            assets.extend([key] * len(take))
        if not rows:
            continue
        scored = served.score(np.asarray(rows, dtype=np.float64), assets, missing=False)
        for a, s, flag in zip(assets, scored.score, scored.is_anomaly, strict=True):
            got[a].append((float(s), bool(flag)))
    for key in ("a", "b"):
        np.testing.assert_allclose([s for s, _ in got[key]], expected[key][0], rtol=1e-9)
        assert [f for _, f in got[key]] == expected[key][1].tolist()
    # stateless: the batch starts from where training ended, untouched by the live state
    batch = streams["a"][:50]
    alone = served.score(batch, ["a"] * 50, stateless=True, missing=False)
    np.testing.assert_allclose(alone.score, det.score_samples(batch), rtol=1e-9)
