"""The watch loop on the embedded SQLite store: live equals batch, restarts, rules.

The service tests (real PostgreSQL + Mosquitto, subprocesses, kill -9) are in
``test_watch_services.py``; these run the same :class:`Watcher` in-process.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

SENSOR_COLS = None  # filled by the fixture


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from sensorguard.data.simulator import simulate_pump
    from sensorguard.detectors import make_detector
    from sensorguard.pipelines.drift import training_profile

    train = simulate_pump(days=4, seed=1, failures=False)
    X = train.drop(columns=["timestamp", "asset_id", "machine_status", "failure_mode"])
    det = make_detector("operating-states").fit(X)
    test = simulate_pump(days=2, seed=2, n_failures=2)
    return {
        "detector": det,
        "profile": training_profile(X),
        "test": test,
        "sensors": list(X.columns),
    }


def _loaded(trained: dict[str, Any], version: int = 1, detector: Any = None) -> Any:
    from sensorguard.registry import LoadedModel

    return LoadedModel(
        name="pump",
        version=version,
        alias="production",
        run_id=None,
        detector=detector or trained["detector"],
        training_profile=trained["profile"],
    )


def _watcher(url: str, trained: dict[str, Any], version: int = 1, **cfg: Any) -> Any:
    from sensorguard.live.watch import WatchConfig, Watcher

    cfg.setdefault("late_check_s", 0.0)
    config = WatchConfig(store_url=url, model_ref="unused-folder", model_poll_s=1e9, **cfg)
    w = Watcher(config)
    w.use(_loaded(trained, version))
    return w


def _drain(w: Any) -> int:
    total = 0
    while True:
        n = w.step().readings
        total += n
        if n == 0:
            return total


def _batch_events(trained: dict[str, Any], frame: pd.DataFrame) -> list[tuple[Any, Any, list[str]]]:
    from sensorguard.data import Readings
    from sensorguard.scoring.readings import alarm_events, detect_readings

    r = Readings.from_frame(
        frame, time_column="timestamp", label_column="machine_status", asset_column="asset_id"
    )
    res = detect_readings(trained["detector"], r)
    return [
        (pd.Timestamp(e["start"]), pd.Timestamp(e["end"]), list(e["top_sensors"]))
        for e in alarm_events(res, r)
    ]


def _live_events(url: str, asset: str = "pump-01", kind: str = "failure") -> list[dict[str, Any]]:
    from sensorguard.store.alarms import list_alarms

    rows, _ = list_alarms(url=url, asset=asset, kind=kind, limit=1000)
    return sorted(rows, key=lambda a: a["start"])


def _as_spans(rows: list[dict[str, Any]]) -> list[tuple[Any, Any, list[str]]]:
    return [
        (pd.Timestamp(a["start"]), pd.Timestamp(a["end"] or a["last_time"]), a["top_sensors"])
        for a in rows
    ]


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'readings.db'}"


def _insert(url: str, frame: pd.DataFrame) -> None:
    from sensorguard.store import insert_readings

    # a fresh index: the data contract reads rows by position
    insert_readings(frame.reset_index(drop=True), url=url)


@pytest.mark.parametrize("batch_rows", [7, 250, 20_000])
def test_live_equals_batch_for_any_step_size(trained, store_url, batch_rows):
    test = trained["test"]
    expected = _batch_events(trained, test)
    assert len(expected) >= 2, "the simulated stream must contain failures"
    _insert(store_url, test)
    w = _watcher(store_url, trained, batch_rows=batch_rows)
    assert _drain(w) == len(test)
    live = _live_events(store_url)
    assert _as_spans(live) == expected
    assert all(a["state"] == "closed" or a is live[-1] for a in live)
    assert {a["model_version"] for a in live} == {"1"}
    for a in live:  # the console shows each top sensor's share of the deviation
        blame = a["detail"]["blame"]
        assert list(blame) == a["top_sensors"] and 0 < sum(blame.values()) <= 1.0 + 1e-9


def test_arrival_in_chunks_and_any_order_within_a_batch(trained, store_url):
    """Readings arrive in random-size chunks, each shuffled; the watch steps between
    arrivals. Each chunk is read back sorted by time, so the events are the batch ones."""
    test = trained["test"]
    rng = np.random.default_rng(7)
    w = _watcher(store_url, trained, batch_rows=5_000)
    cuts = np.sort(rng.choice(np.arange(1, len(test)), size=40, replace=False))
    for part in np.split(np.arange(len(test)), cuts):
        chunk = test.iloc[rng.permutation(part)].reset_index(drop=True)
        _insert(store_url, chunk)
        _drain(w)
    assert _as_spans(_live_events(store_url)) == _batch_events(trained, test)
    assert w.totals["late"] == 0


def test_restart_from_checkpoints_gives_the_same_events(trained, store_url):
    test = trained["test"]
    _insert(store_url, test)
    w = _watcher(store_url, trained, batch_rows=333)
    for _ in range(5):
        w.step()
    w.leases.release_all()
    # a new process: everything in memory is gone, the checkpoints are not
    w2 = _watcher(store_url, trained, batch_rows=333)
    _drain(w2)
    assert _as_spans(_live_events(store_url)) == _batch_events(trained, test)


def test_a_step_that_fails_before_commit_is_redone_exactly(trained, store_url, monkeypatch):
    """A crash between scoring and commit (here: the outbox write raises) rolls the
    whole step back; continuing from the checkpoint writes every event exactly once."""
    import sensorguard.live.watch as watch_mod

    test = trained["test"]
    _insert(store_url, test)
    w = _watcher(store_url, trained, batch_rows=400)
    real = watch_mod.Watcher._enqueue
    calls = {"n": 0}

    def flaky(self: Any, conn: Any, transitions: Any, ids: Any) -> None:
        if transitions:
            calls["n"] += 1
            if calls["n"] in (1, 3):
                raise RuntimeError("crash before commit")
        real(self, conn, transitions, ids)

    monkeypatch.setattr(watch_mod.Watcher, "_enqueue", flaky)
    for _ in range(200):
        try:
            if w.step().readings == 0:
                break
        except RuntimeError:
            continue
    assert calls["n"] >= 3
    live = _live_events(store_url)
    assert _as_spans(live) == _batch_events(trained, test)
    # and each transition reached the outbox once
    import sqlalchemy as sa

    from sensorguard.store import get_engine
    from sensorguard.store.schema import notifications

    with get_engine(store_url).connect() as conn:
        rows = conn.execute(
            sa.select(notifications.c.event_id, notifications.c.transition).where(
                notifications.c.kind == "failure"
            )
        ).all()
    names = [(r[0], r[1].split(":")[0]) for r in rows]
    assert sorted(n for n in names if n[1] != "updated") == sorted(
        [(str(a["id"]), "opened") for a in live] + [(str(a["id"]), "closed") for a in live]
    )


def test_a_fenced_writer_cannot_write_a_step_twice(trained, store_url):
    """Two processes that both think they own an asset: the checkpoint's seq lets only
    one of them commit each step; the other drops the asset."""
    from sensorguard.live.watch import StepStats

    test = trained["test"]
    _insert(store_url, test)
    a = _watcher(store_url, trained, batch_rows=1000)
    b = _watcher(store_url, trained, batch_rows=1000)
    sa_, sb = StepStats(), StepStats()
    a._step_asset("pump-01", sa_)  # both load checkpoint seq 0 / 1 ...
    b._step_asset("pump-01", sb)  # b loads a's checkpoint and continues after it
    with pytest.raises(Exception, match="pump-01"):
        a._step_asset("pump-01", sa_)
    for _ in range(10):
        b._step_asset("pump-01", sb)
    assert sb.readings == len(test) - 1000
    assert _as_spans(_live_events(store_url)) == _batch_events(trained, test)


def test_late_reading_is_stored_counted_and_not_scored(trained, store_url):
    test = trained["test"]
    late = test.iloc[[100]]
    _insert(store_url, test.drop(index=test.index[100]))
    w = _watcher(store_url, trained)
    _drain(w)
    scored = w.assets["pump-01"].ck.n_scored
    _insert(store_url, late)  # older than everything scored
    _drain(w)
    w.step()
    ck = w.assets["pump-01"].ck
    assert ck.n_scored == scored == len(test) - 1
    assert ck.n_late == 1
    from sensorguard.store.alarms import asset_live_status

    st = asset_live_status(["pump-01"], url=store_url)["pump-01"]
    assert st["late"] == 1 and st["scored"] == len(test) - 1
    assert pd.Timestamp(st["last_reading_at"]) == pd.Timestamp(test["timestamp"].iloc[-1])


def test_late_readings_before_the_first_scored_one_and_restarts_count_once(trained, store_url):
    # the check reads the writers' per-asset counts and the unscored tail (not the
    # scored history); a reading older than the stream's first is late too, and a
    # restart from the checkpoint neither loses nor doubles the count
    test = trained["test"]
    _insert(store_url, test.iloc[10:500])
    w = _watcher(store_url, trained)
    _drain(w)
    w.step()
    assert w.assets["pump-01"].ck.n_late == 0
    _insert(store_url, test.iloc[:3])  # before the first scored reading
    _insert(store_url, test.iloc[500:600])  # new: scored, not late
    _drain(w)
    w.step()
    assert w.assets["pump-01"].ck.n_late == 3
    w.leases.release_all()
    again = _watcher(store_url, trained)  # a restart from the checkpoints
    _insert(store_url, test.iloc[[5]])
    _insert(store_url, test.iloc[600:601])
    _drain(again)
    again.step()
    ck = again.assets["pump-01"].ck
    assert (ck.n_late, ck.n_scored) == (4, 591)


def test_hot_swap_closes_open_failure_with_model_changed(trained, store_url):
    test = trained["test"]
    spans = _batch_events(trained, test)
    start = spans[0][0]
    # stop in the middle of the first failure
    cut = int(np.flatnonzero(pd.to_datetime(test["timestamp"]) == start)[0]) + 20
    _insert(store_url, test.iloc[:cut])
    w = _watcher(store_url, trained, version=1)
    _drain(w)
    assert _live_events(store_url)[0]["state"] == "open"
    w.use(_loaded(trained, version=2))
    _insert(store_url, test.iloc[cut:])
    _drain(w)
    live = _live_events(store_url)
    first = live[0]
    assert first["model_version"] == "1" and first["state"] == "closed"
    assert first["close_reason"] == "model_changed"
    assert pd.Timestamp(first["end"]) == pd.Timestamp(test["timestamp"].iloc[cut - 1])
    assert {a["model_version"] for a in live[1:]} == {"2"}
    assert all(a["close_reason"] in (None, "normal") for a in live[1:])
    # the new version opens its own events; the later failures are found as in batch
    assert _as_spans(live[-1:])[0][1] == spans[-1][1]


def test_silent_asset_raises_then_clears(trained, store_url):
    import time

    from sensorguard.live.quality_alarms import QualityRules

    test = trained["test"]
    _insert(store_url, test.iloc[:100])
    w = _watcher(store_url, trained, quality=QualityRules(silent_after_s=0.3))
    _drain(w)
    assert _live_events(store_url, kind="silent") == []
    time.sleep(0.4)
    w.step()
    (al,) = _live_events(store_url, kind="silent")
    assert al["state"] == "open"
    assert pd.Timestamp(al["start"]) == pd.Timestamp(test["timestamp"].iloc[99])
    _insert(store_url, test.iloc[100:110])
    w.step()
    (al,) = _live_events(store_url, kind="silent")
    assert al["state"] == "closed"
    assert pd.Timestamp(al["end"]) == pd.Timestamp(test["timestamp"].iloc[100])


def _quality_run(
    trained: dict[str, Any], X: np.ndarray, times: np.ndarray, cuts: list[int]
) -> list:
    from sensorguard.live.quality_alarms import QualityMonitor, QualityRules, training_ranges

    rules = QualityRules(missing_readings=5, flatline_readings=8, range_readings=3, range_release=4)
    q = QualityMonitor(
        "a",
        trained["sensors"],
        rules=rules,
        ranges=training_ranges(trained["profile"], 0.05),
        model_version="1",
    )
    out = []
    for part in np.split(np.arange(len(X)), cuts):
        if part.size:
            state = q.state()
            q2 = QualityMonitor(
                "a", trained["sensors"], rules=rules, ranges=q.ranges, model_version="1"
            )
            q2.restore(__import__("orjson").loads(__import__("orjson").dumps(state)))
            q = q2  # state survives a JSON round trip (a checkpoint)
            out += [
                (t.action, t.kind, t.sensor, t.start, t.alarm["end_time"])
                for t in q.feed(times[part], X[part])
            ]
    return out


def test_quality_alarms_open_close_and_do_not_depend_on_batching(trained):
    test = trained["test"]
    sensors = trained["sensors"]
    # clean readings near the training means (no dropouts, no repeats), then faults
    prof = trained["profile"]["sensors"]
    mean = np.array([prof[s]["mean"] for s in sensors])
    std = np.array([prof[s]["std"] for s in sensors])
    X = mean + 0.1 * std * np.random.default_rng(3).standard_normal((300, len(sensors)))
    times = pd.to_datetime(test["timestamp"]).to_numpy()[:300].astype("datetime64[us]")
    X[50:60, 0] = np.nan  # missing 10 readings (rule: 5)
    X[100:120, 1] = X[99, 1]  # flat for 21 readings (rule: 8)
    hi = trained["profile"]["sensors"][sensors[2]]["max"]
    X[200:210, 2] = hi * 10 + np.arange(10)  # out of range for 10 readings (rule: 3, release 4)
    X[150:152, 3] = np.nan  # a short dropout: no alarm
    whole = _quality_run(trained, X, times, [])
    kinds = [(a, k, s) for a, k, s, _, _ in whole]
    assert kinds == [
        ("opened", "sensor_missing", sensors[0]),
        ("closed", "sensor_missing", sensors[0]),
        ("opened", "flatline", sensors[1]),
        ("closed", "flatline", sensors[1]),
        ("opened", "out_of_range", sensors[2]),
        ("closed", "out_of_range", sensors[2]),
    ]
    miss_close = whole[1]
    assert miss_close[3] == pd.Timestamp(times[50]) and miss_close[4] == pd.Timestamp(times[59])
    rng_close = whole[5]
    assert rng_close[3] == pd.Timestamp(times[200]) and rng_close[4] == pd.Timestamp(times[209])
    for cuts in ([1, 2, 3, 52, 53, 105, 203, 204, 212], list(range(5, 300, 7))):
        assert _quality_run(trained, X, times, cuts) == whole


def test_leases_split_assets_and_move_when_a_worker_dies(store_url):
    import time

    from sensorguard.live.leases import Leases
    from sensorguard.store import ensure_schema

    engine = ensure_schema(store_url)
    assets = [f"a{i}" for i in range(7)]
    one = Leases(engine, "one", ttl=0.6)
    two = Leases(engine, "two", ttl=0.6)
    one.refresh(assets)  # alone: takes everything
    assert one.owned == set(assets)
    two.refresh(assets)  # sees two workers, claims what is free (nothing yet)
    one.refresh(assets)  # gives back above its fair share (4)
    two.refresh(assets)
    assert len(one.owned) == 4 and len(two.owned) == 3
    assert one.owned.isdisjoint(two.owned)
    time.sleep(0.7)  # "one" dies: no more heartbeats
    two.refresh(assets)
    assert two.owned == set(assets)


def test_alarm_api_lists_labels_and_acknowledges(trained, store_url, monkeypatch, tmp_path):
    from fastapi.testclient import TestClient

    from sensorguard.serving.app import create_app
    from sensorguard.serving.settings import ServingSettings

    _insert(store_url, trained["test"])
    _drain(_watcher(store_url, trained))
    monkeypatch.setenv("SENSORGUARD_HOME", str(tmp_path / "home"))
    app = create_app(ServingSettings(store_url=store_url, poll_interval=3600))
    with TestClient(app) as c:
        r = c.get("/v1/alarms", params={"asset": "pump-01", "kind": "failure"})
        assert r.status_code == 200
        body = r.json()
        assert body["total"] == len(_batch_events(trained, trained["test"]))
        first = body["alarms"][-1]  # newest first
        assert {
            "id",
            "asset_id",
            "kind",
            "state",
            "start",
            "end",
            "top_sensors",
            "model_version",
        } <= set(first)
        assert c.get("/v1/alarms", params={"state": "open", "kind": "failure"}).json()["total"] == 0
        assert c.get("/v1/alarms", params={"limit": 1}).json()["alarms"].__len__() == 1
        r = c.post(f"/v1/alarms/{first['id']}/label", json={"label": "false_alarm", "by": "ann"})
        assert r.status_code == 200 and r.json()["label"]["label"] == "false_alarm"
        r = c.post(f"/v1/alarms/{first['id']}/acknowledge", json={"by": "bob"})
        assert r.json()["acknowledged_by"] == "bob"
        assert c.get("/v1/alarms", params={"label": "false_alarm"}).json()["total"] == 1
        assert c.get("/v1/alarms/999999").status_code == 404
        r = c.post(f"/v1/alarms/{first['id']}/label", json={"label": "broken"})
        assert r.status_code == 422
        assert c.get("/v1/alarms", params={"state": "maybe"}).status_code == 422


def test_alarm_api_needs_the_token_when_one_is_configured(store_url, monkeypatch, tmp_path):
    from fastapi.testclient import TestClient

    from sensorguard.serving.app import create_app
    from sensorguard.serving.settings import ServingSettings

    monkeypatch.setenv("SENSORGUARD_HOME", str(tmp_path / "home"))
    app = create_app(ServingSettings(store_url=store_url, poll_interval=3600, api_token="s3cret"))
    with TestClient(app) as c:
        assert c.get("/v1/alarms").status_code == 401
        assert c.post("/v1/alarms/1/label", json={"label": "failure"}).status_code == 401
        auth = {"Authorization": "Bearer s3cret"}
        assert c.get("/v1/alarms", headers=auth).json()["total"] == 0
        assert c.post("/v1/alarms/1/acknowledge", headers=auth).status_code == 404


def test_watch_follows_the_production_alias(sg_home, store_url):
    """A promotion moves the watch loop to the new version at its next model check."""
    from support.serving import fit, register, set_alias

    from sensorguard.config import get_settings
    from sensorguard.live.watch import WatchConfig, Watcher

    settings = get_settings()
    v1 = register(settings, fit(seed=0))
    v2 = register(settings, fit(seed=1), alias=None)
    w = Watcher(
        WatchConfig(store_url=store_url, model_ref=f"models:/{settings.model_name}@production"),
        settings=settings,
    )
    assert w.check_model(force=True) and w.model is not None
    assert w.model.version == str(v1)
    assert not w.check_model(force=True)  # alias unchanged: no reload
    set_alias(settings, v2)
    assert w.check_model(force=True)
    assert w.model.version == str(v2)


def _register_type(settings: Any, name: str, detector: Any, sensors: list[str]) -> int:
    """Register ``detector`` as a version of model ``name`` and make it production."""
    import mlflow
    from support.serving import frame

    from sensorguard.registry import (
        configure_mlflow,
        ensure_experiment,
        get_client,
        log_detector_model,
        register_model_version,
    )

    configure_mlflow(settings)
    with mlflow.start_run(experiment_id=ensure_experiment(settings.experiment, settings)) as run:
        info = log_detector_model(detector, frame(5, seed=99)[sensors])
    mv = register_model_version(info.model_uri, run.info.run_id, name, tags={}, settings=settings)
    get_client(settings).set_registered_model_alias(name, "production", mv.version)
    return int(mv.version)


def test_routing_by_asset_scores_each_asset_with_its_machine_types_model(sg_home, store_url):
    """Two machine types (type-b on fewer sensors) and the default model: each asset is
    scored by its registered type's production version, an unregistered one by the
    default, across a restart; promoting a new version of one type swaps only its assets."""
    from support.serving import _SCALE, SENSORS, frame

    from sensorguard.config import get_settings
    from sensorguard.data import Readings
    from sensorguard.detectors import make_detector
    from sensorguard.live.watch import WatchConfig, Watcher
    from sensorguard.scoring.readings import alarm_events, detect_readings
    from sensorguard.store.alarms import asset_live_status, read_scores
    from sensorguard.store.assets import put_asset

    settings = get_settings()
    fit = lambda shift, cols, seed=0: make_detector(  # noqa: E731
        "operating-states", min_states=2, max_states=2
    ).fit(frame(400, seed, shift)[cols])
    few = SENSORS[:5]
    dets = {"u-01": fit(0.0, SENSORS), "a-01": fit(8.0, SENSORS), "b-01": fit(-8.0, few)}
    _register_type(settings, settings.model_name, dets["u-01"], SENSORS)
    _register_type(settings, "type-a", dets["a-01"], SENSORS)
    _register_type(settings, "type-b", dets["b-01"], few)
    put_asset("a-01", "type-a", url=store_url)
    put_asset("b-01", "type-b", url=store_url)
    put_asset("c-01", "type-c", url=store_url)  # a type with no production version
    # every asset sends all six sensors at its own operating point, with one fault
    shifts = {"u-01": 0.0, "a-01": 8.0, "b-01": -8.0, "c-01": 0.0}
    frames = {}
    for k, (asset, shift) in enumerate(shifts.items()):
        f = frame(600, seed=10 + k, shift=shift)
        f.iloc[300:360, :2] += 10 * _SCALE[:2]
        f.insert(0, "asset_id", asset)
        f.insert(0, "timestamp", pd.date_range("2026-03-01", periods=600, freq="min"))
        frames[asset] = f

    def batch(det: Any, f: pd.DataFrame) -> tuple[np.ndarray, list[tuple[Any, Any]]]:
        r = Readings.from_frame(f, time_column="timestamp", asset_column="asset_id")
        res = detect_readings(det, r)
        events = [(pd.Timestamp(e["start"]), pd.Timestamp(e["end"])) for e in alarm_events(res, r)]
        return np.asarray(res.score, dtype=np.float64), events

    def watcher() -> Any:
        cfg = WatchConfig(store_url=store_url, model_poll_s=1e9, late_check_s=0.0)
        w = Watcher(cfg, settings=settings)
        assert w.routing and w.check_model(force=True)
        return w

    def insert(lo: int, hi: int) -> None:
        for f in frames.values():
            _insert(store_url, f.iloc[lo:hi])

    insert(0, 250)
    w = watcher()
    _drain(w)
    assert set(w.models) == {"type-a", "type-b"} and "type-c" in w.model_errors
    assert w.not_scored == {"c-01": "type-c"}
    assert asset_live_status(["c-01"], url=store_url)["c-01"]["state"] == "not_scored"
    w.leases.release_all()
    w = watcher()  # a restart continues each asset from its checkpoint, with its model
    insert(250, 330)  # stops inside every asset's fault
    _drain(w)
    spans = {a: _as_spans(_live_events(store_url, a)) for a in shifts}
    assert spans["c-01"] == [] and read_scores("c-01", url=store_url).empty
    for asset in ("u-01", "a-01", "b-01"):
        (al,) = _live_events(store_url, asset)
        assert al["state"] == "open" and al["model_version"] == "1"
    # promote type-a v2: only a-01 swaps (its open alarm closed as model_changed)
    v2 = _register_type(settings, "type-a", fit(8.0, SENSORS, seed=1), SENSORS)
    assert v2 == 2 and w.check_model(force=True)
    assert w.models["type-a"].version == "2" and w.models["type-b"].version == "1"
    assert w.model is not None and w.model.version == "1"
    insert(330, 600)
    _drain(w)
    names = {"u-01": settings.model_name, "a-01": "type-a", "b-01": "type-b"}
    for asset in ("u-01", "b-01"):  # live equals batch with the asset's own model
        cols = SENSORS if asset == "u-01" else few
        score, events = batch(dets[asset], frames[asset][["timestamp", "asset_id", *cols]])
        assert len(events) >= 1
        live = _live_events(store_url, asset)
        assert [(s, e) for s, e, _ in _as_spans(live)] == events
        assert {(a["model_name"], a["model_version"]) for a in live} == {(names[asset], "1")}
        assert all(a["close_reason"] in (None, "normal") for a in live)
        p = read_scores(asset, url=store_url)
        assert len(p) == 600 and set(p["model_name"]) == {names[asset]}
        assert set(p["model_version"]) == {"1"}
        # float32 rounding: the live pass scores several assets in one matmul block,
        # whose rounding differs from one asset alone by up to 1.2e-7 (AMD EPYC)
        np.testing.assert_allclose(p["score"].to_numpy(), score, rtol=1e-6)
    live = _live_events(store_url, "a-01")
    assert (live[0]["model_name"], live[0]["model_version"]) == ("type-a", "1")
    assert live[0]["close_reason"] == "model_changed"
    assert {(a["model_name"], a["model_version"]) for a in live[1:]} == {("type-a", "2")}
    p = read_scores("a-01", url=store_url)
    assert list(p["model_version"]) == ["1"] * 330 + ["2"] * 270
    score, _ = batch(dets["a-01"], frames["a-01"].iloc[:330])
    np.testing.assert_allclose(p["score"].to_numpy()[:330], score, rtol=1e-6)
    assert w.not_scored == {"c-01": "type-c"}


# ---------------------------------------------------------------- regime change


def _batch_regime(trained: dict[str, Any], frame: pd.DataFrame) -> tuple[list[Any], Any]:
    """What ``sensorguard score`` reports: the failure events without the alarm a regime
    change carries, and the per-asset verdict (``evaluation.regime``)."""
    from dataclasses import replace

    from sensorguard.data import Readings
    from sensorguard.evaluation.regime import ranges_from_profile, regime_of_readings
    from sensorguard.scoring.readings import alarm_events, detect_readings

    r = Readings.from_frame(
        frame, time_column="timestamp", label_column="machine_status", asset_column="asset_id"
    )
    res = detect_readings(trained["detector"], r)
    regimes, kept = regime_of_readings(r, ranges_from_profile(trained["profile"]), res.is_anomaly)
    events = alarm_events(replace(res, is_anomaly=kept), r)
    spans = [
        (pd.Timestamp(e["start"]), pd.Timestamp(e["end"]), list(e["top_sensors"])) for e in events
    ]
    return spans, regimes


def _shifted(trained: dict[str, Any], rows: int | None) -> pd.DataFrame:
    """The test stream with ``bearing_temp`` 40 °C above anything seen in training for
    its first ``rows`` readings (``None``: all of them), as after a sensor swap."""
    test = trained["test"].copy()
    end = len(test) if rows is None else rows
    test.loc[: end - 1, "bearing_temp"] += 40.0
    return test


@pytest.mark.parametrize("batch_rows", [7, 59, 250, 20_000])
def test_regime_change_from_the_first_reading_live_equals_batch(trained, store_url, batch_rows):
    test = _shifted(trained, None)
    expected, regimes = _batch_regime(trained, test)
    verdict = regimes.verdicts["pump-01"]
    assert verdict.regime_change and [s.sensor for s in verdict.sensors] == ["bearing_temp"]
    assert verdict.until is None  # out to the end
    # without the rule, one alarm covers (nearly) the whole file
    unsuppressed = _batch_events(trained, test)
    t = pd.to_datetime(test["timestamp"])
    first = unsuppressed[0]
    assert first[0] < t.iloc[60] and first[1] - first[0] > pd.Timedelta(hours=40), unsuppressed
    assert first[:2] not in [e[:2] for e in expected]
    assert expected == [e for e in unsuppressed if e[0] > first[1]]
    _insert(store_url, test)
    w = _watcher(store_url, trained, batch_rows=batch_rows)
    assert _drain(w) == len(test)
    assert _as_spans(_live_events(store_url)) == expected
    (reg,) = _live_events(store_url, kind="regime_change")
    assert reg["state"] == "open" and reg["model_version"] == "1"
    assert pd.Timestamp(reg["start"]) == pd.Timestamp(test["timestamp"].iloc[0])
    assert reg["top_sensors"] == ["bearing_temp"]
    assert "retrain" in reg["detail"]["hint"] and "bearing_temp" in reg["detail"]["summary"]
    shift = reg["detail"]["sensors"][0]
    assert shift["sensor"] == "bearing_temp" and shift["median"] > shift["train_max"]
    # the per-sensor data-quality alarm is independent of it (docs/live.md)
    oor = [a for a in _live_events(store_url, kind="out_of_range") if a["sensor"] == "bearing_temp"]
    assert oor and pd.Timestamp(oor[0]["start"]) == t.iloc[0]


def test_a_regime_that_ends_closes_and_later_failures_are_reported(trained, store_url):
    test = _shifted(trained, 400)
    expected, regimes = _batch_regime(trained, test)
    v = regimes.verdicts["pump-01"]
    assert v.regime_change and v.until == 400 and v.closed_at == 459
    assert len(expected) >= 2, "the failures after the regime are kept"
    _insert(store_url, test.iloc[:30])  # a restart in the middle of the head
    w = _watcher(store_url, trained, batch_rows=11)
    _drain(w)
    assert _live_events(store_url, kind="regime_change") == []  # the head is not judged yet
    assert _live_events(store_url) == []  # its failure flags are held
    w.leases.release_all()
    _insert(store_url, test.iloc[30:])
    w2 = _watcher(store_url, trained, batch_rows=11)
    _drain(w2)
    assert _as_spans(_live_events(store_url)) == expected
    (reg,) = _live_events(store_url, kind="regime_change")
    assert reg["state"] == "closed" and reg["close_reason"] == "normal"
    assert pd.Timestamp(reg["end"]) == pd.Timestamp(test["timestamp"].iloc[399])


def test_no_regime_change_costs_nothing_and_a_new_version_is_judged_afresh(trained, store_url):
    test = _shifted(trained, None)
    _insert(store_url, test.iloc[:300])
    w = _watcher(store_url, trained, version=1)
    _drain(w)
    (reg,) = _live_events(store_url, kind="regime_change")
    assert reg["state"] == "open"
    w.use(_loaded(trained, version=2))
    _insert(store_url, test.iloc[300:])
    _drain(w)
    regs = _live_events(store_url, kind="regime_change")
    assert [(r["model_version"], r["state"], r["close_reason"]) for r in regs] == [
        ("1", "closed", "model_changed"),
        ("2", "open", None),
    ]
    assert pd.Timestamp(regs[1]["start"]) == pd.Timestamp(test["timestamp"].iloc[300])
    # on normal readings the rule is done after the head: nothing in the checkpoint
    from sensorguard.live.checkpoints import load_checkpoints

    other = f"sqlite:///{Path(store_url.split('///')[1]).with_name('normal.db')}"
    _insert(other, trained["test"])
    w3 = _watcher(other, trained)
    _drain(w3)
    with w3.engine.begin() as conn:
        st = load_checkpoints(conn, ["pump-01"])["pump-01"].state["regime"]
    assert st["stream"]["phase"] == "done" and "held" not in st
    assert _live_events(other, kind="regime_change") == []


def test_run_freezes_the_heap_after_its_first_pass(trained, store_url):
    # what lives as long as the process (imported code, statement caches, the model) is
    # moved out of the cyclic GC's generations, so full collections stay short
    import gc
    import threading

    _insert(store_url, trained["test"].iloc[:500])
    w = _watcher(store_url, trained)
    made = [{"i": i} for i in range(200)]  # tracked objects that exist before the pass
    stop = threading.Event()
    step, passes = w.step, []

    def one_step() -> Any:
        stats = step()
        passes.append((stats.readings, gc.get_freeze_count()))
        if len(passes) == 2:
            stop.set()
        return stats

    w.step = one_step  # type: ignore[method-assign]
    gc.unfreeze()
    try:
        w.run(stop)
        tracked = {id(o) for o in gc.get_objects()}
    finally:
        gc.unfreeze()
    assert passes[0] == (500, 0)  # the first pass runs on an unfrozen heap ...
    assert passes[1][1] > 1000  # ... and everything alive after it is frozen
    assert not any(id(o) in tracked for o in made)
