"""Streaming ingestion: MQTT readings into the store, against the real Mosquitto and
PostgreSQL (skipped with the reason when absent; a failure with
SENSORGUARD_REQUIRE_SERVICES=1). The parsing and dead-letter rules also run on SQLite."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest
import sqlalchemy as sa
from support.mqtt import mqtt_broker, unique_root  # noqa: F401  (fixture)
from support.pg import pg_available, temp_database
from support.services import require_service

from sensorguard.live.ingest import Message, MqttIngester, ingest_payload, parse_message
from sensorguard.live.metrics import LiveMetrics
from sensorguard.live.mqtt import AckTracker, MqttSettings, connect, disconnect, make_client
from sensorguard.store import dispose_engines, ensure_schema, read_window_frame
from sensorguard.store.payload import PayloadError

pytestmark = pytest.mark.postgres


def _records(start: int, n: int, sensors: int = 3) -> list[dict]:
    return [
        {
            "timestamp": f"2026-01-01T{(i // 3600):02d}:{(i // 60) % 60:02d}:{i % 60:02d}Z",
            **{f"s{k}": float(i * 10 + k) for k in range(sensors)},
        }
        for i in range(start, start + n)
    ]


def _batch(start: int, n: int, asset: str | None = None) -> bytes:
    doc: dict = {"readings": _records(start, n)}
    if asset is not None:
        doc["asset_id"] = asset
    return orjson.dumps(doc)


@pytest.fixture
def pg_url(sg_home: Path) -> Iterator[str]:
    require_service(pg_available(), "PostgreSQL is not reachable at 127.0.0.1:5432")
    with temp_database("live") as (_, url):
        yield url


@pytest.fixture
def publisher(mqtt_broker: str) -> Iterator[Callable[[str, bytes], None]]:  # noqa: F811
    settings = MqttSettings.from_url(mqtt_broker)
    client = make_client(unique_root("pub"), settings)
    acks = AckTracker()
    acks.install(client)
    connect(client, settings, persistent=False)

    def publish(topic: str, payload: bytes) -> None:
        acks.publish(client, topic, payload)
        assert acks.wait(10), "the broker did not acknowledge"

    yield publish
    disconnect(client)


def _wait_for(pred: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def _count(url: str, table: str = "readings") -> int:
    with ensure_schema(url).connect() as conn:
        return int(conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())


# ---- parsing rules (no services)


def test_topic_names_the_asset_and_a_single_reading_is_accepted() -> None:
    groups = parse_message(Message("r/pump-7/readings", orjson.dumps(_records(0, 1)[0])))
    assert [(g.asset, g.sensors, len(g)) for g in groups] == [("pump-7", ("s0", "s1", "s2"), 1)]
    groups = parse_message(Message("r/pump-7/readings", _batch(0, 4)))
    assert len(groups[0]) == 4 and groups[0].asset == "pump-7"


def test_a_reading_of_another_asset_on_an_assets_topic_is_refused() -> None:
    with pytest.raises(PayloadError) as err:
        parse_message(Message("r/pump-7/readings", _batch(0, 2, asset="pump-8")))
    assert err.value.code == "asset_mismatch" and err.value.path == "asset_id"


def test_dead_letters_keep_raw_payload_and_reason_on_sqlite(sg_home: Path) -> None:
    url = f"sqlite:///{sg_home / 'readings.db'}"
    engine = ensure_schema(url)
    out = ingest_payload(engine, b'{"readings": [{"timestamp": "x", "a": 1}]}', "r/p1/readings")
    assert (out.dead_letters, out.dead_letter_codes) == (1, {"bad_timestamp": 1})
    out = ingest_payload(engine, _batch(0, 3), "r/p1/readings")
    assert (out.inserted, out.dead_letters) == (3, 0)
    with engine.connect() as conn:
        row = conn.execute(sa.text("SELECT * FROM dead_letters")).mappings().one()
    assert row["code"] == "bad_timestamp" and row["asset_id"] == "p1"
    assert bytes(row["payload"]) == b'{"readings": [{"timestamp": "x", "a": 1}]}'
    assert "readings[0].timestamp" in row["reason"] and row["path"] == "readings[0].timestamp"
    dispose_engines()


def test_payload_fast_path_agrees_with_the_reading_by_reading_rules(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The parser's fast path (shared key layouts) gives the same groups, or the same
    error code, path and message, as the general rules on random payloads."""
    import random

    import sensorguard.store.payload as payload

    rng = random.Random(2)

    def random_payload() -> bytes:
        recs = []
        for i in range(rng.randint(1, 30)):
            rec: dict = {
                "timestamp": rng.choice(
                    [
                        f"2026-01-01T00:00:{i:02d}Z",
                        f"2026-01-01T01:00:{i:02d}+01:00",
                        f"2026-01-01 00:00:{i:02d}",
                        1767225600 + i,
                        f"2026-01-01T00:00:{i:02d}.5+00:00",
                    ]
                )
            }
            bad = rng.random() < 0.02
            for k in rng.sample(["a", "b", "c", "machine_status", "asset_id", "status"], 3):
                if k == "asset_id":
                    rec[k] = rng.choice(["p1", "p2", "p:3"] + (["", "p\x00"] if bad else []))
                elif k in ("machine_status", "status"):
                    extra = [3, "x\x00", "s" * 101] if bad else []
                    rec[k] = rng.choice(["NORMAL", None, "BR:OKEN", *extra])
                else:
                    rec[k] = rng.choice([1.0, 2, None, 1e300, -0.0] + ([True, "x"] if bad else []))
            if rng.random() < 0.2:
                rec = {k: rec[k] for k in rng.sample(list(rec), len(rec))}
            recs.append(rec)
        doc: dict = {"readings": recs}
        if rng.random() < 0.7:
            doc["asset_id"] = "batch"
        return orjson.dumps(doc)

    def parse(body: bytes) -> tuple:
        try:
            groups = payload.parse_readings_payload(body, 1000)
        except PayloadError as err:
            return ("error", err.code, err.path, err.message)
        return ("ok", [(g.asset, g.sensors, g.times, g.rows, g.status) for g in groups])

    fast_layout = payload._layout
    outcomes = set()
    for _ in range(2000):
        body = random_payload()
        monkeypatch.setattr(payload, "_layout", fast_layout)
        fast = parse(body)
        monkeypatch.setattr(payload, "_layout", lambda keys: None)  # general rules only
        assert parse(body) == fast, body
        outcomes.add(fast[0] if fast[0] == "ok" else fast[1])
    assert {"ok", "not_a_number", "missing_asset", "bad_text", "too_long"} <= outcomes


def test_one_copy_for_many_frames_falls_back_to_the_merge_rules(pg_url: str) -> None:
    """insert_frames on PostgreSQL: all-new frames go in one COPY; a frame that touches
    a stored (asset, time) makes the whole call take the per-frame merge path, with the
    same result as frame-by-frame inserts."""
    import numpy as np

    from sensorguard.store.ingest import insert_frames

    engine = ensure_schema(pg_url)

    def frame(asset: str, start: int, n: int, sensors: list[str], offset: float = 0.0) -> tuple:
        times = [f"2026-01-01T00:00:{i:02d}" for i in range(start, start + n)]
        values = (
            np.arange(start, start + n, dtype=float)[:, None] + offset + np.arange(len(sensors))
        )
        return (asset, times, values, sensors, None)

    with engine.begin() as conn:
        res = insert_frames(conn, [frame(f"a{k}", 0, 10, ["x", "y"]) for k in range(5)])
    assert (res.rows, res.inserted, res.merged, res.duplicates) == (50, 50, 0, 0)
    with engine.begin() as conn:  # a0 repeats 5 stored readings and adds sensor z to 5
        res = insert_frames(
            conn,
            [
                frame("a0", 5, 10, ["x", "y"]),
                frame("a1", 0, 5, ["z"], offset=100.0),
                frame("a9", 0, 3, ["x", "y"]),
            ],
        )
    assert (res.rows, res.inserted, res.merged, res.duplicates) == (18, 8, 5, 5)
    assert _count(pg_url) == 50 + 5 + 3
    a1 = read_window_frame("a1", url=pg_url)
    assert a1["z"].tolist()[:5] == [100.0, 101.0, 102.0, 103.0, 104.0]
    assert a1["x"].tolist()[:5] == [0.0, 1.0, 2.0, 3.0, 4.0]


# ---- the service against real Mosquitto and PostgreSQL


def test_mqtt_readings_land_in_the_store_once(pg_url: str, publisher) -> None:  # type: ignore[no-untyped-def]
    root = unique_root()
    ingester = MqttIngester(pg_url, client_id=f"{root}-ing", topic_root=root)
    ingester.start()
    try:
        publisher(f"{root}/pump-01/readings", _batch(0, 50))
        publisher(f"{root}/pump-01/readings", orjson.dumps(_records(50, 1)[0]))  # one reading
        publisher(f"{root}/pump-02/readings", _batch(0, 20, asset="pump-02"))
        _wait_for(lambda: ingester.totals.inserted == 71)
        publisher(f"{root}/pump-01/readings", _batch(40, 20))  # 11 repeats, 9 new
        _wait_for(lambda: ingester.totals.readings == 91)
    finally:
        ingester.stop()
    assert (ingester.totals.inserted, ingester.totals.duplicates) == (80, 11)
    frame = read_window_frame("pump-01", url=pg_url)
    assert len(frame) == 60
    assert frame["s2"].tolist() == [float(i * 10 + 2) for i in range(60)]
    assert len(read_window_frame("pump-02", url=pg_url)) == 20
    m = ingester.metrics.registry
    assert m.get_sample_value("sensorguard_live_readings_total", {"outcome": "inserted"}) == 80
    assert m.get_sample_value("sensorguard_live_readings_total", {"outcome": "duplicate"}) == 11


def test_nothing_published_while_the_ingester_is_stopped_is_lost(pg_url: str, publisher) -> None:  # type: ignore[no-untyped-def]
    root = unique_root()
    first = MqttIngester(pg_url, client_id=f"{root}-ing", topic_root=root)
    first.start()
    publisher(f"{root}/a1/readings", _batch(0, 10))
    _wait_for(lambda: first.totals.inserted == 10)
    first.stop()
    for k in range(1, 6):  # the persistent session queues these at the broker
        publisher(f"{root}/a1/readings", _batch(k * 10, 10))
    again = MqttIngester(pg_url, client_id=f"{root}-ing", topic_root=root)
    again.start()
    try:
        _wait_for(lambda: again.totals.inserted == 50)
    finally:
        again.stop()
    assert _count(pg_url) == 60


def test_kill_9_mid_stream_then_restart_stores_everything_once(
    pg_url: str,
    mqtt_broker: str,  # noqa: F811
    publisher,  # type: ignore[no-untyped-def]
    tmp_path: Path,
) -> None:
    """The ingester acknowledges only committed messages: a kill -9 with messages in
    flight makes the broker redeliver them to the restarted process."""
    root = unique_root()
    env = {
        **os.environ,
        "SENSORGUARD_STORE_URL": pg_url,
        "SENSORGUARD_MQTT_URL": mqtt_broker,
        "SENSORGUARD_MQTT_TOPIC_ROOT": root,
        "SENSORGUARD_MQTT_CLIENT_ID": f"{root}-ing",
        "SENSORGUARD_HOME": str(tmp_path / "home"),
        "PYTHONUNBUFFERED": "1",
    }
    cmd = [sys.executable, "-c", "from sensorguard.cli import main; main()", "ingest-mqtt"]
    cmd += ["--log-level", "warning"]

    log = tmp_path / "ingest.log"

    def start() -> subprocess.Popen[bytes]:
        with log.open("ab") as err:
            proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=err)
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()  # printed once the subscription is confirmed
        assert "ingesting" in line, line + log.read_text()
        return proc

    proc = start()
    n_messages, per = 40, 50
    for k in range(n_messages // 2):
        publisher(f"{root}/a1/readings", _batch(k * per, per))
    proc.send_signal(signal.SIGKILL)  # whatever was received but not committed is unacked
    proc.wait(10)
    stored_at_kill = _count(pg_url)
    for k in range(n_messages // 2, n_messages):  # published while it is down
        publisher(f"{root}/a1/readings", _batch(k * per, per))
    proc = start()
    try:
        _wait_for(lambda: _count(pg_url) == n_messages * per, timeout=30)
    finally:
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=20)[0].decode()
    assert proc.returncode == 0, out + log.read_text()
    assert stored_at_kill <= n_messages // 2 * per
    frame = read_window_frame("a1", url=pg_url)
    assert len(frame) == n_messages * per and frame.index.is_unique


def test_ingesters_in_a_shared_group_split_the_stream(pg_url: str, publisher) -> None:  # type: ignore[no-untyped-def]
    root = unique_root()
    ingesters = [
        MqttIngester(pg_url, client_id=f"{root}-ing{k}", topic_root=root, shared_group=root)
        for k in range(2)
    ]
    for ing in ingesters:
        ing.start()
    try:
        for k in range(20):
            publisher(f"{root}/a{k % 4}/readings", _batch(k * 5, 5))
        _wait_for(lambda: sum(i.totals.messages for i in ingesters) == 20)
    finally:
        for ing in ingesters:
            ing.stop()
    assert all(i.totals.messages > 0 for i in ingesters)  # each took a share
    assert sum(i.totals.inserted for i in ingesters) == 100 == _count(pg_url)


def test_malformed_payloads_go_to_the_dead_letter_table_and_are_counted(
    pg_url: str,
    publisher,  # type: ignore[no-untyped-def]
) -> None:
    root = unique_root()
    metrics = LiveMetrics()
    ingester = MqttIngester(pg_url, client_id=f"{root}-ing", topic_root=root, metrics=metrics)
    bad = {
        "malformed_json": b"{not json",
        "not_a_number": orjson.dumps(
            {"readings": [{"timestamp": "2026-01-01T00:00:00Z", "a": "hi"}]}
        ),
        "missing_timestamp": orjson.dumps({"readings": [{"a": 1.0}]}),
        "bad_timestamp": orjson.dumps({"readings": [{"timestamp": "soon", "a": 1.0}]}),
        "empty_batch": orjson.dumps({"readings": []}),
        "asset_mismatch": _batch(0, 2, asset="someone-else"),
        "empty_body": b"",
    }
    ingester.start()
    try:
        for payload in bad.values():
            publisher(f"{root}/p1/readings", payload)
        publisher(f"{root}/p1/readings", _batch(0, 5))  # a good one after them
        _wait_for(lambda: ingester.totals.messages == len(bad) + 1)
    finally:
        ingester.stop()
    assert _count(pg_url) == 5
    with ensure_schema(pg_url).connect() as conn:
        rows = conn.execute(sa.text("SELECT * FROM dead_letters ORDER BY id")).mappings().all()
    assert [r["code"] for r in rows] == list(bad)
    for row, payload in zip(rows, bad.values(), strict=True):
        assert bytes(row["payload"]) == payload  # raw bytes kept
        assert row["reason"] and row["topic"] == f"{root}/p1/readings"
        assert row["source"] == "mqtt" and row["asset_id"] == "p1"
    r = metrics.registry
    for code in bad:
        assert r.get_sample_value("sensorguard_live_dead_letters_total", {"code": code}) == 1
    assert r.get_sample_value("sensorguard_live_messages_total", {"outcome": "dead_letter"}) == 7
    assert r.get_sample_value("sensorguard_live_messages_total", {"outcome": "stored"}) == 1


@pytest.fixture
def broker_dir() -> Iterator[Path]:
    """A folder the broker can reach after it drops root for the mosquitto user
    (pytest's broker_dir sits below a 0700 folder)."""
    import shutil
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="sg-mosquitto-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_deploy_broker_config_refuses_anonymous_clients(broker_dir: Path) -> None:
    """deploy/mosquitto as compose runs it (entrypoint + config), on the real broker
    binary: anonymous and wrong passwords are refused, the service user gets in and may
    publish only in its topic tree."""
    import shutil
    import socket

    from sensorguard.live.mqtt import MqttError

    require_service(shutil.which("mosquitto") is not None, "the mosquitto binary is not installed")
    deploy = Path(__file__).resolve().parents[2] / "deploy" / "mosquitto"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    (broker_dir / "config").mkdir()
    conf = (deploy / "mosquitto.conf").read_text()
    assert "allow_anonymous false" in conf
    conf = conf.replace("/mosquitto/", f"{broker_dir}/").replace(
        "listener 1883", f"listener {port} 127.0.0.1"
    )
    (broker_dir / "config" / "mosquitto.conf").write_text(conf)
    env = {**os.environ, "MOSQUITTO_DIR": str(broker_dir), "MQTT_PASSWORD": "s3cret-pw"}
    with (broker_dir / "broker.log").open("wb") as log:
        proc = subprocess.Popen(
            ["sh", str(deploy / "entrypoint.sh")], env=env, stdout=log, stderr=log
        )
    try:
        settings = MqttSettings.from_url(f"mqtt://127.0.0.1:{port}")
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                assert time.monotonic() < deadline, (broker_dir / "broker.log").read_text()
                time.sleep(0.05)
        for url in (f"mqtt://127.0.0.1:{port}", f"mqtt://sensorguard:wrong@127.0.0.1:{port}"):
            client = make_client(unique_root("anon"), MqttSettings.from_url(url))
            with pytest.raises(MqttError, match="refused the connection"):
                connect(client, MqttSettings.from_url(url), persistent=False)
        settings = MqttSettings.from_url(f"mqtt://sensorguard:s3cret-pw@127.0.0.1:{port}")
        client = make_client(unique_root("svc"), settings)
        acks = AckTracker()
        acks.install(client)
        connect(client, settings, persistent=False)
        acks.publish(client, "sensorguard/p1/readings", _batch(0, 1))
        acks.publish(client, "elsewhere/p1/readings", _batch(0, 1))
        assert acks.wait(10)
        assert acks.failed == 1  # the ACL: PUBACK "not authorized" for the foreign tree
        disconnect(client)
    finally:
        proc.terminate()
        proc.wait(10)
    assert proc.returncode == 0 or proc.returncode == -15
