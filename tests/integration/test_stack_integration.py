"""The whole stack on real servers: PostgreSQL, a PostgreSQL-backed ``mlflow server``
serving artifacts, and the predictor, started as local processes by ``stack up``.

Train, register, gate and promote through the server → the model files are in the
served artifact store (and nowhere on the client) → the predictor loads the model from
the server and hot-swaps on a new promotion → readings arrive over HTTP and in bulk →
training reads a window from the store → scores and alarms are written back. Then the
troubleshooting guide's commands run against the stack, and ``stack down`` stops it.

Own databases (``sgtest_*``, dropped at the end), random free ports.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.pg import PG_URL, db_url, drop_database, pg_available
from support.services import require_service

pytestmark = [pytest.mark.integration, pytest.mark.postgres, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
MODEL = "sg-stack-test"
FAST = {"max_states": 4, "silhouette_sample": 2000}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Stack:
    cfg: Any
    mlflow_url: str
    predictor_url: str
    backend_url: str
    readings_url: str
    client_home: Path
    settings: Any


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    require_service(pg_available(), "PostgreSQL is not reachable at 127.0.0.1:5432")
    from sensorguard.config import get_settings
    from sensorguard.deploy.local_stack import StackConfig, down, up

    tag = uuid.uuid4().hex[:8]
    home = tmp_path_factory.mktemp("stack-home")
    client_home = tmp_path_factory.mktemp("client-home") / "sg"
    cfg = StackConfig(
        pg_url=PG_URL,
        home=home,
        mlflow_port=_free_port(),
        predictor_port=_free_port(),
        mlflow_db=f"sgtest_mlflow_{tag}",
        readings_db=f"sgtest_readings_{tag}",
        start_timeout=180,
        extra_env={"SENSORGUARD_POLL_INTERVAL": "1", "SENSORGUARD_MODEL_NAME": MODEL},
    )
    mlflow_url = f"http://127.0.0.1:{cfg.mlflow_port}"
    env = {
        "MLFLOW_TRACKING_URI": mlflow_url,
        "SENSORGUARD_HOME": str(client_home),
        "SENSORGUARD_STORE_URL": db_url(cfg.readings_db),
        "SENSORGUARD_MODEL_NAME": MODEL,
        # trainer (this process) and predictor have different homes: they share the key
        # that signs and verifies model artifacts, as in any shared deployment
        "SENSORGUARD_SIGNING_KEY": f"stack-test-signing-key-{tag}",
        # thresholds sized for short evaluation windows (as in the lifecycle tests)
        "SENSORGUARD_GATE_MIN_F1": "0.5",
        "SENSORGUARD_GATE_MIN_EVENT_RECALL": "0.9",
        "SENSORGUARD_GATE_MAX_FALSE_ALARMS_PER_DAY": "2",
    }
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        mp.delenv("MLFLOW_REGISTRY_URI", raising=False)
        mp.delenv("SENSORGUARD_TRACKING_URI", raising=False)
        get_settings.cache_clear()
        try:
            up(cfg)
            yield Stack(
                cfg=cfg,
                mlflow_url=mlflow_url,
                predictor_url=f"http://127.0.0.1:{cfg.predictor_port}",
                backend_url=db_url(cfg.mlflow_db),
                readings_url=db_url(cfg.readings_db),
                client_home=client_home,
                settings=get_settings(),
            )
        finally:
            down(home, timeout=10)
            drop_database(cfg.mlflow_db)
            drop_database(cfg.readings_db)
            get_settings.cache_clear()


def _readings(days: float, seed: int) -> Any:
    from sensorguard.data import Readings
    from sensorguard.data.simulator import simulate_pump

    return Readings.from_frame(simulate_pump(days=days, seed=seed, freq="2min"))


def _train(stack: Stack, readings: Any, **params: Any) -> Any:
    from sensorguard.pipelines.training import train_and_register

    return train_and_register(
        readings, params={**FAST, **params}, settings=stack.settings, trigger="test", holdout=0.4
    )


def _wait_for(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def _num(value: Any) -> float | None:
    """JSON has no NaN: a sensor dropout is sent as null."""
    return None if value != value else float(value)


def _served_version(stack: Stack) -> int | None:
    r = httpx.get(stack.predictor_url + "/v1/model", timeout=5)
    return int(r.json()["version"]) if r.status_code == 200 else None


def test_end_to_end_on_real_servers(stack: Stack) -> None:
    from sensorguard.pipelines import lifecycle
    from sensorguard.pipelines.store_scoring import score_window_and_store
    from sensorguard.store import read_alarms, read_predictions, read_window

    assert httpx.get(stack.mlflow_url + "/version").text.strip() == _mlflow_version()

    # 1. train, register, gate, promote — through the server
    data = _readings(days=5, seed=1)
    r1 = _train(stack, data)
    assert r1.version == 1
    out1 = lifecycle.gate_and_promote(1, r1.eval_readings, settings=stack.settings, trigger="test")
    assert out1.action == "promote", out1.decision.summary()

    # 2. the model's files are in the served artifact destination, none on the client
    artifacts = stack.cfg.artifacts_dir
    assert list(artifacts.rglob("MLmodel")), f"no MLmodel under {artifacts}"
    assert list(artifacts.rglob("detector.json")), "detector files not in the artifact store"
    assert not (stack.client_home / "artifacts").exists()
    assert not (stack.client_home / "mlflow.db").exists()

    # 3. the predictor loads production from the server
    _wait_for(lambda: _served_version(stack) == 1, 60, "the predictor to serve v1")
    rows = [{k: _num(v) for k, v in row.items()} for row in data.X.head(20).to_dict("records")]
    pred = httpx.post(stack.predictor_url + "/v1/predict", json={"readings": rows}, timeout=10)
    assert pred.status_code == 200, pred.text
    assert pred.json()["model"]["version"] == 1 and len(pred.json()["predictions"]) == 20

    # 4. a new promotion is hot-swapped in (poll interval 1 s)
    r2 = _train(stack, data, random_state=1)
    out2 = lifecycle.gate_and_promote(
        int(r2.version), r2.eval_readings, settings=stack.settings, trigger="test"
    )
    assert out2.action == "promote", out2.decision.summary()
    _wait_for(lambda: _served_version(stack) == r2.version, 60, "the hot swap to v2")

    # 5. readings over HTTP (idempotent) ...
    live = _readings(days=4, seed=7)
    frame = live.frame
    first = frame.head(120)
    body = {
        "asset_id": "pump-01",
        "readings": [
            {
                "timestamp": t.isoformat(),
                **{s: _num(v) for s, v in zip(live.sensors, vals, strict=True)},
                "machine_status": status,
            }
            for t, vals, status in zip(
                first[live.time_column],
                first[live.sensors].to_numpy(),
                first[live.label_column],
                strict=True,
            )
        ],
    }
    res = httpx.post(stack.predictor_url + "/v1/readings", json=body, timeout=30)
    assert res.status_code == 200, res.text
    assert res.json()["inserted"] == 120
    res = httpx.post(stack.predictor_url + "/v1/readings", json=body, timeout=30)
    assert res.json() == {
        "asset_ids": ["pump-01"],
        "received": 120,
        "inserted": 0,
        "merged": 0,
        "duplicates": 120,
    }
    bad = httpx.post(
        stack.predictor_url + "/v1/readings",
        json={"asset_id": "pump-01", "readings": [{"timestamp": "x", "flow_rate": 1}]},
    )
    assert bad.status_code == 422 and bad.json()["error"]["path"] == "readings[0].timestamp"

    # ... and in bulk with the real CLI (binary COPY), the overlap counted as duplicates
    csv = stack.client_home.parent / "live.csv"
    frame.to_csv(csv, index=False)
    cli = subprocess.run(
        [
            sys.executable,
            "-c",
            "from sensorguard.cli import main; main()",
            "ingest",
            str(csv),
            "--url",
            stack.readings_url,
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ.copy(),
    )
    assert cli.returncode == 0, cli.stderr
    bulk = json.loads(cli.stdout.strip().splitlines()[-1])
    assert (bulk["inserted"], bulk["duplicates"]) == (len(frame) - 120, 120)

    # 6. training reads a window from the store
    window = read_window("pump-01", None, frame[live.time_column].iloc[-1], stack.readings_url)
    assert len(window) == len(frame) - 1 and window.y is not None
    r3 = _train(stack, window)
    assert r3.version == 3 and r3.train_rows > 0

    # 7. scores and alarm events are written back (production is still v2)
    scored = score_window_and_store("pump-01", url=stack.readings_url)
    assert scored.model_name == MODEL and scored.model_version == str(r2.version)
    assert scored.readings == len(frame) and scored.alarms > 0
    preds = read_predictions("pump-01", stack.readings_url)
    assert len(preds) == len(frame) and set(preds["model_version"]) == {str(r2.version)}
    alarms = read_alarms("pump-01", stack.readings_url)
    assert len(alarms) == scored.alarms
    assert (alarms["end_time"] >= alarms["start_time"]).all()
    assert alarms["top_sensors"].str.len().gt(0).all()


def _mlflow_version() -> str:
    import mlflow

    return str(mlflow.__version__)


def test_troubleshooting_commands_work(stack: Stack) -> None:
    """Every command of the deployment guide's troubleshooting section, for real."""
    require_service(shutil.which("curl") is not None, "curl is not installed")
    require_service(shutil.which("jq") is not None, "jq is not installed")
    require_service(shutil.which("pg_isready") is not None, "pg_isready is not installed")
    from sqlalchemy.engine import make_url

    from sensorguard.pipelines import lifecycle

    if _served_version(stack) is None:  # run alone: promote a model first
        r = _train(stack, _readings(days=5, seed=1))
        lifecycle.promote(int(r.version), settings=stack.settings, trigger="test", force=True)
        _wait_for(lambda: _served_version(stack) == r.version, 60, "the predictor to load")
    pg = make_url(PG_URL)
    bin_dir = str(Path(sys.executable).parent)
    env = {
        **os.environ,
        "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
        "MLFLOW_URL": stack.mlflow_url,
        "MLFLOW_BACKEND_STORE_URI": stack.backend_url,
        "PGHOST": pg.host or "127.0.0.1",
        "PGPORT": str(pg.port or 5432),
        "SENSORGUARD_MODEL_NAME": MODEL,
        "PREDICTOR_URL": stack.predictor_url,
        "SENSORGUARD_STORE_URL": stack.readings_url,
        "ARTIFACTS_DIR": str(stack.cfg.artifacts_dir),
    }
    res = subprocess.run(
        ["bash", str(ROOT / "scripts" / "check_troubleshooting.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "all troubleshooting checks passed" in res.stdout


def _n_versions(stack: Stack) -> int:
    r = httpx.get(
        stack.mlflow_url + "/api/2.0/mlflow/model-versions/search",
        params={"filter": f"name='{MODEL}'"},
        timeout=10,
    )
    r.raise_for_status()
    return len(r.json().get("model_versions", []))


def test_compose_trainer_job_runs_against_the_stack(stack: Stack, tmp_path: Path) -> None:
    """The trainer service's command, taken from docker-compose.yml, run natively."""
    import yaml

    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    script = compose["services"]["trainer"]["command"][-1].replace("$$", "$")
    env = {
        **os.environ,
        "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""),
        "MLFLOW_TRACKING_URI": stack.mlflow_url,
        "SENSORGUARD_STORE_URL": stack.readings_url,
        "SENSORGUARD_HOME": str(tmp_path / "trainer-home"),
        "TRAIN_DATA": str(tmp_path / "pump.csv"),
        "TRAIN_ASSET": "pump-07",
        "TRAIN_DAYS": "2",
    }
    before = _n_versions(stack)
    res = subprocess.run(
        ["sh", "-c", script.replace("/tmp/window.csv", str(tmp_path / "window.csv"))],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    from sensorguard.store import list_assets

    assets = list_assets(stack.readings_url).set_index("asset_id")
    assert assets.loc["pump-07", "readings"] == 2 * 24 * 60
    assert _n_versions(stack) == before + 1  # trained and registered through the server


def test_stack_status_and_down(stack: Stack) -> None:
    from sensorguard.deploy.local_stack import down, status

    infos = {i.name: i for i in status(stack.cfg.home)}
    assert infos["mlflow"].healthy and infos["predictor"].healthy
    pids = [i.pid for i in infos.values()]
    result = down(stack.cfg.home, timeout=10)
    assert set(result) == {"mlflow", "predictor"}
    assert all(r.startswith(("stopped", "killed")) for r in result.values()), result
    for pid in pids:
        assert pid is not None
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text()
    with pytest.raises(httpx.HTTPError):
        httpx.get(stack.mlflow_url + "/health", timeout=2)
    assert down(stack.cfg.home) == {"predictor": "not running", "mlflow": "not running"}
