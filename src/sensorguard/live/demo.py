"""The live part of the demo (``sensorguard demo --live``): alarms open and close as
simulated readings stream in.

Rules of this room:

* The embedded default runs no servers, so the demo needs neither PostgreSQL nor
  Mosquitto: it streams through the same path as the services, in one process. Each
  chunk of simulated readings is a ``POST /v1/readings`` / MQTT payload, validated by
  the shared parser (``store.payload``) and stored in the SQLite readings store in one
  transaction, exactly as the ingester does; then the watch loop (:class:`Watcher`,
  the code of ``sensorguard watch``) scores what is new and writes alarm events,
  checkpoints and outbox rows. Only the MQTT transport is left out; with a broker, the
  same run is ``sensorguard watch`` plus ``sensorguard replay FILE``.
* The model is the production version (``models:/<name>@production``), which the main
  demo has just promoted.
* The stream continues the demo asset's history (``pump-live``): a second run appends
  new days after the last stored reading, so its alarms are new ones.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import numpy as np
import orjson
import pandas as pd

from sensorguard.config import Settings, get_settings
from sensorguard.errors import SensorGuardError
from sensorguard.live.events import FAILURE, Transition

DEMO_ASSET = "pump-live"


@dataclass
class LiveDemoReport:
    asset: str
    readings: int
    model: str
    store_url: str
    transitions: list[Transition] = field(default_factory=list)
    failures_injected: int = 0
    failures_caught: int = 0
    seconds: float = 0.0

    @property
    def failure_events(self) -> int:
        return sum(1 for t in self.transitions if t.kind == FAILURE and t.action == "opened")


def _payload(chunk: pd.DataFrame, sensors: list[str], asset: str) -> bytes:
    """A readings payload (the JSON of ``POST /v1/readings`` and the MQTT topic)."""
    times = pd.to_datetime(chunk["timestamp"]).dt.strftime("%Y-%m-%dT%H:%M:%SZ").tolist()
    values = chunk[sensors].to_numpy(dtype=np.float64)
    rows = [
        {
            "timestamp": t,
            **{s: (None if np.isnan(v) else float(v)) for s, v in zip(sensors, row, strict=True)},
        }
        for t, row in zip(times, values.tolist(), strict=True)
    ]
    return orjson.dumps({"asset_id": asset, "readings": rows})


def run_live_demo(
    settings: Settings | None = None,
    *,
    days: float = 1.5,
    seed: int = 11,
    chunk: int = 60,
    pause: float = 0.0,
    asset: str = DEMO_ASSET,
    model: str | None = None,
    on_transition: Callable[[Transition], None] | None = None,
) -> LiveDemoReport:
    """Stream ``days`` of simulated readings with failures through the live path,
    ``chunk`` readings at a time (``pause`` seconds between chunks), calling
    ``on_transition`` for every alarm transition as it is committed. ``model``: a
    model reference (default: the production alias)."""
    import sqlalchemy as sa

    from sensorguard.data.simulator import simulate_pump
    from sensorguard.live.watch import WatchConfig, Watcher
    from sensorguard.store import ensure_schema
    from sensorguard.store.payload import parse_readings_payload, store_groups
    from sensorguard.store.schema import readings

    settings = settings or get_settings()
    started = time.perf_counter()
    url = settings.resolved_store_url
    engine = ensure_schema(url)
    with engine.connect() as conn:
        last = conn.execute(
            sa.select(sa.func.max(readings.c.time)).where(readings.c.asset_id == asset)
        ).scalar_one()
    start = (
        pd.Timestamp("2026-02-01") if last is None else pd.Timestamp(last) + timedelta(minutes=1)
    )
    frame = simulate_pump(days=days, seed=seed, start=start, asset_id=asset, n_failures=2)
    injected = list(frame.attrs.get("failures", []))

    config = WatchConfig.from_settings(
        settings, assets=[asset], late_check_s=3600.0, model_ref=model
    )
    seen: list[Transition] = []

    def forward(ts: list[Transition]) -> None:
        seen.extend(ts)
        if on_transition is not None:
            for t in ts:
                on_transition(t)

    watcher = Watcher(config, settings=settings, on_transitions=forward)
    watcher.check_model(force=True)
    name, m = watcher.model_for(asset)  # routed by the asset registry, as the service does
    if m is None:
        why = watcher.model_errors.get(str(name), "not loaded")
        raise SensorGuardError(
            f"no model to score {asset} with: model {name}: {why}",
            "train and promote one first (./sg demo does)",
        )
    sensors = [s for s in m.sensors if s in frame.columns]
    for lo in range(0, len(frame), max(1, chunk)):
        body = _payload(frame.iloc[lo : lo + chunk], sensors, asset)
        groups = parse_readings_payload(body, max(settings.max_batch, chunk))
        with engine.begin() as conn:
            store_groups(conn, groups)
        while watcher.step().readings:
            pass
        if pause:
            time.sleep(pause)
    watcher.leases.release_all()
    caught = 0
    opened = [t for t in seen if t.kind == FAILURE and t.action == "opened"]
    for f in injected:
        fs, fe = pd.Timestamp(f["start"]), pd.Timestamp(f.get("recovered") or f["end"])
        if any(fs - timedelta(hours=1) <= pd.Timestamp(t.start) <= fe for t in opened):
            caught += 1
    return LiveDemoReport(
        asset=asset,
        readings=len(frame),
        model=f"{m.name} v{m.version}",
        store_url=url,
        transitions=seen,
        failures_injected=len(injected),
        failures_caught=caught,
        seconds=time.perf_counter() - started,
    )


def describe(t: Transition) -> dict[str, Any]:
    """A transition as the terminal shows it."""
    a = t.alarm
    return {
        "transition": t.name,
        "kind": t.kind,
        "sensor": t.sensor,
        "start": a["start_time"],
        "end": a.get("end_time"),
        "top_sensors": a.get("top_sensors") or [],
        "peak_score": a.get("peak_score"),
        "failure_type": a.get("failure_type"),
        "model_version": a.get("model_version"),
        "reason": a.get("close_reason"),
    }
