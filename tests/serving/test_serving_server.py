"""A real ``sensorguard serve`` process on loopback, on a real registry.

* the embedded SQLite registry: predictions, bad input over the wire, and a hot swap
  while a client keeps sending requests (no request may fail);
* slow clients (half a request line, half a body) are cut off by the read deadlines
  while the service keeps answering, and an error answer keeps the keep-alive connection;
* a real ``mlflow server`` (SQLite backend, proxied artifacts) under load: its process
  group is killed (SIGKILL) and later frozen (SIGSTOP) under the predictor, which stays
  ready on its last model, answers every prediction, reports how long a reload waited,
  and recovers and follows the next promotion once the registry is back;
* the registry password never appears in the startup banner, the log or ``/readyz``.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.lifecycle import seed_store
from support.serving import (
    SENSORS,
    fit,
    free_port,
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
# trainer and predictor run in different homes: they share the key explicitly
SIGNING_KEY = "serving-test-signing-key-0123456789"


def _metric(base: str, prefix: str) -> float:
    total = 0.0
    for line in httpx.get(f"{base}/metrics", timeout=5).text.splitlines():
        if line.startswith(prefix):
            total += float(line.rsplit(" ", 1)[1])
    return total


class Hammer(threading.Thread):
    """A keep-alive client sending predictions back to back, recording every answer."""

    def __init__(self, url: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.headers = headers or {}
        self.stop = threading.Event()
        self.results: list[tuple[float, int, int | None]] = []
        self.errors: list[str] = []

    def run(self) -> None:
        body = {"readings": [reading(i) for i in range(5)]}
        with httpx.Client(timeout=10, headers=self.headers) as c:
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


def _http(sock: socket.socket, request: bytes) -> bytes:
    """Send one request on an open connection and read one whole response."""
    sock.sendall(request)
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, rest = data.partition(b"\r\n\r\n")
    length = int(
        next(
            line.split(b":")[1]
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length")
        )
    )
    while len(rest) < length:
        rest += sock.recv(65536)
    return head


def test_slow_clients_are_cut_off_and_errors_keep_the_connection(tmp_path: Path) -> None:
    home = tmp_path / "home"
    seed_store(home)
    uri = f"sqlite:///{home / 'mlflow.db'}"
    register(ServingSettings(home=home, tracking_uri=uri, registry_uri=uri), fit(seed=0))
    with predictor(
        home,
        tmp_path / "serve.log",
        SENSORGUARD_HEADER_TIMEOUT="1",
        SENSORGUARD_BODY_TIMEOUT="2",
    ) as (proc, url):
        wait_http(f"{url}/readyz", timeout=120)
        port = int(url.rsplit(":", 1)[1])
        # half a request line, headers without the end, a body cut short, nothing at all
        stalls = (
            [b"POST /v1/predict HTTP/1.1\r\nHost: x\r\n"] * 150
            + [
                b"POST /v1/readings HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n"
                b'content-length: 1000\r\n\r\n{"asset_id": ',
            ]
            * 20
            + [b""] * 30
        )
        socks = []
        for stall in stalls:
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            s.sendall(stall)
            socks.append(s)
        t0 = time.monotonic()
        assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200  # still answering
        closed = 0
        for s in socks:
            while s.recv(65536):  # a 408 (or nothing), then the close
                pass
            closed += 1
            s.close()
        took = time.monotonic() - t0
        print(f"\n{closed} stalled connections closed by the server within {took:.1f} s")
        assert closed == len(stalls) and took < 15

        # an error answer keeps the connection: the next request on it is answered too
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            bad = (
                b'{"asset_id": "p", "readings": '
                b'[{"timestamp": "0001-01-01T00:00:00+01:00", "a": 1}]}'
            )
            head = _http(
                s,
                b"POST /v1/readings HTTP/1.1\r\nHost: x\r\ncontent-type: "
                b"application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(bad), bad),
            )
            assert head.startswith(b"HTTP/1.1 422") and b"connection: close" not in head.lower()
            head = _http(s, b"POST /v1/predict HTTP/1.1\r\nHost: x\r\ncontent-length: 2\r\n\r\n[]")
            assert head.startswith(b"HTTP/1.1 422")
            head = _http(s, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200")
    assert "Traceback" not in proc.output()


def test_registry_password_is_never_shown(tmp_path: Path) -> None:
    secret = "S3cretPassw0rd"
    dead = f"http://mlflow:{secret}@127.0.0.1:{free_port()}"  # nothing listens there
    with predictor(
        tmp_path / "home",
        tmp_path / "serve.log",
        "--poll-interval",
        "0.5",
        MLFLOW_TRACKING_URI=dead,
        SENSORGUARD_REGISTRY_TIMEOUT="1",
    ) as (proc, url):
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and "failed (resolve)" not in proc.output():
            time.sleep(0.2)
        ready = httpx.get(f"{url}/readyz", timeout=5)
        assert ready.status_code == 503 and ready.json()["last_error"]
        out = proc.output()
    assert "failed (resolve)" in out and "mlflow:***@127.0.0.1" in out
    assert secret not in out and secret not in ready.text


def _wait_for(what: str, check: Any, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_registry_killed_and_frozen_under_load(tmp_path: Path) -> None:
    folder = tmp_path / "mlflow"
    token = "outage-token"
    auth = {"authorization": f"Bearer {token}"}
    with mlflow_server(folder) as (server, mlflow_url):
        port = int(mlflow_url.rsplit(":", 1)[1])
        settings = ServingSettings(
            home=tmp_path / "client-home",
            tracking_uri=mlflow_url,
            registry_uri=mlflow_url,
            signing_key=SIGNING_KEY,
        )
        v1 = register(settings, fit(seed=0))
        ctx = predictor(
            tmp_path / "serve-home",
            tmp_path / "serve.log",
            "--poll-interval",
            str(POLL),
            MLFLOW_TRACKING_URI=mlflow_url,
            SENSORGUARD_REGISTRY_TIMEOUT="2",
            SENSORGUARD_API_TOKEN=token,
            SENSORGUARD_SIGNING_KEY=SIGNING_KEY,
        )
        with ctx as (proc, url):
            wait_http(f"{url}/readyz", timeout=120)
            assert httpx.get(f"{url}/v1/model").json()["version"] == v1
            hammer = Hammer(url, auth)
            hammer.start()

            # 1. killed: the whole process group, as an OOM kill or a crash would
            os.killpg(server.p.pid, signal.SIGKILL)
            server.p.wait(timeout=10)
            resolve_failures = 'sensorguard_model_reload_failures_total{stage="resolve"}'
            _wait_for("failed checks", lambda: _metric(url, resolve_failures) >= 2, 30)
            ready = httpx.get(f"{url}/readyz")
            assert ready.status_code == 200
            assert ready.json()["failed_checks_in_a_row"] >= 2
            assert "resolve" in ready.json()["last_error"]

            with mlflow_server(folder, port=port) as (again, _):  # back on the same address
                _wait_for(
                    "recovery", lambda: httpx.get(f"{url}/readyz").json()["last_error"] is None
                )
                # and follows the next promotion again
                v2 = register(settings, fit(seed=2, shift=0.5))
                _wait_for("v2", lambda: httpx.get(f"{url}/v1/model").json()["version"] == v2)

                # 2. frozen: the server accepts connections and never answers
                os.killpg(again.p.pid, signal.SIGSTOP)
                try:
                    before = _metric(url, resolve_failures)
                    _wait_for("a timed-out check", lambda: _metric(url, resolve_failures) > before)
                    t0 = time.monotonic()
                    r = httpx.post(f"{url}/v1/admin/reload", headers=auth, timeout=60)
                    waited = time.monotonic() - t0
                    assert r.status_code == 502 and r.json()["stage"] == "resolve", r.text
                    assert r.json()["version"] == v2
                    # the reload names the time it blocked (a running poll plus its own check)
                    assert 1.0 <= r.json()["seconds"] <= waited
                    assert httpx.get(f"{url}/readyz").status_code == 200
                finally:
                    os.killpg(again.p.pid, signal.SIGCONT)
                _wait_for(
                    "recovery after the freeze",
                    lambda: httpx.get(f"{url}/readyz").json()["last_error"] is None,
                )
            hammer.stop.set()
            hammer.join(timeout=15)
            out = proc.output()
        statuses = {st for _, st, _ in hammer.results}
        print(
            f"\nregistry killed and frozen: {len(hammer.results)} predictions, "
            f"{len(hammer.errors)} failed, statuses {sorted(statuses)}; reload blocked "
            f"{waited:.1f} s and reported {r.json()['seconds']:.1f} s"
        )
        assert hammer.errors == [] and statuses == {200}
        assert {v for _, _, v in hammer.results} == {v1, v2}
        assert "failed (resolve)" in out and "still serving version 1" in out
        assert "reachable again" in out and "Traceback" not in out
