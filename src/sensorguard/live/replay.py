"""Replay a readings file as a live stream: to MQTT, or to ``POST /v1/readings``.

Rules of this room:

* The file is read with the data contract (:func:`~sensorguard.data.load_readings`),
  so what replays is what ``validate`` accepts; each asset's readings go to its own
  topic ``<root>/<asset_id>/readings`` (or carry its ``asset_id`` over HTTP), oldest
  first, in messages of ``batch`` readings in the ``POST /v1/readings`` shape. The label
  column, when there is one, travels as ``machine_status``.
* ``speed=None`` publishes as fast as the broker takes it; ``speed=60`` plays one hour
  of readings per minute (a reading is sent when its time, scaled, is due).
* MQTT publishes are QoS 1 and :func:`replay` returns only when the broker has
  acknowledged every message (PUBACK); an unacknowledged message is an error, not a
  silent loss. Over HTTP every batch must be answered 200.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from sensorguard.errors import SensorGuardError
from sensorguard.live.mqtt import (
    AckTracker,
    MqttError,
    MqttSettings,
    check_asset_for_topic,
    connect,
    disconnect,
    make_client,
    readings_topic,
)

if TYPE_CHECKING:
    from sensorguard.data import Readings

DEFAULT_BATCH = 500
MAX_UNACKED = 1000  # flow control: wait for PUBACKs beyond this many messages in flight
_MAX_SLEEP = 1.0  # seconds; a paced replay re-checks what is due at least this often


@dataclass
class ReplayResult:
    readings: int = 0
    messages: int = 0
    assets: list[str] = field(default_factory=list)
    seconds: float = 0.0
    target: str = ""
    inserted: int | None = None  # HTTP only: what the service stored
    duplicates: int | None = None

    @property
    def readings_per_second(self) -> float:
        return self.readings / self.seconds if self.seconds > 0 else float("nan")

    def as_dict(self) -> dict[str, Any]:
        return {
            "readings": self.readings,
            "messages": self.messages,
            "assets": self.assets,
            "seconds": round(self.seconds, 3),
            "readings_per_second": round(self.readings_per_second, 1),
            "target": self.target,
            "inserted": self.inserted,
            "duplicates": self.duplicates,
        }


@dataclass
class _Stream:
    asset: str
    times_s: np.ndarray  # seconds since the first reading of the file
    stamps: list[str]
    values: list[list[float]]
    status: list[str | None] | None
    sensors: list[str]
    pos: int = 0

    def payload(self, lo: int, hi: int) -> bytes:
        sensors = self.sensors
        recs = []
        for i in range(lo, hi):
            rec: dict[str, Any] = {"timestamp": self.stamps[i]}
            rec.update(zip(sensors, self.values[i], strict=True))  # NaN -> null (orjson)
            if self.status is not None and self.status[i] is not None:
                rec["machine_status"] = self.status[i]
            recs.append(rec)
        return orjson.dumps({"asset_id": self.asset, "readings": recs})


def _streams(readings: Readings, asset: str | None) -> list[_Stream]:
    times = readings.times.to_numpy().astype("datetime64[us]")
    if len(times) == 0:
        raise SensorGuardError(f"{readings.source} holds no readings", "replay a non-empty file")
    t0 = times.min()
    seconds = (times - t0).astype(np.int64) / 1e6
    stamps = np.char.add(np.datetime_as_string(times, unit="us"), "Z")
    X = readings.X.to_numpy(dtype=np.float64)
    status = None
    if readings.status is not None:
        raw = readings.status.to_numpy(dtype=object)
        status = [None if (s is None or s != s) else str(s) for s in raw]
    if asset is not None:
        blocks = [(check_asset_for_topic(asset), np.arange(len(readings)))]
    elif readings.asset is not None:
        keys = readings.asset.astype(str).to_numpy()
        blocks = [(check_asset_for_topic(a), np.flatnonzero(keys == a)) for a in readings.assets]
    else:
        raise SensorGuardError(
            f"{readings.source}: no asset column and no asset given",
            "pass --asset ID, or add an asset_id column",
        )
    out = []
    for name, pos in blocks:
        order = pos[np.argsort(seconds[pos], kind="stable")]
        out.append(
            _Stream(
                asset=name,
                times_s=seconds[order],
                stamps=stamps[order].tolist(),
                values=X[order].tolist(),
                status=[status[i] for i in order] if status is not None else None,
                sensors=list(readings.sensors),
            )
        )
    return out


def _chunks(
    streams: list[_Stream], batch: int, speed: float | None
) -> Iterator[tuple[_Stream, int, int]]:
    """``(stream, lo, hi)`` in publishing order, paced when ``speed`` is given."""
    if speed is None:
        # round-robin over the assets, so a consumer sees every asset progress together
        while any(s.pos < len(s.times_s) for s in streams):
            for s in streams:
                if s.pos < len(s.times_s):
                    lo, s.pos = s.pos, min(s.pos + batch, len(s.times_s))
                    yield s, lo, s.pos
        return
    started = time.monotonic()
    while True:
        due = (time.monotonic() - started) * speed
        pending = False
        for s in streams:
            end = int(np.searchsorted(s.times_s, due, side="right"))
            while s.pos < end:
                lo, s.pos = s.pos, min(s.pos + batch, end)
                yield s, lo, s.pos
            pending = pending or s.pos < len(s.times_s)
        if not pending:
            return
        nxt = min(s.times_s[s.pos] for s in streams if s.pos < len(s.times_s))
        wait = nxt / speed - (time.monotonic() - started)
        if wait > 0:
            time.sleep(min(wait, _MAX_SLEEP))


def replay(
    readings: Readings,
    asset: str | None = None,
    *,
    speed: float | None = None,
    batch: int = DEFAULT_BATCH,
    mqtt_url: str | None = None,
    topic_root: str | None = None,
    http_url: str | None = None,
    token: str | None = None,
    timeout: float = 60.0,
    on_progress: Callable[[int, int], None] | None = None,
) -> ReplayResult:
    """Publish ``readings`` (see the module rules); ``on_progress(done, total)`` counts
    readings acknowledged (MQTT) or stored (HTTP)."""
    if speed is not None and not speed > 0:
        raise SensorGuardError(f"speed must be positive, got {speed}", "e.g. --speed 60")
    if batch < 1:
        raise SensorGuardError(f"batch must be at least 1, got {batch}", "e.g. --batch 500")
    streams = _streams(readings, asset)
    total = sum(len(s.times_s) for s in streams)
    result = ReplayResult(readings=total, assets=[s.asset for s in streams])
    started = time.perf_counter()
    if http_url is not None:
        _replay_http(streams, batch, speed, http_url, token, timeout, result, on_progress, total)
    else:
        _replay_mqtt(
            streams, batch, speed, mqtt_url, topic_root, timeout, result, on_progress, total
        )
    result.seconds = time.perf_counter() - started
    return result


def replay_file(path: str | Path, asset: str | None = None, **options: Any) -> ReplayResult:
    """Load ``path`` with the data contract and :func:`replay` it. Loader options
    (``sep``, ``time_column``, ``asset_column``, ...) are passed to ``load_readings``."""
    from sensorguard.data import load_readings

    load_keys = {
        "sep",
        "time_column",
        "label_column",
        "asset_column",
        "ignore_columns",
        "duplicates",
    }
    load_options = {k: options.pop(k) for k in list(options) if k in load_keys}
    return replay(load_readings(path, **load_options), asset, **options)


def _replay_mqtt(
    streams: list[_Stream],
    batch: int,
    speed: float | None,
    mqtt_url: str | None,
    topic_root: str | None,
    timeout: float,
    result: ReplayResult,
    on_progress: Callable[[int, int], None] | None,
    total: int,
) -> None:
    settings = MqttSettings.from_url(mqtt_url)
    result.target = settings.display
    client = make_client(f"sensorguard-replay-{uuid.uuid4().hex[:12]}", settings)
    acks = AckTracker()
    acks.install(client)
    cum: list[int] = []  # readings published up to each message, in publishing order
    connect(client, settings, persistent=False)
    try:
        topics = {s.asset: readings_topic(s.asset, topic_root) for s in streams}
        for s, lo, hi in _chunks(streams, batch, speed):
            if acks.sent - acks.acked >= MAX_UNACKED and not acks.wait(
                timeout, below=MAX_UNACKED // 2
            ):
                raise MqttError(
                    f"the broker at {settings.display} stopped acknowledging "
                    f"({acks.sent - acks.acked} messages waiting for {timeout:g} s)",
                    "check the broker; nothing unacknowledged was counted as sent",
                )
            acks.publish(client, topics[s.asset], s.payload(lo, hi))
            cum.append((cum[-1] if cum else 0) + hi - lo)
            if on_progress is not None:
                on_progress(_acked_readings(cum, acks.acked), total)
        deadline = time.monotonic() + timeout
        while not acks.wait(0.2):
            if on_progress is not None:
                on_progress(_acked_readings(cum, acks.acked), total)
            if time.monotonic() > deadline:
                raise MqttError(
                    f"{acks.sent - acks.acked} of {acks.sent} messages were not acknowledged "
                    f"by {settings.display} within {timeout:g} s",
                    "check the broker; re-running the replay is safe (the store is idempotent)",
                )
        if acks.failed:
            raise MqttError(
                f"the broker refused {acks.failed} of {acks.sent} messages",
                "check the broker's access rules for the readings topics",
            )
        result.messages = acks.sent
        if on_progress is not None:
            on_progress(total, total)
    finally:
        disconnect(client)


def _acked_readings(cum: list[int], acked: int) -> int:
    # PUBACKs of one connection come back in publishing order (MQTT 4.6)
    return cum[min(acked, len(cum)) - 1] if acked > 0 and cum else 0


def _replay_http(
    streams: list[_Stream],
    batch: int,
    speed: float | None,
    url: str,
    token: str | None,
    timeout: float,
    result: ReplayResult,
    on_progress: Callable[[int, int], None] | None,
    total: int,
) -> None:
    import httpx

    if token is None:
        from sensorguard.config import get_settings

        token = get_settings().api_token
    endpoint = url.rstrip("/")
    if not endpoint.endswith("/v1/readings"):
        endpoint += "/v1/readings"
    result.target = endpoint
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    done = inserted = duplicates = 0
    with httpx.Client(timeout=timeout) as http:
        for s, lo, hi in _chunks(streams, batch, speed):
            try:
                resp = http.post(endpoint, content=s.payload(lo, hi), headers=headers)
            except httpx.HTTPError as exc:
                raise SensorGuardError(
                    f"cannot post readings to {endpoint}: {exc}",
                    f"start the predictor (sensorguard serve); {done} readings were stored "
                    "so far, and re-running is safe",
                ) from None
            if resp.status_code != 200:
                try:
                    err = resp.json().get("error", {})
                    message = err.get("message") or resp.text
                except ValueError:
                    message = resp.text[:200]
                raise SensorGuardError(
                    f"{endpoint} answered {resp.status_code}: {message}",
                    f"{done} readings were stored before this batch",
                )
            body = resp.json()
            inserted += int(body.get("inserted", 0))
            duplicates += int(body.get("duplicates", 0))
            done += hi - lo
            result.messages += 1
            if on_progress is not None:
                on_progress(done, total)
    result.inserted, result.duplicates = inserted, duplicates
