"""``sensorguard replay``: a readings file published per asset to the real Mosquitto
(QoS 1, exits when every message is acknowledged), paced by a speed factor, or posted
to a real ``/v1/readings`` server. Skips with the reason when the broker is absent (a
failure with SENSORGUARD_REQUIRE_SERVICES=1)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from support.mqtt import mqtt_broker, unique_root  # noqa: F401  (fixture)
from typer.testing import CliRunner

from sensorguard.cli import app
from sensorguard.data.simulator import simulate_pump
from sensorguard.live.mqtt import MqttSettings, connect, disconnect, make_client
from sensorguard.live.replay import replay_file
from sensorguard.store import dispose_engines, read_window_frame


class Subscriber:
    """Collects every readings message under ``root`` (arrival time, topic, payload)."""

    def __init__(self, url: str, root: str) -> None:
        self.messages: list[tuple[float, str, dict[str, Any]]] = []
        settings = MqttSettings.from_url(url)
        self.client = make_client(f"{root}-sub", settings)
        done = threading.Event()
        self.client.on_subscribe = lambda *a: done.set()
        self.client.on_message = lambda c, u, m: self.messages.append(
            (time.monotonic(), m.topic, json.loads(m.payload))
        )
        connect(self.client, settings, persistent=False)
        self.client.subscribe(f"{root}/+/readings", qos=1)
        assert done.wait(10)

    def readings(self) -> int:
        return sum(len(p["readings"]) for _, _, p in self.messages)

    def wait_for(self, n: int, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while self.readings() < n and time.monotonic() < deadline:
            time.sleep(0.02)

    def close(self) -> None:
        disconnect(self.client)


@pytest.fixture
def pump_csv(tmp_path: Path) -> Path:
    path = tmp_path / "pump.csv"
    simulate_pump(days=0.5, seed=4).to_csv(path, index=False)
    return path


@pytest.fixture
def sub(mqtt_broker: str) -> Iterator[tuple[Subscriber, str]]:  # noqa: F811
    root = unique_root()
    s = Subscriber(mqtt_broker, root)
    yield s, root
    s.close()


def test_replay_publishes_every_reading_per_asset_and_waits_for_acks(
    mqtt_broker: str,  # noqa: F811
    sub: tuple[Subscriber, str],
    tmp_path: Path,
) -> None:
    s, root = sub
    frame = pd.concat(
        [
            simulate_pump(days=0.2, seed=1, asset_id="p-a"),
            simulate_pump(days=0.1, seed=2, asset_id="p-b"),
        ]
    )
    path = tmp_path / "two.csv"
    frame.to_csv(path, index=False)
    result = replay_file(path, mqtt_url=mqtt_broker, topic_root=root, batch=100)
    assert result.readings == len(frame) and result.assets == ["p-a", "p-b"]
    assert result.messages == sum(-(-n // 100) for n in frame["asset_id"].value_counts())
    s.wait_for(len(frame))
    assert s.readings() == len(frame)
    by_topic = {t: [] for t in (f"{root}/p-a/readings", f"{root}/p-b/readings")}
    for _, topic, payload in s.messages:
        assert payload["asset_id"] == topic.split("/")[1]
        by_topic[topic].extend(payload["readings"])
    sent = by_topic[f"{root}/p-a/readings"]
    src = frame[frame["asset_id"] == "p-a"].reset_index(drop=True)
    assert [r["timestamp"] for r in sent] == [
        t.strftime("%Y-%m-%dT%H:%M:%S.000000Z") for t in pd.to_datetime(src["timestamp"])
    ]
    assert [r["flow_rate"] for r in sent] == pytest.approx(src["flow_rate"].tolist(), nan_ok=True)
    assert {r["machine_status"] for r in sent} <= {"NORMAL", "BROKEN", "RECOVERING"}


def test_speed_factor_paces_the_stream(
    mqtt_broker: str,  # noqa: F811
    sub: tuple[Subscriber, str],
    tmp_path: Path,
) -> None:
    s, root = sub
    times = pd.date_range("2026-01-01", periods=6, freq="10s")
    path = tmp_path / "slow.csv"
    pd.DataFrame({"timestamp": times, "a": np.arange(6.0)}).to_csv(path, index=False)
    # 50 s of readings at speed 100 = 0.5 s; one message per reading as each falls due
    result = replay_file(path, "slow", mqtt_url=mqtt_broker, topic_root=root, speed=100)
    assert result.messages == 6 and result.seconds >= 0.45
    s.wait_for(6)
    arrivals = [t for t, _, _ in s.messages]
    assert arrivals[-1] - arrivals[0] >= 0.4  # spread out, not sent at once
    assert [p["readings"][0]["a"] for _, _, p in s.messages] == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]


def test_replay_command(
    mqtt_broker: str,  # noqa: F811
    sub: tuple[Subscriber, str],
    pump_csv: Path,
    monkeypatch: pytest.MonkeyPatch,
    sg_home: Path,
) -> None:
    from sensorguard.config import get_settings

    s, root = sub
    monkeypatch.setenv("SENSORGUARD_MQTT_TOPIC_ROOT", root)
    get_settings.cache_clear()
    res = CliRunner().invoke(
        app, ["replay", str(pump_csv), "--asset", "pump-x", "--mqtt-url", mqtt_broker]
    )
    assert res.exit_code == 0, res.output
    n = len(pd.read_csv(pump_csv))
    assert f"{n:,} readings of 1 asset(s)" in res.output and "acknowledged by" in res.output
    s.wait_for(n)
    assert s.readings() == n and {t for _, t, _ in s.messages} == {f"{root}/pump-x/readings"}


def test_replay_command_bad_input_is_one_line(pump_csv: Path, sg_home: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(app, ["replay", str(pump_csv), "--asset", "a/b"])
    assert res.exit_code == 2 and "cannot be an MQTT topic level" in res.output
    res = runner.invoke(app, ["replay", str(pump_csv), "--asset", "a", "--speed", "0"])
    assert res.exit_code == 2 and "speed must be positive" in res.output
    res = runner.invoke(app, ["replay", "missing.csv", "--asset", "a"])
    assert res.exit_code == 2 and "Traceback" not in res.output
    res = runner.invoke(
        app, ["replay", str(pump_csv), "--asset", "a", "--mqtt-url", "mqtt://127.0.0.1:1"]
    )
    assert res.exit_code == 2 and "cannot reach the MQTT broker" in res.output


def test_replay_over_http_to_a_real_server(pump_csv: Path, sg_home: Path) -> None:
    import socket

    import uvicorn
    from fastapi import FastAPI

    from sensorguard.serving.errors import install_handlers
    from sensorguard.serving.routes import readings
    from sensorguard.serving.settings import ServingSettings

    url = f"sqlite:///{sg_home / 'readings.db'}"
    api = FastAPI()
    api.state.settings = ServingSettings(store_url=url)
    install_handlers(api, lambda: None)
    api.include_router(readings.router)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(api, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        first = replay_file(pump_csv, "pump-h", http_url=f"http://127.0.0.1:{port}", batch=200)
        again = replay_file(pump_csv, "pump-h", http_url=f"http://127.0.0.1:{port}", batch=200)
    finally:
        server.should_exit = True
        thread.join(10)
    n = len(pd.read_csv(pump_csv))
    assert (first.inserted, first.duplicates) == (n, 0)
    assert (again.inserted, again.duplicates) == (0, n)  # idempotent
    stored = read_window_frame("pump-h", url=url)
    src = pd.read_csv(pump_csv)
    assert len(stored) == n
    assert stored["flow_rate"].to_numpy() == pytest.approx(src["flow_rate"].to_numpy(), nan_ok=True)
    dispose_engines()
