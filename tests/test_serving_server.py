"""A real ``sensorguard serve`` process on loopback, on a real registry.

* the embedded SQLite registry: predictions, bad input over the wire, and a hot swap
  while a client keeps sending requests (no request may fail);
* a real ``mlflow server`` (SQLite backend, proxied artifacts): it is killed under the
  predictor, which stays ready on its last model and counts failed checks, then
  restarted, after which the predictor recovers and follows the next promotion.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from _lifecycle_support import seed_store
from _serving_support import (
    SENSORS,
    fit,
    mlflow_server,
    predictor,
    reading,
    register,
    wait_http,
)

from sensorguard.serving import schemas
from sensorguard.serving.settings import ServingSettings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

POLL = 0.5


def _metric(base: str, prefix: str) -> float:
    total = 0.0
    for line in httpx.get(f"{base}/metrics", timeout=5).text.splitlines():
        if line.startswith(prefix):
            total += float(line.rsplit(" ", 1)[1])
    return total


class Hammer(threading.Thread):
    """A keep-alive client sending predictions back to back, recording every answer."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.stop = threading.Event()
        self.results: list[tuple[float, int, int | None]] = []
        self.errors: list[str] = []

    def run(self) -> None:
        body = {"readings": [reading(i) for i in range(5)]}
        with httpx.Client(timeout=10) as c:
            while not self.stop.is_set():
                try:
                    r = c.post(f"{self.url}/v1/predict", json=body)
                    version = r.json()["model"]["version"] if r.status_code == 200 else None
                    self.results.append((time.monotonic(), r.status_code, version))
                except Exception as exc:  # a dropped request is exactly what we test for
                    self.errors.append(repr(exc))


def test_serve_process_predicts_rejects_and_hot_swaps(tmp_path: Path) -> None:
    home = tmp_path / "home"
    seed_store(home)
    uri = f"sqlite:///{home / 'mlflow.db'}"
    # explicit registry too: mlflow.set_registry_uri exports MLFLOW_REGISTRY_URI, which
    # earlier tests in this process may have pointed elsewhere
    settings = ServingSettings(home=home, tracking_uri=uri, registry_uri=uri)
    v1 = register(settings, fit(seed=0))
    with predictor(
        home,
        tmp_path / "serve.log",
        "--poll-interval",
        str(POLL),
        SENSORGUARD_MAX_BATCH="100",
    ) as (proc, url):
        wait_http(f"{url}/readyz", timeout=120)
        r = httpx.post(f"{url}/v1/predict", json={"readings": [reading(0), reading(1)]})
        assert r.status_code == 200, r.text
        body = schemas.PredictResponse.model_validate(r.json())
        assert body.model.version == v1 and body.predictions and len(body.predictions) == 2
        assert httpx.get(f"{url}/v1/model").json()["sensors"] == SENSORS

        # bad input over the wire: clear JSON errors, never a 500
        missing = reading(0)
        del missing["s1"]
        bad: list[tuple[dict[str, Any], int, str]] = [
            ({"json": {"readings": [missing]}}, 422, "missing_sensors"),
            ({"json": {"readings": [reading(0), reading(1, s5="high")]}}, 422, "non_numeric"),
            ({"json": {"readings": []}}, 422, "empty_batch"),
            ({"json": {"readings": [reading(i) for i in range(101)]}}, 413, "batch_too_large"),
            ({"content": b'{"readings": [', "headers": _JSON}, 400, "malformed_json"),
            ({"content": b"[NaN]", "headers": _JSON}, 400, "malformed_json"),
            ({"content": b"s0=1", "headers": {"content-type": "text/plain"}}, 415, ""),
            ({"json": ["not", "an", "object"]}, 422, "bad_body"),
        ]
        for kwargs, status, code in bad:
            r = httpx.post(f"{url}/v1/predict", **kwargs)
            assert r.status_code == status, (kwargs, r.text)
            assert r.json()["error"]["code"] == (code or "unsupported_media_type")
        path = httpx.post(
            f"{url}/v1/predict", json={"readings": [reading(0), reading(1, s5="high")]}
        ).json()["error"]["path"]
        assert path == "readings[1].s5"

        # hot swap while a client keeps sending requests
        hammer = Hammer(url)
        hammer.start()
        time.sleep(1.0)
        v2 = register(settings, fit(seed=1, shift=0.5))  # sets the alias when done
        promoted = time.monotonic()
        deadline = promoted + 60
        while time.monotonic() < deadline and not any(v == v2 for _, _, v in hammer.results):
            time.sleep(0.05)
        time.sleep(1.0)
        hammer.stop.set()
        hammer.join(timeout=15)

        assert hammer.errors == []
        statuses = {s for _, s, _ in hammer.results}
        assert statuses == {200}, statuses
        versions = [v for _, _, v in hammer.results]
        first_v2 = versions.index(v2)
        assert set(versions[:first_v2]) == {v1} and set(versions[first_v2:]) == {v2}
        delay = hammer.results[first_v2][0] - promoted
        load_s = _metric(url, "sensorguard_model_load_duration_seconds_sum") / _metric(
            url, "sensorguard_model_load_duration_seconds_count"
        )
        print(
            f"\nhot swap: {len(versions)} requests, 0 failed, v{v1}->v{v2} seen "
            f"{delay:.2f} s after promotion (poll {POLL} s, mean load {load_s:.2f} s)"
        )
        assert delay <= POLL + load_s + 5.0  # slack for a busy shared machine
        assert _metric(url, "sensorguard_model_reloads_total") == 2
        assert (
            'sensorguard_model_info{alias="production",model="sensor-failure-detector",'
            'run_id="' in httpx.get(f"{url}/metrics").text
        )
    assert "serving sensor-failure-detector version 2" in proc.output()


_JSON = {"content-type": "application/json"}


def test_registry_outage_keeps_serving_and_recovers(tmp_path: Path) -> None:
    folder = tmp_path / "mlflow"
    with mlflow_server(folder) as (server, mlflow_url):
        port = int(mlflow_url.rsplit(":", 1)[1])
        settings = ServingSettings(
            home=tmp_path / "client-home", tracking_uri=mlflow_url, registry_uri=mlflow_url
        )
        v1 = register(settings, fit(seed=0))
        ctx = predictor(
            tmp_path / "serve-home",
            tmp_path / "serve.log",
            "--poll-interval",
            str(POLL),
            MLFLOW_TRACKING_URI=mlflow_url,
            SENSORGUARD_REGISTRY_TIMEOUT="2",
        )
        with ctx as (proc, url):
            wait_http(f"{url}/readyz", timeout=120)
            assert httpx.get(f"{url}/v1/model").json()["version"] == v1
            server.stop()  # the registry goes away under the predictor

            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                if _metric(url, 'sensorguard_model_reload_failures_total{stage="resolve"}') >= 2:
                    break
                time.sleep(0.2)
            ready = httpx.get(f"{url}/readyz")
            assert ready.status_code == 200
            assert ready.json()["failed_checks_in_a_row"] >= 2
            assert "resolve" in ready.json()["last_error"]
            r = httpx.post(f"{url}/v1/predict", json={"readings": [reading(0)]})
            assert r.status_code == 200 and r.json()["model"]["version"] == v1

            with mlflow_server(folder, port=port):  # it comes back on the same address
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    if httpx.get(f"{url}/readyz").json()["last_error"] is None:
                        break
                    time.sleep(0.2)
                assert httpx.get(f"{url}/readyz").json()["failed_checks_in_a_row"] == 0
                # and follows the next promotion again
                v2 = register(settings, fit(seed=2, shift=0.5))
                deadline = time.monotonic() + 60
                version = None
                while time.monotonic() < deadline and version != v2:
                    version = httpx.get(f"{url}/v1/model").json()["version"]
                    time.sleep(0.2)
                assert version == v2
            out = proc.output()
            assert "failed (resolve)" in out and "still serving version 1" in out
            assert "reachable again" in out
