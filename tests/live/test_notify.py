"""Alarm notifications: the outbox, signed idempotent webhooks to a real local HTTP
server that fails or is down, in-order redelivery, and the MQTT alarm and status
topics on the real Mosquitto. PostgreSQL tests skip with the reason when it is absent
(a failure with SENSORGUARD_REQUIRE_SERVICES=1)."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from support.mqtt import mqtt_broker, unique_root  # noqa: F401  (fixture)
from support.pg import pg_available, temp_database
from support.services import require_service

from sensorguard.live.notify import (
    Notifier,
    Transition,
    enqueue,
    read_deliveries,
    sign,
    verify_signature,
)
from sensorguard.store import dispose_engines, ensure_schema

SECRET = "test-secret-\u00e9"


class Receiver:
    """A real HTTP receiver on 127.0.0.1: fails the first ``fail_first`` requests with
    503, and with ``lose_ack`` stores one delivery but answers 500 (a lost reply)."""

    def __init__(
        self,
        port: int = 0,
        fail_first: int = 0,
        lose_ack: str | None = None,
        barrier: threading.Barrier | None = None,
    ) -> None:
        self.fail_first = fail_first
        self.lose_ack = lose_ack
        self.barrier = barrier  # the first request waits here for the other parties (503 if not)
        self.requests: list[dict[str, Any]] = []  # every request seen
        self.accepted: list[dict[str, Any]] = []  # deliveries processed (maybe twice)
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                req = {
                    "key": self.headers["Idempotency-Key"],
                    "event": self.headers["X-SensorGuard-Event"],
                    "signed": verify_signature(
                        SECRET,
                        body,
                        self.headers["X-SensorGuard-Timestamp"],
                        self.headers["X-SensorGuard-Signature"],
                    ),
                    "body": json.loads(body),
                }
                held_ok = True
                barrier, receiver.barrier = receiver.barrier, None
                if barrier is not None:
                    try:
                        barrier.wait()
                    except threading.BrokenBarrierError:
                        held_ok = False
                with receiver.lock:
                    receiver.requests.append(req)
                    n = len(receiver.requests)
                    if n <= receiver.fail_first or not held_ok:
                        status = 503
                    else:
                        receiver.accepted.append(req)
                        status = 200
                        if req["key"] == receiver.lose_ack:
                            receiver.lose_ack = None
                            status = 500
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def unique_keys(self) -> list[str]:
        """What the receiver acts on: each Idempotency-Key once, in arrival order."""
        seen: dict[str, None] = {}
        for r in self.accepted:
            seen.setdefault(r["key"])
        return list(seen)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _transitions(asset: str = "pump-01") -> list[Transition]:
    out = []
    for event in (11, 12):
        base = {"id": event, "asset_id": asset, "kind": "failure", "top_sensors": ["flow"]}
        out.append(Transition(str(event), "opened", asset, "failure", {**base, "state": "open"}))
        out.append(Transition(str(event), "updated:1", asset, "failure", {**base, "peak": 3.5}))
        out.append(Transition(str(event), "closed", asset, "failure", {**base, "state": "closed"}))
    return out


@pytest.fixture
def pg_url(sg_home: Path) -> Iterator[str]:
    require_service(pg_available(), "PostgreSQL is not reachable at 127.0.0.1:5432")
    with temp_database("notify") as (_, url):
        yield url


def _enqueue_all(url: str, transitions: list[Transition], receivers: list[str]) -> None:
    engine = ensure_schema(url)
    for t in transitions:  # one transaction per transition, as the watch service does
        with engine.begin() as conn:
            enqueue(conn, t, receivers)


def _drain_until(notifier: Notifier, done: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "not delivered in time"
        notifier.drain_once()
        time.sleep(0.02)


def test_signature_verifies_and_rejects_tampering_and_replays() -> None:
    body, ts = b'{"a": 1}', str(int(time.time()))
    sig = sign("k", ts, body)
    assert sig.startswith("sha256=") and verify_signature("k", body, ts, sig)
    assert not verify_signature("k", b'{"a": 2}', ts, sig)
    assert not verify_signature("other", body, ts, sig)
    old = str(int(time.time()) - 3600)
    assert not verify_signature("k", body, old, sign("k", old, body))  # a replayed delivery
    assert not verify_signature("k", body, ts, "")


def test_enqueue_is_idempotent_per_event_and_transition(sg_home: Path) -> None:
    url = f"sqlite:///{sg_home / 'readings.db'}"
    engine = ensure_schema(url)
    t = _transitions()[0]
    with engine.begin() as conn:
        first = enqueue(conn, t, ["http://example.invalid/a", "mqtt"])
        again = enqueue(conn, t, ["http://example.invalid/a", "mqtt"])
    assert first is not None and again is None
    log = read_deliveries(engine)
    assert [(d["receiver"], d["state"], d["attempts"]) for d in log] == [
        ("http://example.invalid/a", "pending", 0),
        ("mqtt", "pending", 0),
    ]
    with engine.begin() as conn:  # rolled back with its alarm event: nothing to send
        enqueue(conn, _transitions()[1], ["mqtt"])
        conn.rollback()
    assert len(read_deliveries(engine)) == 2
    dispose_engines()


@pytest.mark.postgres
def test_failing_receiver_gets_every_transition_once_in_order_signed(pg_url: str) -> None:
    receiver = Receiver(fail_first=3, lose_ack="12:opened")
    transitions = _transitions()
    try:
        _enqueue_all(pg_url, transitions, [receiver.url])
        notifier = Notifier(pg_url, secret=SECRET, backoff_base=0.05, backoff_max=0.2)
        engine = ensure_schema(pg_url)
        _drain_until(
            notifier,
            lambda: all(d["state"] == "delivered" for d in read_deliveries(engine)),
        )
        notifier.close()
    finally:
        receiver.close()
    assert receiver.unique_keys() == [t.key for t in transitions]
    assert all(r["signed"] for r in receiver.requests)
    # the lost reply was redelivered with the same key (and identical body): a repeat
    keys = [r["key"] for r in receiver.accepted]
    assert keys.count("12:opened") == 2 and len(keys) == len(transitions) + 1
    repeats = [r["body"] for r in receiver.accepted if r["key"] == "12:opened"]
    assert repeats[0] == repeats[1]
    assert receiver.accepted[0]["event"] == "alarm.opened"
    assert receiver.accepted[0]["body"]["event"]["state"] == "open"
    log = read_deliveries(ensure_schema(pg_url))
    assert log[0]["attempts"] == 4 and log[0]["last_error"].startswith("HTTP 503")
    assert all(d["state"] == "delivered" and d["delivered_at"] for d in log)
    r = notifier.metrics.registry
    assert r.get_sample_value("sensorguard_webhook_failures_total") == 4  # 3 x 503 + lost reply


@pytest.mark.postgres
def test_receiver_down_then_back_gets_everything_afterwards_in_order(pg_url: str) -> None:
    port = _free_port()
    transitions = _transitions()
    _enqueue_all(pg_url, transitions[:2], [f"http://127.0.0.1:{port}/hook"])
    notifier = Notifier(pg_url, secret=SECRET, backoff_base=0.05, backoff_max=0.1, timeout=2)
    engine = ensure_schema(pg_url)
    for _ in range(5):  # nobody listens: every attempt fails and the head blocks the rest
        notifier.drain_once()
        time.sleep(0.12)
    log = read_deliveries(engine)
    assert [d["state"] for d in log] == ["pending", "pending"]
    assert log[0]["attempts"] >= 3 and log[1]["attempts"] == 0  # in order: head first
    assert "ConnectError" in log[0]["last_error"]
    _enqueue_all(pg_url, transitions[2:], [f"http://127.0.0.1:{port}/hook"])  # while down
    receiver = Receiver(port=port)
    try:
        _drain_until(
            notifier, lambda: all(d["state"] == "delivered" for d in read_deliveries(engine))
        )
    finally:
        notifier.close()
        receiver.close()
    assert [r["key"] for r in receiver.accepted] == [t.key for t in transitions]


@pytest.mark.postgres
def test_receivers_drain_side_by_side_each_in_order(pg_url: str) -> None:
    # Each receiver's first request is held until the other's first request has
    # arrived too: drained one receiver after the other, the first would wait out the
    # barrier and be answered 503 (a second attempt in the log).
    barrier = threading.Barrier(2, timeout=5)
    receivers = [Receiver(barrier=barrier), Receiver(barrier=barrier)]
    transitions = _transitions()
    try:
        _enqueue_all(pg_url, transitions, [r.url for r in receivers])
        notifier = Notifier(pg_url, secret=SECRET, backoff_base=0.05, timeout=15)
        engine = ensure_schema(pg_url)
        _drain_until(
            notifier, lambda: all(d["state"] == "delivered" for d in read_deliveries(engine))
        )
        notifier.close()
    finally:
        for r in receivers:
            r.close()
    for r in receivers:
        assert [q["key"] for q in r.requests] == [t.key for t in transitions]
    log = read_deliveries(engine)
    assert len(log) == 2 * len(transitions) and {d["attempts"] for d in log} == {1}


@pytest.mark.postgres
def test_delivery_log_is_written_per_batch_of_sends_and_bounded(pg_url: str) -> None:
    # Each request takes at least 0.15 s; the log is committed once 0.25 s of sends have
    # gone by, so by the 4th request (after >= 0.45 s of sends) at least two are logged,
    # and at the 2nd none yet (one commit per send would show the first).
    engine = ensure_schema(pg_url)
    seen: list[int] = []

    class Slow(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            seen.append(sum(d["state"] == "delivered" for d in read_deliveries(engine)))
            time.sleep(0.15)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    transitions = _transitions()[:4]
    try:
        _enqueue_all(pg_url, transitions, [url])
        notifier = Notifier(pg_url, secret=SECRET, timeout=10)
        assert notifier.drain_once() == 4
        notifier.close()
    finally:
        server.shutdown()
        server.server_close()
    assert seen[:2] == [0, 0] and seen[3] >= 2
    assert [d["state"] for d in read_deliveries(engine)] == ["delivered"] * 4


@pytest.mark.postgres
def test_two_notifiers_never_send_a_transition_twice(pg_url: str) -> None:
    receiver = Receiver()
    transitions = [
        Transition(str(e), "opened", f"a{e % 3}", "failure", {"id": e}) for e in range(30)
    ]
    try:
        _enqueue_all(pg_url, transitions, [receiver.url])
        engine = ensure_schema(pg_url)
        workers = [Notifier(pg_url, secret=SECRET, poll_seconds=0.01) for _ in range(2)]
        for w in workers:
            w.start()
        deadline = time.monotonic() + 30
        while not all(d["state"] == "delivered" for d in read_deliveries(engine)):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        for w in workers:
            w.stop()
    finally:
        receiver.close()
    assert [r["key"] for r in receiver.accepted] == [t.key for t in transitions]


@pytest.mark.postgres
def test_mqtt_alarms_topic_and_retained_status(pg_url: str, mqtt_broker: str) -> None:  # noqa: F811
    from sensorguard.live.mqtt import MqttSettings, connect, disconnect, make_client

    root = unique_root()
    transitions = _transitions("pump-9")[:4]  # event 11 opened, updated, closed; 12 opened
    _enqueue_all(pg_url, transitions, ["mqtt"])
    notifier = Notifier(pg_url, mqtt_broker, topic_root=root, client_id=f"{root}-notify")
    settings = MqttSettings.from_url(mqtt_broker)
    got: list[tuple[str, dict, bool]] = []
    sub = make_client(f"{root}-sub", settings)
    sub.on_message = lambda c, u, m: got.append((m.topic, json.loads(m.payload), m.retain))
    connect(sub, settings, persistent=False)
    sub.subscribe(f"{root}/+/alarms", qos=1)
    time.sleep(0.3)
    try:
        engine = ensure_schema(pg_url)
        _drain_until(
            notifier, lambda: all(d["state"] == "delivered" for d in read_deliveries(engine))
        )
        deadline = time.monotonic() + 10
        while len(got) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [(t, b["id"]) for t, b, _ in got] == [
            (f"{root}/pump-9/alarms", t.key) for t in transitions
        ]
        # a late subscriber gets the retained status: event 12 open, 11 closed
        status: list[dict] = []
        late = make_client(f"{root}-late", settings)
        late.on_message = lambda c, u, m: status.append(json.loads(m.payload))
        connect(late, settings, persistent=False)
        late.subscribe(f"{root}/pump-9/status", qos=1)
        deadline = time.monotonic() + 10
        while not status and time.monotonic() < deadline:
            time.sleep(0.05)
        disconnect(late)
        assert status[0]["state"] == "alarm"
        assert [e["id"] for e in status[0]["open_alarms"]] == [12]
        assert status[0]["last_notification"] == "12:opened"
    finally:
        disconnect(sub)
        # clear the retained message so the broker keeps nothing of this test
        cleaner = make_client(f"{root}-clean", settings)
        connect(cleaner, settings, persistent=False)
        cleaner.publish(f"{root}/pump-9/status", b"", qos=1, retain=True).wait_for_publish(5)
        disconnect(cleaner)
        notifier.close()
