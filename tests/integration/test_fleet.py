"""Fleets for real: a real ``mlflow server``, PostgreSQL, ``sensorguard serve`` and the
training-job worker as processes.

Two machine types (registered models) are trained, gated, promoted and rolled back
independently; the asset registry validates and routes; the predictor serves both models
at once and routes by asset id; training jobs succeed, fail with their reason, and
survive a killed worker.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.pg import pg_available, temp_database
from support.services import require_service
from support.serving import SG, Proc, base_env, mlflow_server, predictor
from typer.testing import CliRunner

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FAST = {"max_states": 4, "silhouette_sample": 2000}
PUMP, COMP = "pump-centrifugal", "compressor-screw"
GATE_ENV = {
    # thresholds sized for 2-day evaluation windows holding a few failures
    "SENSORGUARD_GATE_MIN_F1": "0.3",
    "SENSORGUARD_GATE_MIN_EVENT_RECALL": "0.5",
    "SENSORGUARD_GATE_MAX_FALSE_ALARMS_PER_DAY": "3",
}
TOKEN = "fleet-test-token"


def _pumps(seed: int = 1) -> Any:
    from sensorguard.pipelines.fleet import simulate_fleet

    return simulate_fleet(2, days=5, freq="2min", seed=seed, prefix="pump")


def _compressors(seed: int = 2) -> Any:
    """Another machine type: other sensor names (and other operating points)."""
    from sensorguard.pipelines.fleet import simulate_fleet

    frame = simulate_fleet(2, days=5, freq="2min", seed=seed, spread=1.5, prefix="comp")
    return frame.rename(columns={s: f"c_{s}" for s in frame.columns[2:11]})


@pytest.fixture(scope="module")
def fleet_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A SensorGuard home on a real MLflow server: two models, each with production."""
    from sensorguard.config import get_settings

    folder = tmp_path_factory.mktemp("fleet")
    home = folder / "home"
    with mlflow_server(folder / "mlflow") as (_proc, url), pytest.MonkeyPatch.context() as mp:
        for var in ("MLFLOW_REGISTRY_URI", "SENSORGUARD_TRACKING_URI", "SENSORGUARD_STORE_URL"):
            mp.delenv(var, raising=False)
        env = {
            "SENSORGUARD_HOME": str(home),
            "MLFLOW_TRACKING_URI": url,
            **GATE_ENV,
            "SENSORGUARD_MODEL_NAME": PUMP,
        }
        for k, v in env.items():
            mp.setenv(k, v)
        get_settings.cache_clear()
        pumps, comps = folder / "pumps.csv", folder / "compressors.csv"
        _pumps().to_csv(pumps, index=False)
        _compressors().to_csv(comps, index=False)
        yield {
            "home": home,
            "url": url,
            "env": env,
            "pumps": pumps,
            "comps": comps,
            "folder": folder,
        }
        get_settings.cache_clear()


def _proc_env(fleet_env: dict[str, Any]) -> dict[str, str]:
    """The test's settings for a subprocess (which gets the home on its own)."""
    return {k: v for k, v in fleet_env["env"].items() if k != "SENSORGUARD_HOME"}


def _cli(*args: str) -> Any:
    from sensorguard.cli import app

    return CliRunner().invoke(app, list(args))


def _train(path: Path, model: str, *extra: str) -> Any:
    res = _cli(
        "train",
        str(path),
        "--model",
        model,
        "--holdout",
        "0.4",
        *[f"--param={k}={v}" for k, v in FAST.items()],
        *extra,
    )
    assert res.exit_code == 0, res.output
    return res


@pytest.fixture(scope="module")
def trained(fleet_env: dict[str, Any]) -> dict[str, Any]:
    """Version 1 of each machine type's model, trained and promoted with the CLI."""
    res = _train(fleet_env["pumps"], PUMP)
    assert f"{PUMP} version 1" in res.output, res.output
    assert "promoted v1 to production" in res.output, res.output
    res = _train(fleet_env["comps"], COMP)
    # the compressor is version 1 of its own model, not version 2 of the pump's
    assert f"{COMP} version 1" in res.output and "promoted v1" in res.output, res.output
    return fleet_env


# ---------------------------------------------------------------- lifecycle per model


def test_two_machine_types_are_trained_gated_promoted_and_rolled_back_independently(
    trained: dict[str, Any],
) -> None:
    from sensorguard.config import get_settings
    from sensorguard.pipelines.fleet import list_models, settings_for
    from sensorguard.registry import history, show_version
    from sensorguard.registry.versions import version_at

    fleet_env = trained
    settings = get_settings()
    pump, comp = settings_for(PUMP, settings), settings_for(COMP, settings)

    res = _train(fleet_env["pumps"], PUMP)  # same data again: as good, so promoted
    assert f"{PUMP} version 2" in res.output and "promoted v2" in res.output, res.output
    # several assets and no --detector: the measured default, per-asset calibration
    assert show_version(2, pump).tags["detector"] == "asset-calibrated"

    assert [(m.name, m.production, m.previous, m.versions) for m in list_models(settings)] == [
        (COMP, 1, None, 1),
        (PUMP, 2, 1, 2),
    ]
    res = _cli("models", "list")
    assert res.exit_code == 0, res.output
    assert PUMP in res.output and COMP in res.output and "v2" in res.output

    comp_tags = show_version(1, comp).tags
    res = _cli("models", "rollback", "--model", PUMP, "--reason", "pump v2 misbehaves")
    assert res.exit_code == 0 and "production v2 → v1" in res.output, res.output
    assert version_at(PUMP, "production", pump) == 1
    assert version_at(COMP, "production", comp) == 1  # the other model is untouched
    assert version_at(COMP, "previous", comp) is None
    assert show_version(1, comp).tags == comp_tags
    assert [e.action for e in history(pump)] == ["rollback", "promote", "promote"]
    assert [e.action for e in history(comp)] == ["promote"]
    res = _cli("models", "history", "--model", COMP)
    assert res.exit_code == 0 and "rollback" not in res.output, res.output
    res = _cli("models", "show", "1", "--model", COMP)
    assert res.exit_code == 0 and f"models:/{COMP}/1" in res.output, res.output

    # scoring by model name: the compressor's production version on compressor readings
    out = fleet_env["folder"] / "scored.csv"
    res = _cli("score", str(fleet_env["comps"]), "--model", COMP, "-o", str(out))
    assert res.exit_code == 0, res.output
    assert out.exists()
    res = _cli("score", str(fleet_env["comps"]), "--model", PUMP, "-o", str(out))
    assert res.exit_code == 2 and "missing sensor" in res.output.lower(), res.output

    # promote back so the next tests see v2 of the pump (and the roll-forward is audited)
    res = _cli("models", "rollback", "--model", PUMP)
    assert res.exit_code == 0 and version_at(PUMP, "production", pump) == 2


# ---------------------------------------------------------------- asset registry


@pytest.fixture
def pg_store(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    from sensorguard.config import get_settings

    require_service(pg_available(), "PostgreSQL is not reachable on 127.0.0.1:5432")
    with temp_database("fleet") as (_name, url):
        monkeypatch.setenv("SENSORGUARD_STORE_URL", url)
        get_settings.cache_clear()
        yield url
    get_settings.cache_clear()


def test_asset_registry_validates_and_reports_unregistered_assets(
    trained: dict[str, Any], pg_store: str
) -> None:
    from sensorguard.pipelines.fleet import register_asset
    from sensorguard.store import insert_readings
    from sensorguard.store.assets import AssetError, get_asset

    res = _cli(
        "assets",
        "add",
        "pump-01",
        "--model",
        PUMP,
        "--site",
        "north",
        "--tag",
        "flow_rate=FT-101",
        "--tag",
        "bearing_temp=TT-201",
    )
    assert res.exit_code == 0 and "registered asset pump-01" in res.output, res.output
    asset = get_asset("pump-01")
    assert asset is not None and asset.model == PUMP and asset.site == "north"

    # unknown model, a sensor the model lacks, a tag taken by another asset, a tag twice
    res = _cli("assets", "add", "pump-02", "--model", "no-such-type")
    assert res.exit_code == 2 and "unknown model 'no-such-type'" in res.output, res.output
    assert "Traceback" not in res.output
    with pytest.raises(AssetError, match="has no sensor") as err:
        register_asset("pump-02", PUMP, sensor_tags={"c_flow_rate": "FT-900"})
    assert err.value.code == "conflicting_sensors"
    with pytest.raises(AssetError, match="already belongs to sensor 'flow_rate' of asset"):
        register_asset("pump-02", PUMP, sensor_tags={"flow_rate": "FT-101"})
    res = _cli(
        "assets", "add", "pump-02", "--model", PUMP, "--tag", "flow_rate=X", "--tag", "power=X"
    )
    assert res.exit_code == 2 and "conflicting sensors" in res.output, res.output
    with pytest.raises(AssetError, match="invalid asset id"):
        register_asset("bad/id", PUMP)
    assert get_asset("pump-02") is None  # nothing half-written

    # readings of an asset nobody registered are stored and reported
    frame = _pumps(seed=9)
    frame = frame[frame["asset_id"] == "pump-01"].head(50).assign(asset_id="stray-7")
    frame = frame.reset_index(drop=True)
    stored = insert_readings(frame, url=pg_store)
    assert stored.inserted == 50
    res = _cli("assets", "list")
    assert res.exit_code == 0, res.output
    assert "pump-01" in res.output and "stray-7: 50 readings" in res.output, res.output
    res = _cli("assets", "show", "pump-01")
    assert res.exit_code == 0 and '"FT-101"' in res.output
    res = _cli("assets", "remove", "pump-01")
    assert res.exit_code == 0 and get_asset("pump-01") is None
    res = _cli("assets", "remove", "pump-01")
    assert res.exit_code == 2 and "not registered" in res.output


# ---------------------------------------------------------------- routing


def _reading_rows(frame: Any, asset: str, n: int) -> list[dict[str, Any]]:
    rows = frame[frame["asset_id"] == asset].head(n)
    sensors = [
        c
        for c in rows.columns
        if c not in ("timestamp", "asset_id", "machine_status", "failure_mode")
    ]
    return [
        {s: (None if v != v else float(v)) for s, v in zip(sensors, r, strict=True)}
        for r in rows[sensors].itertuples(index=False)
    ]


def test_predictor_serves_both_models_and_routes_by_asset_id(
    trained: dict[str, Any], pg_store: str, tmp_path: Path
) -> None:
    from sensorguard.config import get_settings
    from sensorguard.pipelines.fleet import settings_for
    from sensorguard.registry.versions import version_at

    fleet_env = trained
    settings = get_settings()
    pump_v = version_at(PUMP, "production", settings_for(PUMP, settings))
    comp_v = version_at(COMP, "production", settings_for(COMP, settings))
    env = {
        **_proc_env(fleet_env),
        "SENSORGUARD_STORE_URL": pg_store,
        "SENSORGUARD_API_TOKEN": TOKEN,
        "SENSORGUARD_POLL_INTERVAL": "0.5",
    }
    auth = {"Authorization": f"Bearer {TOKEN}"}
    pumps, comps = _pumps(), _compressors()
    with (
        predictor(fleet_env["home"], tmp_path / "serve.log", **env) as (proc, url),
        _explained(proc),
    ):
        c = httpx.Client(base_url=url, timeout=60, headers=auth)
        _wait(lambda: c.get("/readyz").status_code == 200, 90, proc)
        assert c.put("/v1/assets/pump-07", json={"model": PUMP, "area": "B"}).status_code == 201
        assert c.put("/v1/assets/comp-03", json={"model": COMP}).status_code == 201
        again = c.put("/v1/assets/comp-03", json={"model": COMP, "site": "east"})
        assert again.status_code == 200 and again.json()["site"] == "east"
        bad = c.put("/v1/assets/x-1", json={"model": "nope"})
        assert bad.status_code == 422 and bad.json()["error"]["code"] == "unknown_model"
        assert httpx.put(f"{url}/v1/assets/x-2", json={"model": PUMP}).status_code == 401

        # routed by asset id to the model it is registered with, and that model's version
        r = c.post(
            "/v1/predict",
            json={"asset_id": "comp-03", "readings": _reading_rows(comps, "comp-00", 5)},
        )
        assert r.status_code == 200, r.text
        assert r.json()["model"] == {"name": COMP, "version": comp_v}
        assert {p["asset_id"] for p in r.json()["predictions"]} == {"comp-03"}
        r = c.post(
            "/v1/predict",
            json={"asset_id": "pump-07", "readings": _reading_rows(pumps, "pump-00", 5)},
        )
        assert r.json()["model"] == {"name": PUMP, "version": pump_v}, r.text
        # by model name; and without either, the default model exactly as before
        r = c.post(
            "/v1/predict", json={"model": COMP, "readings": _reading_rows(comps, "comp-01", 3)}
        )
        assert r.json()["model"]["name"] == COMP
        r = c.post("/v1/predict", json={"readings": _reading_rows(pumps, "pump-01", 3)})
        assert r.json()["model"] == {"name": PUMP, "version": pump_v}
        # pump readings routed to the compressor model name its missing sensors
        r = c.post(
            "/v1/predict",
            json={"asset_id": "comp-03", "readings": _reading_rows(pumps, "pump-00", 2)},
        )
        assert r.status_code == 422 and r.json()["error"]["code"] == "missing_sensors"
        r = c.post("/v1/predict", json={"asset_id": "ghost", "readings": [{}]})
        assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_asset"
        r = c.post("/v1/predict", json={"model": "nope", "readings": [{}]})
        assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_model"
        r = c.post("/v1/predict", json={"model": PUMP, "asset_id": "comp-03", "readings": [{}]})
        assert r.status_code == 422 and r.json()["error"]["code"] == "model_mismatch"

        loaded = c.get("/v1/models").json()
        assert {(m["name"], m["version"], m["default"]) for m in loaded["models"]} == {
            (PUMP, pump_v, True),
            (COMP, comp_v, False),
        }
        assert loaded["max_models"] == 8 and loaded["routed_assets"] == 2
        asset = c.get("/v1/assets/comp-03").json()
        assert asset["registered"] and asset["model"] == COMP and "last_reading_at" in asset

        # a new compressor version is swapped in on its own alias; the pump stays
        res = _cli(
            "train",
            str(fleet_env["comps"]),
            "--model",
            COMP,
            "--holdout",
            "0.4",
            "--no-promote",
            *[f"--param={k}={v}" for k, v in FAST.items()],
        )
        assert res.exit_code == 0, res.output
        new_v = comp_v + 1
        res = _cli(
            "models", "promote", str(new_v), "--model", COMP, "--force", "--reason", "hot-swap test"
        )
        assert res.exit_code == 0, res.output

        def swapped() -> bool:
            body = {"asset_id": "comp-03", "readings": _reading_rows(comps, "comp-00", 1)}
            return bool(c.post("/v1/predict", json=body).json()["model"]["version"] == new_v)

        _wait(swapped, 30, proc)
        r = c.post(
            "/v1/predict",
            json={"asset_id": "pump-07", "readings": _reading_rows(pumps, "pump-00", 1)},
        )
        assert r.json()["model"] == {"name": PUMP, "version": pump_v}


@contextmanager
def _explained(proc: Any) -> Iterator[None]:
    """An HTTP error (a timeout) fails the test with the server's output attached."""
    try:
        yield
    except httpx.HTTPError as exc:
        raise AssertionError(f"{exc!r}; server output:\n{proc.output()[-4000:]}") from exc


def _wait(check: Any, timeout: float, proc: Any) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"timed out; server output:\n{proc.output()[-4000:]}")


# ---------------------------------------------------------------- training jobs


def _worker(home: Path, log: Path, env: dict[str, str]) -> Proc:
    return Proc(
        [SG, "jobs", "worker", "--poll", "0.2"], log, base_env(SENSORGUARD_HOME=str(home), **env)
    )


def test_training_jobs_succeed_fail_with_reason_and_survive_a_killed_worker(
    fleet_env: dict[str, Any], pg_store: str, tmp_path: Path
) -> None:
    from sensorguard.store import insert_readings

    model = "pump-jobs"
    insert_readings(_pumps(seed=4), url=pg_store)  # pump-00, pump-01 with labels
    env = {
        **_proc_env(fleet_env),
        "SENSORGUARD_STORE_URL": pg_store,
        "SENSORGUARD_API_TOKEN": TOKEN,
        "SENSORGUARD_JOB_STALE_SECONDS": "4",
    }
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with (
        predictor(fleet_env["home"], tmp_path / "serve.log", **env) as (proc, url),
        _explained(proc),
    ):
        c = httpx.Client(base_url=url, timeout=60, headers=auth)
        _wait(lambda: c.get("/healthz").status_code == 200, 60, proc)
        good = {"model": model, "asset_ids": ["pump-00", "pump-01"], "params": FAST, "holdout": 0.4}
        assert httpx.post(f"{url}/v1/training-jobs", json=good).status_code == 401
        bad = c.post("/v1/training-jobs", json={"model": model})
        assert bad.status_code == 422 and "asset_ids" in bad.json()["error"]["message"]
        bad = c.post("/v1/training-jobs", json={**good, "params": {"max_states": "six"}})
        assert bad.status_code == 422 and "max_states" in bad.json()["error"]["message"]

        first = c.post("/v1/training-jobs", json=good)
        assert first.status_code == 202, first.text
        job1 = first.json()["id"]
        assert first.headers["location"] == f"/v1/training-jobs/{job1}"
        job2 = c.post(
            "/v1/training-jobs", json={**good, "asset_ids": ["pump-00", "no-such-pump"]}
        ).json()["id"]
        with open(fleet_env["pumps"], "rb") as fh:
            up = c.post(
                "/v1/training-jobs",
                files={"file": ("pumps.csv", fh, "text/csv")},
                data={
                    "job": '{"model": "pump-upload", "params": {"max_states": 4}, "holdout": 0.4}'
                },
            )
        assert up.status_code == 202, up.text
        job3 = up.json()["id"]
        assert c.get(f"/v1/training-jobs/{job1}").json()["state"] == "queued"

        # a worker picks up job 1 and is killed in the middle of it...
        w1 = _worker(fleet_env["home"], tmp_path / "w1.log", env)
        try:
            _wait(lambda: c.get(f"/v1/training-jobs/{job1}").json()["state"] == "running", 60, w1)
            time.sleep(1.0)
            os.killpg(w1.p.pid, signal.SIGKILL)
            w1.p.wait(timeout=10)
        finally:
            w1.stop()
        assert c.get(f"/v1/training-jobs/{job1}").json()["state"] == "running"
        # ...a new worker finds it stale, queues it again, and runs every job in order
        w2 = _worker(fleet_env["home"], tmp_path / "w2.log", env)
        try:

            def finished() -> bool:
                states = [
                    c.get(f"/v1/training-jobs/{j}").json()["state"] for j in (job1, job2, job3)
                ]
                return all(s in ("succeeded", "failed") for s in states)

            _wait(finished, 300, w2)
        finally:
            w2.stop()
        one = c.get(f"/v1/training-jobs/{job1}").json()
        assert one["state"] == "succeeded", (one, w2.output()[-3000:])
        assert one["attempts"] == 2 and isinstance(one["version"], int) and one["run_id"]
        assert one["gate"]["reasons"] is not None
        two = c.get(f"/v1/training-jobs/{job2}").json()
        assert two["state"] == "failed" and "version" not in two
        assert "no-such-pump" in two["error"] and two["hint"], two
        three = c.get(f"/v1/training-jobs/{job3}").json()
        assert three["state"] == "succeeded" and three["version"] == 1, three
        assert three["gate"]["evaluated"] is True
        listed = c.get("/v1/training-jobs", params={"state": "failed"}).json()["jobs"]
        assert [j["id"] for j in listed] == [job2]
        assert c.get("/v1/training-jobs/nope").status_code == 404
    out = subprocess.run(
        [SG, "jobs", "list"],
        env=base_env(SENSORGUARD_HOME=str(fleet_env["home"]), COLUMNS="200", **env),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0 and job2 in out.stdout and "failed" in out.stdout
