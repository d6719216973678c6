"""The watch loop's Prometheus metrics: what a step did, and where each asset stands.

Rules of this room: metrics only observe. :meth:`WatchMetrics.observe` reads the
watcher after each step (it never changes it), on the registry shared with the
ingester and the notifier (:class:`~sensorguard.live.metrics.LiveMetrics`).
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

from sensorguard.live.events import FAILURE
from sensorguard.timeutil import utc_now


class WatchMetrics:
    """The watch loop's Prometheus metrics, on the live metrics registry.

    ``lag`` is event-time lag: wall-clock now minus the time of the asset's newest
    scored reading (readings carry the sensors' clock), so it also shows a sensor that
    stopped sending; replaying old history shows how far behind real time it is."""

    def __init__(self, live: Any = None) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        from sensorguard.live.metrics import LiveMetrics

        self.live = live or LiveMetrics()
        r = self.live.registry
        self.scored = Counter(
            "sensorguard_watch_readings_scored",
            "Readings scored by the watch loop; rate() of it is readings/s.",
            registry=r,
        )
        self.lag = Gauge(
            "sensorguard_watch_lag_seconds",
            "Now minus the time of the newest scored reading, per asset.",
            ["asset"],
            registry=r,
        )
        self.open = Gauge(
            "sensorguard_watch_alarms_open",
            "Open alarms of the assets this process scores, by kind.",
            ["kind"],
            registry=r,
        )
        self.transitions = Counter(
            "sensorguard_watch_alarm_transitions",
            "Alarm transitions written, by kind and transition (opened, updated, closed).",
            ["kind", "transition"],
            registry=r,
        )
        self.late = Counter(
            "sensorguard_watch_late_readings",
            "Readings stored too late to be scored (older than the asset's last scored one).",
            registry=r,
        )
        self.fenced = Counter(
            "sensorguard_watch_fenced_steps",
            "Steps rolled back because another process had moved the asset's checkpoint.",
            registry=r,
        )
        self.owned = Gauge(
            "sensorguard_watch_assets", "Assets whose lease this process holds.", registry=r
        )
        self.workers = Gauge(
            "sensorguard_watch_workers", "Live watch processes sharing the assets.", registry=r
        )
        self.version = Gauge(
            "sensorguard_watch_model_version",
            "Version of the default model scoring (0 for a local folder).",
            registry=r,
        )
        self.type_version = Gauge(
            "sensorguard_watch_machine_type_version",
            "Production version scoring each machine type's registered assets (routing).",
            ["model"],
            registry=r,
        )
        self.not_scored = Gauge(
            "sensorguard_watch_assets_not_scored",
            "Assets not scored because their model has no production version to load.",
            ["model"],
            registry=r,
        )
        self.step_seconds = Histogram(
            "sensorguard_watch_step_seconds",
            "Time of one pass over the owned assets.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=r,
        )
        self._kinds: set[str] = set()
        self._assets: set[str] = set()
        self._waiting: set[str] = set()
        self._t = time.perf_counter()

    def set_model(self, name: str, version: str, default: bool = True) -> None:
        v = float(version) if str(version).isdigit() else 0.0
        (self.version if default else self.type_version.labels(name)).set(v)

    def drop_model(self, name: str) -> None:
        """A machine type no registered asset uses any more."""
        with contextlib.suppress(KeyError):
            self.type_version.remove(name)

    def observe(self, watcher: Any, stats: Any) -> None:
        """After each step: ``watcher`` is the :class:`~sensorguard.live.watch.Watcher`,
        ``stats`` its :class:`~sensorguard.live.watch.StepStats`."""
        now = time.perf_counter()
        self.step_seconds.observe(now - self._t)
        self._t = now
        self.scored.inc(stats.readings)
        if stats.late > 0:
            self.late.inc(stats.late)
        if stats.fenced:
            self.fenced.inc(stats.fenced)
        for t in stats.transitions:
            self.transitions.labels(t.kind, t.action).inc()
        counts: dict[str, int] = dict.fromkeys(self._kinds, 0)
        wall = utc_now()
        assets = set(watcher.assets)
        for gone in self._assets - assets:
            self.lag.remove(gone)
        self._assets = assets
        for asset, a in watcher.assets.items():
            if a.events.open is not None:
                counts[FAILURE] = counts.get(FAILURE, 0) + 1
            for kind, _sensor in a.quality.open_alarms():
                counts[kind] = counts.get(kind, 0) + 1
            if a.ck.last_time is not None:
                self.lag.labels(asset).set((wall - a.ck.last_time).total_seconds())
        for kind, n in counts.items():
            self.open.labels(kind).set(n)
        waiting: dict[str, int] = dict.fromkeys(self._waiting, 0)
        for name in watcher.not_scored.values():
            waiting[name] = waiting.get(name, 0) + 1
        for name, n in waiting.items():
            self.not_scored.labels(name).set(n)
        self._waiting |= set(waiting)
        self._kinds |= set(counts)
        self.owned.set(len(watcher.leases.owned))
        self.workers.set(watcher.leases.workers)


class StageTrace:
    """Wall-clock stage stamps of the live loop, one JSON line per event, for the
    latency benchmark (``benchmarks/bench_live.py`` sets ``SENSORGUARD_WATCH_TRACE`` to
    a file): the ingester's commits (which assets, their newest reading), the watch
    passes (start, read, scored, commit, the alarm transitions they wrote) and the
    notifier's deliveries (picked up, sent). Off (None) unless the variable is set; an
    event costs one ``orjson.dumps`` and an unbuffered append."""

    def __init__(self, path: str) -> None:
        import threading

        self._fh = open(path, "ab", buffering=0)  # noqa: SIM115 - lives with the process
        self._lock = threading.Lock()

    def write(self, kind: str, **fields: Any) -> None:
        import orjson

        line = orjson.dumps({"k": kind, **fields}, default=str) + b"\n"
        with self._lock:
            self._fh.write(line)


def _stage_trace() -> StageTrace | None:
    import os

    path = os.environ.get("SENSORGUARD_WATCH_TRACE")
    return StageTrace(path) if path else None


TRACE: StageTrace | None = _stage_trace()
