"""The live loop end to end: MQTT publish -> stored -> scored -> alarm state -> webhook.

A fleet of ``--assets`` assets x ``--sensors`` sensors (independent normal readings, one
per second of data time) is published over MQTT (QoS 1, ``--batch`` readings per
message) from a separate process to a private Mosquitto (the compose broker's config,
``deploy/mosquitto``), and a real ``sensorguard watch`` process (ingester + watch loop
+ notifier, PostgreSQL on the same machine) does the rest. Measured in one run:

1. **sustained throughput**: first publish until every reading is scored (the sum of
   the checkpoints' scored counts reaches the total); also when the last reading was
   stored, and the watch process's CPU time per reading. Once with every prediction
   stored, once with none (``--predictions-every 0``), and the watch loop alone on a
   store filled beforehand (``--no-ingest``);
2. **latency** at half the sustained rate (or ``--rate``): readings are published in
   real time, a fault (one sensor +8 sigma) starts in ``--faulty`` assets spread over
   the fleet; a webhook receiver in this process timestamps every ``alarm.opened``.
   Latency = arrival of the webhook minus the publish of the message holding the
   reading the alarm opened at, split into publish -> stored (the reading readable in
   ``readings``, polled every 20 ms), stored -> alarm written (the notification's
   ``created_at``) and written -> webhook; and, from the watch process's stage trace
   (``SENSORGUARD_WATCH_TRACE``), ``stages``: p50/p99/max of publish -> taken by the
   ingester -> committed -> start of the pass that scored it -> read -> scored ->
   written -> committed -> notifier pick-up -> sent -> webhook, and the passes' sizes
   and phases (``--latency-predictions-every 0``: without stored predictions);
3. **the obvious alternative**: a client forwarding each reading to ``POST
   /v1/predict`` of ``sensorguard serve`` (same model, registered in a temporary
   embedded registry), ``--clients`` client processes back to back, keep-alive. It
   stores nothing and writes no alarm events, so it is a lower bound of that design.

    .venv/bin/python benchmarks/bench_live.py                       # 100 x 10, 1,000 each
    .venv/bin/python benchmarks/bench_live.py --readings 3000 --json out.json
    .venv/bin/python benchmarks/bench_live.py --only latency --rate 5700 --src OLD/src

``--only`` runs some parts, ``--src`` runs the watch process from another source tree
(before/after in one sitting), ``--profile FILE`` records it with py-spy (install it
into the venv by hand; it is not a dependency).

Not a test: nothing is asserted; figures go to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))
BIN = Path(sys.executable).parent
START = 1_767_225_600  # 2026-01-01, one reading per second


def _names(sensors: int) -> list[str]:
    return [f"s{k:02d}" for k in range(sensors)]


def fit_model(folder: Path, sensors: int) -> Any:
    import pandas as pd

    from sensorguard.detectors import make_detector

    rng = np.random.default_rng(1)
    X = pd.DataFrame(rng.normal(50, 5, (5000, sensors)), columns=_names(sensors))
    det = make_detector("operating-states").fit(X)
    det.save(folder)
    return det


def messages(
    assets: int, sensors: int, per_asset: int, batch: int, faulty: int = 0, fault_at: int = 0
) -> list[tuple[str, int, bytes]]:
    """``(asset, index of the message's first reading, payload)`` in publishing order:
    round-robin over the assets, oldest first. ``faulty`` assets spread over the fleet
    (every ``assets // faulty``-th: the watch loop visits assets in name order, so the
    first ones would be served first in every pass) get sensor 0 raised by 8 sigma from
    reading ``fault_at`` on, staggered (the k-th faulty asset from
    ``fault_at * (1 + k / faulty)``), so the alarms open one after another."""
    rng = np.random.default_rng(0)
    names = _names(sensors)
    every = max(1, assets // max(faulty, 1))
    out = []
    for lo in range(0, per_asset, batch):
        for a in range(assets):
            n = min(batch, per_asset - lo)
            vals = rng.normal(50, 5, (n, sensors)).round(3)
            k = a // every
            if faulty and a % every == 0 and k < faulty:
                idx = np.arange(lo, lo + n)
                vals[idx >= fault_at + fault_at * k // faulty, 0] += 40.0
            recs = [
                {
                    "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(START + lo + i)),
                    **dict(zip(names, row, strict=True)),
                }
                for i, row in enumerate(vals.tolist())
            ]
            out.append((f"a{a:03d}", lo, orjson.dumps({"readings": recs})))
    return out


def publish(
    url: str, msgs: list[tuple[str, int, bytes]], rate: float | None, batch: int, q: Any, go: Any
) -> None:
    """Publish (paced at ``rate`` readings/s when given); put the publish time of each
    message on ``q``."""
    from sensorguard.live.mqtt import AckTracker, MqttSettings, connect, disconnect, make_client

    settings = MqttSettings.from_url(url)
    client = make_client("bench-pub-" + uuid.uuid4().hex[:6], settings)
    acks = AckTracker()
    acks.install(client)
    connect(client, settings, persistent=False)
    go.wait()
    t0 = time.perf_counter()
    sent: list[float] = []
    for i, (asset, _lo, payload) in enumerate(msgs):
        if rate:
            due = t0 + i * batch / rate
            while (wait := due - time.perf_counter()) > 0:
                time.sleep(min(wait, 0.01))
        if acks.sent - acks.acked > 1000:
            acks.wait(60, below=500)
        sent.append(time.time())
        acks.publish(client, f"bench/{asset}/readings", payload)
    acks.wait(120)
    q.put((time.perf_counter() - t0, sent))
    disconnect(client)


def _cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return float("nan")


def _scored_and_stored(url: str) -> tuple[int, int]:
    import sqlalchemy as sa

    from sensorguard.store import get_engine

    with get_engine(url).connect() as conn:
        scored = conn.execute(
            sa.text("SELECT coalesce(sum(n_scored), 0) FROM watch_checkpoints")
        ).scalar_one()
        stored = conn.execute(sa.text("SELECT count(*) FROM readings")).scalar_one()
    return int(scored), int(stored)


class Watch:
    """``sensorguard watch`` in a subprocess."""

    src: Path | None = None  # --src: run this source tree's sensorguard instead
    extra: tuple[str, ...] = ()  # --watch-args: more options of `sensorguard watch`

    def __init__(
        self, model: Path | None, store: str, mqtt: str, home: Path, *args: str, **env: str
    ) -> None:
        self.log = home / f"watch-{uuid.uuid4().hex[:6]}.log"
        home.mkdir(parents=True, exist_ok=True)
        self.fh = open(self.log, "wb")  # noqa: SIM115 - closed in stop()
        base = {
            k: v for k, v in os.environ.items() if not k.startswith(("SENSORGUARD_", "MLFLOW_"))
        }
        base.update(
            SENSORGUARD_HOME=str(home),
            SENSORGUARD_STORE_URL=store,
            SENSORGUARD_MQTT_URL=mqtt,
            SENSORGUARD_MQTT_TOPIC_ROOT="bench",
            SENSORGUARD_MQTT_CLIENT_ID="bench-watch-" + uuid.uuid4().hex[:6],
            SENSORGUARD_NOTIFY_MQTT="false",
            SENSORGUARD_LOG_LEVEL="warning",
            **env,
        )
        if Watch.src is not None:
            base["PYTHONPATH"] = str(Watch.src)
        # model None: the ingester alone (`sensorguard ingest-mqtt`)
        cmd = (
            ["watch", "--model", str(model), *Watch.extra] if model is not None else ["ingest-mqtt"]
        )
        ready = "watching with" if model is not None else "ingesting"
        self.p = subprocess.Popen(
            [str(BIN / "sensorguard"), *cmd, "--log-level", "warning", *args],
            stdout=self.fh,
            stderr=subprocess.STDOUT,
            env=base,
        )
        deadline = time.monotonic() + 60
        while ready not in self.log.read_text(errors="replace"):
            if self.p.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(self.log.read_text(errors="replace"))
            time.sleep(0.1)

    def cpu(self) -> float:
        return _cpu_seconds(self.p.pid)

    def profile(self, out: Path | None) -> subprocess.Popen[bytes] | None:
        """``py-spy record`` of this process (all threads, collapsed stacks) into ``out``;
        stopped by :meth:`stop`. py-spy is not a dependency: install it into the venv."""
        if out is None:
            return None
        self.spy = subprocess.Popen(
            [
                str(BIN / "py-spy"),
                "record",
                "--pid",
                str(self.p.pid),
                "--format",
                "raw",
                "--threads",
                "--nonblocking",
                "--rate",
                "200",
                "-o",
                str(out),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        return self.spy

    spy: subprocess.Popen[bytes] | None = None
    profile_to: Path | None = None  # --profile: where the latency run's profile goes

    def stop(self) -> None:
        if self.spy is not None:
            self.spy.send_signal(2)  # py-spy writes its file on SIGINT
            self.spy.wait(30)
            self.spy = None
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(30)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(10)
        self.fh.close()


def _start_publisher(
    url: str, msgs: list[tuple[str, int, bytes]], rate: float | None, batch: int
) -> tuple[Any, Any, Any]:
    ctx = mp.get_context("fork")
    q, go = ctx.Queue(), ctx.Event()
    proc = ctx.Process(target=publish, args=(url, msgs, rate, batch, q, go))
    proc.start()
    time.sleep(1.0)  # connected
    return proc, q, go


def run_throughput(
    broker: Any, model: Path, args: argparse.Namespace, every: int, tmp: Path, split: bool = False
) -> dict[str, Any]:
    """``split``: the ingester in its own process (``sensorguard ingest-mqtt``) and
    ``sensorguard watch --no-ingest``, so the two do not share one interpreter lock."""
    from support.pg import temp_database

    total = args.assets * args.readings
    # --throughput-faulty: the latency part's workload (faults from a third of the way on)
    f = args.throughput_faulty
    msgs = messages(args.assets, args.sensors, args.readings, args.batch, f, args.readings // 3)
    with temp_database("bench_watch") as (_n, url):
        extra = ("--no-ingest",) if split else ()
        ing = Watch(None, url, broker.url, tmp / "home") if split else None
        w = Watch(
            model,
            url,
            broker.url,
            tmp / "home",
            "--predictions-every",
            str(every),
            "--no-notify",
            *extra,
        )
        try:
            proc, q, go = _start_publisher(broker.url, msgs, None, args.batch)
            if Watch.profile_to is not None:
                w.profile(Watch.profile_to.with_suffix(f".throughput-{every}-{int(split)}.txt"))
            cpu0 = w.cpu() + (ing.cpu() if ing else 0.0)
            t0 = time.perf_counter()
            go.set()
            stored_at = None
            while True:
                scored, stored = _scored_and_stored(url)
                now = time.perf_counter() - t0
                if stored_at is None and stored >= total:
                    stored_at = now
                if scored >= total:
                    break
                if w.p.poll() is not None:  # died: say why instead of waiting 600 s
                    raise RuntimeError(w.log.read_text(errors="replace")[-4000:])
                if now > 600:
                    raise TimeoutError(f"scored {scored}/{total} after 600 s")
                time.sleep(0.1)
            wall = time.perf_counter() - t0
            cpu = w.cpu() + (ing.cpu() if ing else 0.0) - cpu0
            pub_s, _sent = q.get(timeout=60)
            proc.join(30)
        finally:
            w.stop()
            if ing is not None:
                ing.stop()
    return {
        "readings": total,
        "ingester_in_own_process": split,
        "predictions_every": every,
        "publish_s": round(pub_s, 2),
        "stored_s": round(stored_at or wall, 2),
        "scored_s": round(wall, 2),
        "readings_per_s": round(total / wall),
        "cpu_us_per_reading": round(cpu / total * 1e6, 1),
    }


def run_scoring_only(model: Path, args: argparse.Namespace, tmp: Path, mqtt: str) -> dict[str, Any]:
    import pandas as pd
    from support.pg import temp_database

    from sensorguard.store import ensure_schema, insert_frame

    total = args.assets * args.readings
    rng = np.random.default_rng(0)
    times = pd.date_range("2026-01-01", periods=args.readings, freq="s")
    with temp_database("bench_watch") as (_n, url):
        eng = ensure_schema(url)
        for a in range(args.assets):
            insert_frame(
                eng,
                f"a{a:03d}",
                times,
                rng.normal(50, 5, (args.readings, args.sensors)),
                _names(args.sensors),
            )
        out = {}
        for every in (1, 0):
            if every == 0:
                with eng.begin() as conn:
                    import sqlalchemy as sa

                    conn.execute(sa.text("DELETE FROM watch_checkpoints"))
                    conn.execute(sa.text("DELETE FROM predictions"))
            t0 = time.perf_counter()
            w = Watch(
                model,
                url,
                mqtt,
                tmp / "home",
                "--no-ingest",
                "--no-notify",
                "--predictions-every",
                str(every),
            )
            cpu0 = w.cpu()
            start = time.perf_counter()
            while _scored_and_stored(url)[0] < total:
                time.sleep(0.05)
            wall = time.perf_counter() - start
            cpu = w.cpu() - cpu0
            w.stop()
            out[f"predictions_every_{every}"] = {
                "readings_per_s": round(total / wall),
                "watch_cpu_us_per_reading": round(cpu / total * 1e6, 1),
                "startup_s": round(start - t0, 1),
            }
    return out


class _Hook(BaseHTTPRequestHandler):
    got: ClassVar[list[tuple[float, dict[str, Any]]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        _Hook.got.append((time.time(), orjson.loads(body)))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *a: Any) -> None:
        pass


def _faulty_assets(assets: int, faulty: int) -> list[str]:
    every = max(1, assets // max(faulty, 1))
    return [f"a{a:03d}" for a in range(0, assets, every)][:faulty]


class _StoredTimes:
    """When each asset's newest stored reading moved (polled every 20 ms on its own
    connection): the "stored" point between publish and alarm, to the poll's
    resolution."""

    def __init__(self, url: str, assets: list[str]) -> None:
        self.url, self.assets = url, assets
        self.log: dict[str, list[tuple[float, float]]] = {a: [] for a in assets}
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        import sqlalchemy as sa

        eng = sa.create_engine(self.url.replace("postgresql://", "postgresql+psycopg2://", 1))
        last: dict[str, float] = {}
        with eng.connect() as conn:
            while not self._stop.wait(0.02):
                rows = conn.execute(
                    sa.text(
                        "SELECT asset_id, extract(epoch FROM max(time)) FROM readings "
                        "WHERE asset_id = ANY(:a) GROUP BY asset_id"
                    ),
                    {"a": self.assets},
                ).all()
                conn.commit()
                now = time.time()
                for asset, newest in rows:
                    if newest is not None and float(newest) != last.get(asset):
                        last[asset] = float(newest)
                        self.log[asset].append((now, float(newest)))
        eng.dispose()

    def stored_at(self, asset: str, reading_epoch: float) -> float | None:
        for at, newest in self.log.get(asset, []):
            if newest >= reading_epoch:
                return at
        return None

    def stop(self) -> None:
        self._stop.set()
        self._t.join(10)


def _epoch(iso_time: str) -> float:
    from datetime import UTC, datetime

    d = datetime.fromisoformat(iso_time.replace("Z", "+00:00"))
    return (d if d.tzinfo else d.replace(tzinfo=UTC)).timestamp()


def _stages(trace: Path, crossings: list[tuple[float, float, dict[str, Any]]]) -> dict[str, Any]:
    """Where the latency of each crossing reading went, from the watch process's stage
    trace (``SENSORGUARD_WATCH_TRACE``, :class:`~sensorguard.live.watch_metrics.StageTrace`):
    publish -> taken by the ingester -> committed -> the watch pass that scored it
    starts -> read -> scored -> written -> committed -> the notifier picks it up -> sent
    -> the webhook arrives. p50 / p99 / max of each stage in seconds, and the size of
    the passes."""
    if not trace.exists():
        return {}
    ev = [orjson.loads(line) for line in trace.read_bytes().splitlines() if line.strip()]
    stored = [e for e in ev if e["k"] == "stored"]
    for e in stored:
        e["last"] = {a: _epoch(v) for a, v in e["last"].items()}
    passes = [e for e in ev if e["k"] == "pass"]
    by_key = {k: p for p in passes for k in p["keys"]}
    sent = {e["key"]: e for e in ev if e["k"] == "sent"}
    names = [
        "publish_to_taken",
        "taken_to_stored",
        "stored_to_pass_start",
        "pass_read",
        "pass_score",
        "pass_write",
        "pass_commit",
        "commit_to_notifier_pickup",
        "pickup_to_sent",
        "sent_to_webhook",
    ]
    rows: dict[str, list[float]] = {n: [] for n in names}
    crossing_pass: list[tuple[int, int, float]] = []
    for pub, arrived, body in crossings:
        asset, start = body["asset_id"], _epoch(body["event"]["start_time"])
        st = next((e for e in stored if e["last"].get(asset, -1) >= start), None)
        p, s = by_key.get(body["id"]), sent.get(body["id"])
        if st is None or p is None or s is None:
            continue
        marks = [
            pub,
            st["taken"],
            st["t"],
            p["t0"],
            p["read"],
            p["scored"],
            p["written"],
            p["commit"],
            s["picked"],
            s["sent"],
            arrived,
        ]
        for n, a, b in zip(names, marks, marks[1:], strict=False):
            rows[n].append(b - a)
        crossing_pass.append((p["assets"], p["rows"], p["commit"] - p["t0"]))

    def pct(v: list[float]) -> list[float]:
        if not v:
            return []
        a = np.array(v)
        return [round(float(np.percentile(a, q)), 3) for q in (50, 99)] + [round(float(a.max()), 3)]

    dur = [p["commit"] - p["t0"] for p in passes if p["rows"]]
    # the write phase of every pass with readings, split (state dicts, checkpoints,
    # predictions, alarms + outbox), summed over the run
    write_split = {
        k: round(sum(p[b] - p[a] for p in passes if p["rows"] and b in p), 2)
        for k, a, b in (
            ("state", "scored", "state"),
            ("checkpoints", "state", "checkpoints"),
            ("predictions", "checkpoints", "predictions"),
            ("alarms_outbox", "predictions", "written"),
            ("read", "t0", "read"),
            ("score", "read", "scored"),
            ("commit", "written", "commit"),
        )
    }
    return {
        "alarms_traced": len(crossing_pass),
        "p50_p99_max_s": {n: pct(v) for n, v in rows.items()},
        "crossing_pass_assets_rows_seconds": crossing_pass,
        "passes": len(passes),
        "pass_phases_total_s": write_split,
        "pass_seconds_p50_p99_max": pct(dur),
        "pass_rows_p50_p99_max": pct([float(p["rows"]) for p in passes if p["rows"]]),
        "pass_assets_p50_p99_max": pct([float(p["assets"]) for p in passes if p["rows"]]),
    }


def run_latency(
    broker: Any,
    model: Path,
    args: argparse.Namespace,
    rate: float,
    tmp: Path,
    split: bool = False,
) -> dict[str, Any]:
    """``split``: the ingester in its own process, as in :func:`run_throughput`."""
    from support.pg import temp_database

    per_asset = max(60, int(args.latency_s * rate / args.assets))
    batch = args.latency_batch
    fault_at = per_asset // 3
    msgs = messages(
        args.assets, args.sensors, per_asset, batch, faulty=args.faulty, fault_at=fault_at
    )
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    hook = f"http://127.0.0.1:{server.server_address[1]}/hook"
    _Hook.got = []
    trace = tmp / f"trace-{uuid.uuid4().hex[:6]}.jsonl"
    with temp_database("bench_watch") as (_n, url):
        ing = Watch(None, url, broker.url, tmp / "home") if split else None
        w = Watch(
            model,
            url,
            broker.url,
            tmp / "home",
            "--predictions-every",
            str(args.latency_predictions_every),
            *(("--no-ingest",) if split else ()),
            SENSORGUARD_WEBHOOK_URLS=hook,
            SENSORGUARD_WATCH_TRACE=str(trace),
        )
        try:
            proc, q, go = _start_publisher(broker.url, msgs, rate, batch)
            w.profile(Watch.profile_to)
            if ing is not None and Watch.profile_to is not None:
                ing.profile(Watch.profile_to.with_suffix(".ingest.txt"))
            seen = _StoredTimes(url, _faulty_assets(args.assets, args.faulty))
            cpu0, wall0 = w.cpu() + (ing.cpu() if ing else 0.0), time.perf_counter()
            go.set()
            _pub_s, sent = q.get(timeout=args.latency_s * 4 + 120)
            cpu_share = (w.cpu() + (ing.cpu() if ing else 0.0) - cpu0) / (
                time.perf_counter() - wall0
            )
            proc.join(30)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                if (
                    len(
                        [
                            1
                            for _t, b in _Hook.got
                            if b.get("transition") == "opened" and b.get("kind") == "failure"
                        ]
                    )
                    >= args.faulty
                ):
                    break
                time.sleep(0.2)
        finally:
            seen.stop()
            w.stop()
            if ing is not None:
                ing.stop()
            server.shutdown()
    # the message holding each asset's alarm start reading
    sent_at: dict[tuple[str, int], float] = {
        (a, lo): t for (a, lo, _p), t in zip(msgs, sent, strict=True)
    }
    lat, queued, stored = [], [], []
    crossings: list[tuple[float, float, dict[str, Any]]] = []
    for arrived, body in _Hook.got:
        if body.get("transition") != "opened" or body.get("kind") != "failure":
            continue
        ev = body["event"]
        start = (
            int(
                time.mktime(time.strptime(ev["start_time"][:19], "%Y-%m-%dT%H:%M:%S"))
                - time.timezone
            )
            - START
        )
        lo = (start // batch) * batch
        t = sent_at.get((body["asset_id"], lo))
        if t is not None:
            crossings.append((t, arrived, body))
            lat.append(arrived - t)
            # created_at: when the watch step that opened the alarm wrote it (its commit)
            created = body["created_at"].replace("Z", "+00:00")
            from datetime import datetime

            queued.append(datetime.fromisoformat(created).timestamp() - t)
            at = seen.stored_at(body["asset_id"], START + start)
            stored.append(np.nan if at is None else at - t)
    arr = np.array(lat) if lat else np.array([np.nan])
    qa = np.array(queued) if queued else np.array([np.nan])
    sa_ = np.array(stored) if stored else np.array([np.nan])
    return {
        "ingester_in_own_process": split,
        "rate_readings_per_s": round(rate),
        "watch_cpu_cores_while_publishing": round(cpu_share, 2),
        "readings_per_message": batch,
        "predictions_every": args.latency_predictions_every,
        "alarms": len(lat),
        "faulty_assets": args.faulty,
        "latency_p50_s": round(float(np.nanpercentile(arr, 50)), 3),
        "latency_p90_s": round(float(np.nanpercentile(arr, 90)), 3),
        "latency_p99_s": round(float(np.nanpercentile(arr, 99)), 3),
        "latency_max_s": round(float(np.nanmax(arr)), 3),
        "publish_to_stored_p50_s": round(float(np.nanpercentile(sa_, 50)), 3),
        "publish_to_stored_p99_s": round(float(np.nanpercentile(sa_, 99)), 3),
        "stored_to_alarm_written_p50_s": round(float(np.nanpercentile(qa - sa_, 50)), 3),
        "stored_to_alarm_written_p99_s": round(float(np.nanpercentile(qa - sa_, 99)), 3),
        "publish_to_alarm_written_p50_s": round(float(np.nanpercentile(qa, 50)), 3),
        "publish_to_alarm_written_p99_s": round(float(np.nanpercentile(qa, 99)), 3),
        "alarm_written_to_webhook_p50_s": round(float(np.nanpercentile(arr - qa, 50)), 3),
        "alarm_written_to_webhook_p99_s": round(float(np.nanpercentile(arr - qa, 99)), 3),
        "stages": _stages(trace, crossings),
    }


def _client(base: str, sensors: int, seconds: float, q: Any) -> None:
    import httpx

    rng = np.random.default_rng(os.getpid())
    names = _names(sensors)
    n = 0
    with httpx.Client(base_url=base, timeout=10) as c:
        t_end = time.perf_counter() + seconds
        while time.perf_counter() < t_end:
            rec = {
                "asset_id": f"a{n % 100:03d}",
                **dict(zip(names, rng.normal(50, 5, sensors).tolist(), strict=True)),
            }
            r = c.post(
                "/v1/predict",
                content=orjson.dumps({"readings": [rec]}),
                headers={"content-type": "application/json"},
            )
            assert r.status_code == 200, r.text
            n += 1
    q.put(n)


def run_predict_client(model_det: Any, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """``sensorguard serve`` on a temporary embedded registry; clients post one reading
    per request."""
    import pandas as pd

    home = tmp / "serve-home"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SENSORGUARD_", "MLFLOW_"))}
    env["SENSORGUARD_HOME"] = str(home)
    os.environ["SENSORGUARD_HOME"] = str(home)
    from sensorguard.config import get_settings

    get_settings.cache_clear()
    settings = get_settings()
    import mlflow

    from sensorguard.registry import (
        configure_mlflow,
        ensure_experiment,
        get_client,
        log_detector_model,
        register_model_version,
    )

    configure_mlflow(settings)
    exp = ensure_experiment(settings.experiment, settings)
    example = pd.DataFrame(
        np.random.default_rng(2).normal(50, 5, (5, args.sensors)), columns=_names(args.sensors)
    )
    with mlflow.start_run(experiment_id=exp) as run:
        info = log_detector_model(model_det, example)
    mv = register_model_version(
        info.model_uri, run.info.run_id, settings.model_name, tags={}, settings=settings
    )
    get_client(settings).set_registered_model_alias(settings.model_name, "production", mv.version)
    log = open(tmp / "serve.log", "wb")  # noqa: SIM115
    p = subprocess.Popen(
        [str(BIN / "sensorguard"), "serve", "--port", "0"],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    try:
        base = None
        deadline = time.monotonic() + 60
        while base is None and time.monotonic() < deadline:
            m = re.search(
                r"on (http://127\.0\.0\.1:\d+)", (tmp / "serve.log").read_text(errors="replace")
            )
            base = m.group(1) if m else None
            time.sleep(0.2)
        assert base, (tmp / "serve.log").read_text()
        import httpx

        while httpx.get(f"{base}/readyz").status_code != 200:
            time.sleep(0.2)
        ctx = mp.get_context("fork")
        q = ctx.Queue()
        cpu0 = _cpu_seconds(p.pid)
        procs = [
            ctx.Process(target=_client, args=(base, args.sensors, args.predict_s, q))
            for _ in range(args.clients)
        ]
        t0 = time.perf_counter()
        for pr in procs:
            pr.start()
        n = sum(q.get(timeout=args.predict_s + 60) for _ in procs)
        wall = time.perf_counter() - t0
        for pr in procs:
            pr.join(10)
        cpu = _cpu_seconds(p.pid) - cpu0
    finally:
        p.terminate()
        p.wait(20)
        log.close()
    return {
        "clients": args.clients,
        "readings": n,
        "readings_per_s": round(n / wall),
        "server_cpu_us_per_reading": round(cpu / max(n, 1) * 1e6, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--assets", type=int, default=100)
    ap.add_argument("--sensors", type=int, default=10)
    ap.add_argument("--readings", type=int, default=1000, help="readings per asset (throughput)")
    ap.add_argument("--batch", type=int, default=100, help="readings per message (throughput)")
    ap.add_argument("--latency-s", type=float, default=30.0, help="seconds of paced publishing")
    ap.add_argument("--latency-batch", type=int, default=10, help="readings per message (latency)")
    ap.add_argument("--faulty", type=int, default=20, help="assets with a fault (latency)")
    ap.add_argument(
        "--latency-predictions-every",
        type=int,
        default=1,
        help="latency: the watch process's --predictions-every (1 = all, 0 = none) [1]",
    )
    ap.add_argument(
        "--throughput-faulty",
        type=int,
        default=0,
        help="throughput: assets with a fault from a third of their readings on, as in the "
        "latency part (its sustained rate with that many assets in alarm) [0]",
    )
    ap.add_argument("--clients", type=int, default=2, help="POST /v1/predict client processes")
    ap.add_argument("--predict-s", type=float, default=10.0)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument(
        "--only",
        default="all",
        help="comma-separated parts: throughput, apart, scoring, latency, predict [all]",
    )
    ap.add_argument(
        "--rate",
        type=float,
        default=None,
        help="latency: readings/s to publish at [default: half the in-process throughput]",
    )
    ap.add_argument(
        "--rounds", type=int, default=1, help="latency: repeat the latency run this many times"
    )
    ap.add_argument(
        "--src",
        type=Path,
        default=None,
        help="run the watch process from this source tree (a before/after comparison)",
    )
    ap.add_argument(
        "--latency-apart",
        action="store_true",
        help="latency: the ingester in its own process (ingest-mqtt + watch --no-ingest)",
    )
    ap.add_argument(
        "--watch-args",
        default="",
        help="more options for every `sensorguard watch` process, e.g. '--pass-assets 25'",
    )
    ap.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="latency: py-spy profile (collapsed stacks) of the watch process to this file",
    )
    args = ap.parse_args()
    parts = set(args.only.split(",")) if args.only != "all" else None

    def want(part: str) -> bool:
        return parts is None or part in parts

    if args.src is not None:
        Watch.src = args.src.resolve()
    Watch.profile_to = args.profile
    Watch.extra = tuple(shlex.split(args.watch_args))

    from bench_live_ingest import Broker
    from support.pg import pg_available

    if not pg_available() or shutil.which("mosquitto") is None:
        raise SystemExit("needs PostgreSQL at 127.0.0.1:5432 and the mosquitto binary")
    tmp = Path(tempfile.mkdtemp(prefix="sg-bench-live-"))
    results: dict[str, Any] = {
        "load_average_1min_at_start": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
    }
    det = fit_model(tmp / "model", args.sensors)
    broker = Broker()
    try:
        if want("throughput"):
            results["end_to_end_all_predictions"] = run_throughput(
                broker, tmp / "model", args, 1, tmp
            )
            print(json.dumps(results, indent=2), flush=True)
            results["end_to_end_no_predictions"] = run_throughput(
                broker, tmp / "model", args, 0, tmp
            )
        if want("apart"):
            results["end_to_end_ingester_apart"] = run_throughput(
                broker, tmp / "model", args, 1, tmp, split=True
            )
            print(json.dumps(results, indent=2), flush=True)
        if want("scoring"):
            results["watch_loop_only"] = run_scoring_only(tmp / "model", args, tmp, broker.url)
            print(json.dumps(results, indent=2), flush=True)
        if want("latency"):
            rate = args.rate
            if rate is None:
                if "end_to_end_all_predictions" not in results:
                    raise SystemExit("--only latency needs --rate (or the throughput part)")
                rate = results["end_to_end_all_predictions"]["readings_per_s"] / 2
            runs = []
            for _ in range(args.rounds):
                runs.append(
                    run_latency(broker, tmp / "model", args, rate, tmp, split=args.latency_apart)
                )
                runs[-1]["load_average_1min"] = round(os.getloadavg()[0], 2)
                print(json.dumps(runs[-1], indent=2), flush=True)
            results["latency_at_half_rate"] = runs[0] if len(runs) == 1 else runs
    finally:
        broker.close()
    if want("predict"):
        results["predict_per_reading_client"] = run_predict_client(det, args, tmp)
        if "end_to_end_all_predictions" in results:
            e2e = results["end_to_end_all_predictions"]["readings_per_s"]
            results["ratio_vs_predict_client"] = round(
                e2e / results["predict_per_reading_client"]["readings_per_s"], 1
            )
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
