"""MQTT -> readings store throughput of the live ingester (``sensorguard.live.ingest``).

A fleet of ``--assets`` assets x ``--sensors`` sensors publishes ``--readings`` readings
per asset, ``--batch`` readings per message (QoS 1), from a separate process, to a
private Mosquitto started from ``deploy/mosquitto`` (the compose broker's config: its
queue limits, so a burst is queued, not dropped). Measured, in the same run:

* ``ingester``: :class:`~sensorguard.live.ingest.MqttIngester` (batches the messages of
  each 50 ms into one transaction and one binary COPY, acknowledges after commit);
* ``ingester, 1 reading/message``: the same ingester when every reading is its own
  message (what one sensor gateway per reading costs);
* ``naive``: the obvious alternative, a paho subscriber that stores each message in
  its own transaction with ``INSERT ... ON CONFLICT DO NOTHING`` (auto-acknowledged).

Throughput is end to end: first publish until the last reading is committed. The
ingester's own time is split into parsing, writing and committing, and its CPU time per
reading is reported too (less sensitive than wall time to other work on the machine;
the load average at the start is recorded).

    .venv/bin/python benchmarks/bench_live_ingest.py                  # 100 x 10, 1,000 each
    .venv/bin/python benchmarks/bench_live_ingest.py --readings 3000 --json out.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

PASSWORD = "bench-" + uuid.uuid4().hex[:8]


def payloads(assets: int, sensors: int, per_asset: int, batch: int) -> list[tuple[str, bytes]]:
    """Messages in publishing order: round-robin over the assets, oldest first."""
    import numpy as np

    rng = np.random.default_rng(0)
    names = [f"s{k:02d}" for k in range(sensors)]
    out = []
    for lo in range(0, per_asset, batch):
        for a in range(assets):
            recs = []
            for i in range(lo, min(lo + batch, per_asset)):
                t = 1_767_225_600 + i  # 2026-01-01, one reading per second
                stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
                recs.append(
                    {
                        "timestamp": stamp,
                        **dict(
                            zip(names, rng.normal(50, 5, sensors).round(3).tolist(), strict=True)
                        ),
                    }
                )
            out.append((f"bench/a{a:03d}/readings", orjson.dumps({"readings": recs})))
    return out


def publish(url: str, messages: list[tuple[str, bytes]], ready: Any, go: Any, done: Any) -> None:
    from sensorguard.live.mqtt import AckTracker, MqttSettings, connect, disconnect, make_client

    settings = MqttSettings.from_url(url)
    client = make_client("bench-pub-" + uuid.uuid4().hex[:6], settings)
    acks = AckTracker()
    acks.install(client)
    connect(client, settings, persistent=False)
    ready.set()
    go.wait()
    t = time.perf_counter()
    for topic, payload in messages:
        if acks.sent - acks.acked > 1000:
            acks.wait(60, below=500)
        acks.publish(client, topic, payload)
    acks.wait(120)
    done.put(time.perf_counter() - t)
    disconnect(client)


class Broker:
    """deploy/mosquitto (entrypoint + config) on a free port, in a reachable temp folder."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="sg-bench-mosquitto-"))
        self.dir.chmod(0o755)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        conf = (ROOT / "deploy/mosquitto/mosquitto.conf").read_text()
        conf = conf.replace("/mosquitto/", f"{self.dir}/").replace(
            "listener 1883", f"listener {self.port} 127.0.0.1"
        )
        conf = conf.replace("persistence true", "persistence false")  # measure, not disk
        (self.dir / "config").mkdir()
        (self.dir / "config/mosquitto.conf").write_text(conf)
        env = {
            **os.environ,
            "MOSQUITTO_DIR": str(self.dir),
            "MQTT_PASSWORD": PASSWORD,
            "MQTT_TOPIC_ROOT": "bench",
        }
        self.proc = subprocess.Popen(
            ["sh", str(ROOT / "deploy/mosquitto/entrypoint.sh")],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        self.url = f"mqtt://sensorguard:{PASSWORD}@127.0.0.1:{self.port}"

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


def _run_publisher(url: str, messages: list[tuple[str, bytes]]) -> tuple[Any, Any, Any]:
    ctx = mp.get_context("fork")
    ready, go, done = ctx.Event(), ctx.Event(), ctx.Queue()
    proc = ctx.Process(target=publish, args=(url, messages, ready, go, done))
    proc.start()
    assert ready.wait(30), "publisher did not connect"
    return proc, go, done


def run_ingester(
    broker: Broker, store_url: str, messages: list[tuple[str, bytes]], total: int
) -> dict[str, Any]:
    from sensorguard.live.ingest import MqttIngester

    ing = MqttIngester(
        store_url, broker.url, client_id="bench-ing-" + uuid.uuid4().hex[:6], topic_root="bench"
    )
    ing.start()
    proc, go, done = _run_publisher(broker.url, messages)
    t = time.perf_counter()
    cpu = time.process_time()  # this process = the ingester (the publisher is forked)
    go.set()
    while ing.totals.readings < total:
        time.sleep(0.01)
        if time.perf_counter() - t > 600:
            raise RuntimeError(f"only {ing.totals.readings} of {total} stored")
    seconds = time.perf_counter() - t
    cpu = time.process_time() - cpu
    publish_s = done.get(timeout=60)
    proc.join(30)
    ing.stop()
    tot = ing.totals
    assert tot.inserted == total, (tot.inserted, total)
    return {
        "readings": total,
        "messages": len(messages),
        "seconds": round(seconds, 3),
        "readings_per_s": round(total / seconds),
        "publish_seconds": round(publish_s, 3),
        "ingester_cpu_us_per_reading": round(cpu / total * 1e6, 2),
        "parse_us_per_reading": round(tot.parse_seconds / total * 1e6, 2),
        "write_us_per_reading": round(tot.write_seconds / total * 1e6, 2),
        "commit_us_per_reading": round(
            (tot.seconds - tot.parse_seconds - tot.write_seconds) / total * 1e6, 2
        ),
    }


def run_naive(
    broker: Broker, store_url: str, messages: list[tuple[str, bytes]], total: int
) -> dict[str, Any]:
    """One transaction and one multi-row INSERT ... ON CONFLICT DO NOTHING per message."""
    from datetime import datetime

    from sqlalchemy.dialects.postgresql import insert as pg_insert

    from sensorguard.live.mqtt import MqttSettings, connect, disconnect, make_client
    from sensorguard.store import ensure_schema
    from sensorguard.store.ingest import sensor_set_id
    from sensorguard.store.schema import readings

    engine = ensure_schema(store_url)
    stored = [0]
    sids: dict[tuple[str, ...], int] = {}
    lock = threading.Lock()

    def on_message(client: Any, userdata: Any, msg: Any) -> None:
        doc = orjson.loads(msg.payload)
        asset = msg.topic.split("/")[1]
        rows = []
        with engine.begin() as conn:
            for r in doc["readings"]:
                sensors = tuple(k for k in r if k != "timestamp")
                if sensors not in sids:
                    sids[sensors] = sensor_set_id(conn, sensors)
                rows.append(
                    {
                        "asset_id": asset,
                        "time": datetime.fromisoformat(r["timestamp"]).replace(tzinfo=None),
                        "sensor_set_id": sids[sensors],
                        "sensor_values": [r[k] for k in sensors],
                        "status": None,
                    }
                )
            conn.execute(pg_insert(readings).on_conflict_do_nothing(), rows)
        with lock:
            stored[0] += len(rows)

    settings = MqttSettings.from_url(broker.url)
    client = make_client("bench-naive-" + uuid.uuid4().hex[:6], settings)
    client.on_message = on_message
    subscribed = threading.Event()
    client.on_subscribe = lambda *a: subscribed.set()
    connect(client, settings, persistent=False)
    client.subscribe("bench/+/readings", qos=1)
    assert subscribed.wait(10)
    proc, go, done = _run_publisher(broker.url, messages)
    t = time.perf_counter()
    go.set()
    while stored[0] < total:
        time.sleep(0.01)
        if time.perf_counter() - t > 900:
            raise RuntimeError(f"naive: only {stored[0]} of {total} stored")
    seconds = time.perf_counter() - t
    publish_s = done.get(timeout=60)
    proc.join(30)
    disconnect(client)
    return {
        "readings": total,
        "messages": len(messages),
        "seconds": round(seconds, 3),
        "readings_per_s": round(total / seconds),
        "publish_seconds": round(publish_s, 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--assets", type=int, default=100)
    ap.add_argument("--sensors", type=int, default=10)
    ap.add_argument("--readings", type=int, default=1000, help="readings per asset")
    ap.add_argument("--batch", type=int, default=100, help="readings per message")
    ap.add_argument(
        "--single", type=int, default=100, help="readings per asset, 1-reading messages"
    )
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    from support.pg import pg_available, temp_database

    if not pg_available() or shutil.which("mosquitto") is None:
        raise SystemExit("needs PostgreSQL at 127.0.0.1:5432 and the mosquitto binary")
    import logging

    logging.basicConfig(level=logging.WARNING)
    load = os.getloadavg()[0]
    results: dict[str, Any] = {
        "load_average_1min_at_start": round(load, 2),
        "config": vars(args) | {"json": str(args.json)},
        "cpus": os.cpu_count(),
    }
    broker = Broker()
    try:
        batched = payloads(args.assets, args.sensors, args.readings, args.batch)
        total = args.assets * args.readings
        single = payloads(args.assets, args.sensors, args.single, 1)
        total_single = args.assets * args.single
        with temp_database("bench_live") as (_, url):
            results["ingester"] = run_ingester(broker, url, batched, total)
        with temp_database("bench_live") as (_, url):
            results["ingester_1_per_message"] = run_ingester(broker, url, single, total_single)
        with temp_database("bench_live") as (_, url):
            results["naive"] = run_naive(broker, url, batched, total)
    finally:
        broker.close()
    results["ratio_vs_naive"] = round(
        results["ingester"]["readings_per_s"] / results["naive"]["readings_per_s"], 1
    )
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
