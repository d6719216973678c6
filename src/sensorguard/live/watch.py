"""The watch service: every asset's new readings scored from the store, in time order.

Rules of this room:

* **Source.** Readings reach the store by any path (MQTT ingestion, ``POST
  /v1/readings``, bulk ingest). The service scores, per asset it holds the lease of,
  the readings newer than the asset's checkpoint, oldest first, in steps of at most
  ``watch_batch_rows``. With ``ingest=True`` (the default of ``sensorguard watch``)
  the same process runs the MQTT ingester and is woken by its commits.
* **Same scoring as the predictor.** Each asset's filter and alarm state continues
  from its checkpoint (``sensorguard.scoring.stream``), so the flags, and hence the
  ``failure`` events, equal one batch pass over the asset's readings however they
  were cut into steps or restarts.
* **Late readings.** A reading whose time is not after the asset's last scored time
  when it arrives is stored but never scored: scoring it would rewrite a past the
  alarms already reported. Each asset counts them (``late`` in ``GET /v1/assets/ID``,
  ``sensorguard_watch_late_readings``), by comparing every ``late_check_s`` seconds
  the readings stored in the scored time span with the readings it scored. Readings
  of one batch may arrive in any order: the step reads them sorted by time.
* **One transaction per asset step**: alarm transitions, outbox rows, predictions
  and the checkpoint commit together (fenced by the checkpoint's ``seq``), so
  ``kill -9`` at any point and a restart give the same alarm events as one run.
* **Hot swap.** The service follows ``models:/<name>@<alias>`` like the predictor
  (checked every ``model_poll_s``). On a new version, each asset's open ``failure``
  event is **closed with reason ``model_changed``** (end = its last flagged reading)
  at the asset's next step, in that step's transaction, and the asset's stream state
  starts afresh with the new version (as the predictor's does); an alarm that is
  still warranted reopens under the new version after its ``min_duration``.
  Data-quality alarms stay open (``out_of_range`` then uses the new version's range).
* **Predictions**: every ``predictions_every``-th reading of an asset and every
  reading in alarm (1 = all, 0 = none), in the ``predictions`` table.
"""

from __future__ import annotations

import io
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import orjson
import sqlalchemy as sa

from sensorguard.config import Settings, get_settings
from sensorguard.errors import SensorGuardError
from sensorguard.live.checkpoints import Checkpoint, load_checkpoints, save_checkpoint
from sensorguard.live.events import FAILURE, FailureEvents, Transition, iso, to_datetime
from sensorguard.live.leases import Leases
from sensorguard.live.quality_alarms import QualityMonitor, QualityRules, training_ranges
from sensorguard.store.alarms import apply_transitions
from sensorguard.store.engine import ensure_schema
from sensorguard.store.ingest import PG_EPOCH_US, float8_array_fields
from sensorguard.store.schema import predictions, readings, sensor_sets
from sensorguard.timeutil import utc_now

log = logging.getLogger("sensorguard.watch")

_COPY_HEADER = 19  # signature (11) + flags (4) + header extension length (4)


@dataclass
class WatchConfig:
    store_url: str | None = None
    model_ref: str | None = None  # default models:/<model_name>@<production_alias>
    poll_interval: float = 0.1
    model_poll_s: float = 5.0
    lease_ttl: float = 10.0
    batch_rows: int = 20_000
    predictions_every: int = 1
    start: str = "earliest"  # earliest | latest: where an asset without checkpoint starts
    top_k: int = 3
    late_check_s: float = 30.0
    sweep_s: float = 1.0  # with ingester hints: visit every asset at least this often
    quality: QualityRules = field(default_factory=QualityRules)
    assets: list[str] | None = None  # restrict to these assets (default: every asset)

    @classmethod
    def from_settings(cls, settings: Settings | None = None, **overrides: Any) -> WatchConfig:
        s = settings or get_settings()
        cfg = cls(
            store_url=s.store_url,
            poll_interval=s.watch_poll_interval,
            model_poll_s=s.poll_interval,
            lease_ttl=s.watch_lease_seconds,
            batch_rows=s.watch_batch_rows,
            predictions_every=s.watch_predictions_every,
            quality=QualityRules(
                silent_after_s=s.watch_silent_after,
                missing_readings=s.watch_missing_readings,
                flatline_readings=s.watch_flatline_readings,
                range_readings=s.watch_range_readings,
                range_margin=s.watch_range_margin,
            ),
        )
        for k, v in overrides.items():
            if v is not None:
                setattr(cfg, k, v)
        return cfg


@dataclass
class StepStats:
    readings: int = 0
    late: int = 0
    transitions: list[Transition] = field(default_factory=list)
    fenced: int = 0
    backlog: bool = False  # some asset had more new readings than one step takes


# ---------------------------------------------------------------- model + stream


def _copy_escape(text: str) -> str:
    """A value for COPY's text format (backslash, tab, newline, carriage return)."""
    if not any(c in text for c in "\\\t\n\r"):
        return text
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


class _Fenced(Exception):
    """The asset's checkpoint moved under this process (rolls the step back)."""


class _Model:
    """One loaded model version and the per-asset stream scorer built on it."""

    def __init__(self, loaded: Any, quality: QualityRules, top_k: int = 3) -> None:
        from sensorguard.scoring.stream import AssetStreams

        self.loaded = loaded
        self.name = str(loaded.name)
        self.version = str(loaded.version)
        self.detector = loaded.detector
        self.sensors = list(self.detector.schema_.sensors)
        self.streams = AssetStreams(self.detector, max_assets=None, top_k=top_k)
        self.failure_types = getattr(loaded, "failure_types", None) or getattr(
            self.detector, "failure_types_", None
        )
        self.ranges = training_ranges(
            getattr(loaded, "training_profile", None), quality.range_margin
        )


@dataclass
class _Asset:
    ck: Checkpoint
    events: FailureEvents
    quality: QualityMonitor
    last_arrival: float | None = None
    late_checked: float = 0.0


# ---------------------------------------------------------------- the service


class Watcher:
    """The live loop. ``run(stop)`` until ``stop`` is set; ``step()`` = one pass."""

    def __init__(
        self,
        config: WatchConfig | None = None,
        *,
        settings: Settings | None = None,
        metrics: Any = None,
        worker_id: str | None = None,
        on_transitions: Callable[[list[Transition]], None] | None = None,
        notifier: Any = None,
    ) -> None:
        self.settings = settings or get_settings()
        self.config = config or WatchConfig.from_settings(self.settings)
        self.engine = ensure_schema(self.config.store_url)
        self.leases = Leases(self.engine, worker_id, ttl=self.config.lease_ttl)
        self.metrics = metrics
        self.on_transitions = on_transitions
        self.notifier = notifier
        self.model: _Model | None = None
        self.assets: dict[str, _Asset] = {}
        self.totals = {"readings": 0, "late": 0, "transitions": 0, "fenced": 0, "steps": 0}
        self._sets: dict[int, list[str]] = {}
        self._set_index: dict[tuple[int, str], tuple[np.ndarray, np.ndarray]] = {}
        self._wake = threading.Event()
        self._last_lease = 0.0
        self._new_assets = False
        self._asset_errors: dict[str, str] = {}
        self._hint_lock = threading.Lock()
        self._hinted = False
        self._dirty: set[str] = set()
        self._last_sweep = 0.0
        self._last_model_check = 0.0
        self._ref = self.config.model_ref or (
            f"models:/{self.settings.model_name}@{self.settings.production_alias}"
        )
        self.model_error: str | None = None

    # -- model
    def use(self, loaded: Any) -> None:
        """Score with this loaded model (``registry.LoadedModel``) from the next step on."""
        self.model = _Model(loaded, self.config.quality, self.config.top_k)
        self._last_model_check = time.monotonic()

    def _load(self, ref: str) -> None:
        from sensorguard.registry import load_model

        loaded = load_model(ref, self.settings)
        self.model = _Model(loaded, self.config.quality, self.config.top_k)
        log.info("watch: scoring with %s version %s", self.model.name, self.model.version)
        if self.metrics is not None:
            self.metrics.set_model(self.model.name, self.model.version)

    def check_model(self, force: bool = False) -> bool:
        """Follow the alias: load the version it points at if it moved. True = swapped."""
        now = time.monotonic()
        if (
            not force
            and self.model is not None
            and now - self._last_model_check < self.config.model_poll_s
        ):
            return False
        self._last_model_check = now
        ref = self._ref
        try:
            if self.model is None:
                self._load(ref)
                return True
            if not ref.startswith("models:/") or "@" not in ref:
                return False
            from sensorguard.registry import parse_model_uri, version_at

            name, _v, alias = parse_model_uri(ref)
            assert alias is not None
            current = version_at(name, alias, self.settings)
            if current is None or str(current) == self.model.version:
                return False
            self._load(f"models:/{name}/{current}")
            self.model.loaded.alias = alias
            return True
        except Exception as exc:  # keep scoring with the old version; retry next poll
            if self.model is None:
                raise
            msg = f"{type(exc).__name__}: {exc}"
            if msg != self.model_error:
                log.warning("watch: model check failed (%s); keeping the current model", msg)
            self.model_error = msg
            return False

    # -- leases
    def refresh_leases(self, force: bool = False) -> set[str]:
        now = time.monotonic()
        # new assets: claim at once, but at most every 0.5 s (a refresh is a few queries)
        soon = self._new_assets and now - self._last_lease >= 0.5
        if force or soon or now - self._last_lease >= self.leases.ttl / 3:
            self._last_lease = now
            self._new_assets = False
            owned = self.leases.refresh(self.config.assets)
            for gone in set(self.assets) - owned:
                self.assets.pop(gone, None)
                if self.model is not None:
                    self.model.streams.drop(gone)
        return self.leases.owned

    def wake(self, outcome: Any = None) -> None:
        """Score now (called by the co-located ingester after each commit with its
        batch outcome, whose ``last_times`` name the assets that got readings): the
        next step visits only those assets (every asset once per ``sweep_s``), and an
        asset this process has not seen yet triggers a lease refresh at once instead
        of at the next heartbeat."""
        assets = getattr(outcome, "last_times", None)
        if assets is not None:
            with self._hint_lock:
                self._hinted = True
                self._dirty.update(assets)
            if any(a not in self.leases.owned for a in assets):
                self._new_assets = True
        self._wake.set()

    def _due(self, owned: list[str]) -> list[str]:
        """The assets to visit in this step. With ingester hints: those it stored
        readings for, and once per ``sweep_s`` a sweep; without: a sweep every step. A
        sweep visits the assets that have readings newer than their checkpoint (one
        query for all), are new to this process, or have a silence or late check due;
        the others would be an empty transaction each (measured: a sweep of 100 idle
        assets took about 0.5 s of a loaded machine and set the alarm latency)."""
        now = time.monotonic()
        with self._hint_lock:
            hinted = self._hinted and now - self._last_sweep < self.config.sweep_s
            if hinted:
                todo, self._dirty = self._dirty, set()
            else:
                self._last_sweep = now
                self._dirty.clear()
        if hinted:
            return [a for a in owned if a in todo or a not in self.assets]
        wall = time.time()
        known = [a for a in owned if a in self.assets]
        fresh = self._with_new_readings(known)
        return [
            a
            for a in owned
            if a not in self.assets or a in fresh or self._timer_due(self.assets[a], wall)
        ]

    def _timer_due(self, a: _Asset, wall: float) -> bool:
        if wall - a.late_checked >= self.config.late_check_s:
            return True
        silent = a.quality.silent.get("open")
        return (
            not silent
            and a.last_arrival is not None
            and wall - a.last_arrival >= self.config.quality.silent_after_s
        )

    def _with_new_readings(self, assets: list[str]) -> set[str]:
        """Which of ``assets`` have readings newer than their checkpoint: one index
        probe per asset, one round trip."""
        if not assets:
            return set()
        after = [self.assets[a].ck.last_time for a in assets]
        with self.engine.connect() as conn:
            if conn.dialect.name == "postgresql":
                rows = conn.exec_driver_sql(
                    "SELECT v.a FROM unnest(%(a)s::varchar[], %(t)s::timestamp[]) AS v(a, t) "
                    "WHERE EXISTS (SELECT 1 FROM readings r WHERE r.asset_id = v.a "
                    "AND (v.t IS NULL OR r.time > v.t))",
                    {"a": assets, "t": after},
                ).all()
                return {r[0] for r in rows}
            out = set()
            for asset, t in zip(assets, after, strict=True):
                q = sa.select(sa.literal(1)).where(readings.c.asset_id == asset)
                if t is not None:
                    q = q.where(readings.c.time > t)
                if conn.execute(q.limit(1)).first() is not None:
                    out.add(asset)
            return out

    # -- readings
    def _sensor_map(self, conn: sa.Connection, set_id: int) -> tuple[np.ndarray, np.ndarray]:
        """For a stored sensor set: (positions in the stored array, positions in the
        model's sensor order) of the sensors both have."""
        assert self.model is not None
        key = (set_id, self.model.version)
        got = self._set_index.get(key)
        if got is None:
            names = self._sets.get(set_id)
            if names is None:
                text = conn.execute(
                    sa.select(sensor_sets.c.sensors).where(sensor_sets.c.id == set_id)
                ).scalar_one()
                names = self._sets[set_id] = list(orjson.loads(text))
            pos = {s: i for i, s in enumerate(names)}
            pairs = [(pos[s], j) for j, s in enumerate(self.model.sensors) if s in pos]
            src = np.array([p[0] for p in pairs], dtype=np.intp)
            dst = np.array([p[1] for p in pairs], dtype=np.intp)
            got = self._set_index[key] = (src, dst)
        return got

    def _read_new(
        self, conn: sa.Connection, asset: str, after: datetime | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(times as datetime64[us], X in model sensor order with NaN = missing)."""
        assert self.model is not None
        if conn.dialect.name == "postgresql":
            got = self._read_new_copy(conn, asset, after)
            if got is not None:
                return got
        q = sa.select(readings.c.time, readings.c.sensor_set_id, readings.c.sensor_values).where(
            readings.c.asset_id == asset
        )
        if after is not None:
            q = q.where(readings.c.time > after)
        q = q.order_by(readings.c.time).limit(self.config.batch_rows)
        rows = conn.execute(q).all()
        p = len(self.model.sensors)
        if not rows:
            return np.zeros(0, dtype="datetime64[us]"), np.zeros((0, p))
        times = np.array([r[0] for r in rows], dtype="datetime64[us]")
        X = np.full((len(rows), p), np.nan)
        set_ids = np.array([r[1] for r in rows])
        for sid in np.unique(set_ids).tolist():
            idx = np.flatnonzero(set_ids == sid)
            block = np.array([rows[int(i)][2] for i in idx], dtype=np.float64)
            src, dst = self._sensor_map(conn, int(sid))
            if src.size:
                X[np.ix_(idx, dst)] = block[:, src]
        return times, X

    def _read_new_copy(
        self, conn: sa.Connection, asset: str, after: datetime | None
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """PostgreSQL: the same rows through ``COPY ... TO STDOUT (FORMAT binary)``, laid
        out by numpy. Measured 8x faster than a SELECT of the float8[] column, whose
        per-value parsing into Python floats dominated a step (12 s of 13 s for 200k
        readings). ``None`` when the rows are not uniform (several sensor sets in the
        step, NULL elements): the caller takes the SELECT path."""
        assert self.model is not None
        raw = conn.connection.dbapi_connection
        assert raw is not None
        cur = raw.cursor()
        try:
            where = cur.mogrify(
                "asset_id = %s" + ("" if after is None else " AND time > %s"),
                (asset,) if after is None else (asset, after),
            ).decode()
            sql = (
                "COPY (SELECT time, sensor_set_id, sensor_values FROM readings WHERE "
                f"{where} ORDER BY time LIMIT {int(self.config.batch_rows)}) "
                "TO STDOUT (FORMAT binary)"
            )
            buf = io.BytesIO()
            cur.copy_expert(sql, buf)
        finally:
            cur.close()
        data = buf.getvalue()
        p = len(self.model.sensors)
        body = data[_COPY_HEADER:-2]
        if not body:
            return np.zeros(0, dtype="datetime64[us]"), np.zeros((0, p))
        if len(body) < 46:
            return None
        k = int.from_bytes(body[38:42], "big", signed=True)  # the array's dimension
        size = 46 + 12 * k
        if k <= 0 or len(body) % size:
            return None
        row = np.dtype(
            [
                ("nfields", ">i2"),
                ("len_time", ">i4"),
                ("time", ">i8"),
                ("len_set", ">i4"),
                ("set_id", ">i4"),
                *float8_array_fields(k),
            ]
        )
        rec = np.frombuffer(body, dtype=row)
        if (
            (rec["nfields"] != 3).any()
            or (rec["dim"] != k).any()
            or (rec["elems"]["len"] != 8).any()
        ):
            return None
        set_ids = rec["set_id"]
        if (set_ids != set_ids[0]).any():
            return None
        times = (rec["time"] + PG_EPOCH_US).astype("datetime64[us]")
        values = rec["elems"]["value"].astype(np.float64)
        src, dst = self._sensor_map(conn, int(set_ids[0]))
        X = np.full((len(rec), p), np.nan)
        if src.size:
            X[:, dst] = values[:, src]
        return times, X

    def _count_stored(self, conn: sa.Connection, asset: str, lo: datetime, hi: datetime) -> int:
        q = sa.select(sa.func.count()).where(
            readings.c.asset_id == asset, readings.c.time >= lo, readings.c.time <= hi
        )
        return int(conn.execute(q).scalar_one())

    # -- per-asset state
    def _new_asset(self, conn: sa.Connection, asset: str, ck: Checkpoint | None) -> _Asset:
        assert self.model is not None
        m = self.model
        if ck is None:
            ck = Checkpoint(asset_id=asset, model_name=m.name, model_version=m.version)
            if self.config.start == "latest":
                ck.last_time = conn.execute(
                    sa.select(sa.func.max(readings.c.time)).where(readings.c.asset_id == asset)
                ).scalar_one()
        events = FailureEvents(
            asset,
            m.name,
            ck.model_version,
            m.sensors,
            top_k=self.config.top_k,
            failure_profiles=m.failure_types,
        )
        quality = QualityMonitor(
            asset,
            m.sensors,
            rules=self.config.quality,
            ranges=m.ranges,
            model_name=m.name,
            model_version=m.version,
        )
        st = ck.state or {}
        events.restore(st.get("event"))
        quality.restore(st.get("quality"))
        if ck.model_version == m.version and st.get("stream") is not None:
            m.streams.restore(asset, st["stream"])
        else:
            m.streams.drop(asset)
        return _Asset(ck=ck, events=events, quality=quality, last_arrival=st.get("last_arrival"))

    def _swap(self, a: _Asset) -> list[Transition]:
        """The asset's checkpoint belongs to another version: close its open failure
        event with reason ``model_changed`` and start its stream afresh."""
        assert self.model is not None
        m = self.model
        out = a.events.close("model_changed")
        a.events = FailureEvents(
            a.ck.asset_id,
            m.name,
            m.version,
            m.sensors,
            top_k=self.config.top_k,
            failure_profiles=m.failure_types,
        )
        a.quality.ranges = m.ranges
        a.quality.model_name, a.quality.model_version = m.name, m.version
        m.streams.drop(a.ck.asset_id)
        a.ck.model_name, a.ck.model_version = m.name, m.version
        a.ck.is_anomaly = False
        return out

    # -- one asset
    def _step_asset(self, asset: str, stats: StepStats) -> None:
        assert self.model is not None
        m = self.model
        wall = time.time()
        with self.engine.begin() as conn:
            a = self.assets.get(asset)
            if a is None:
                ck = load_checkpoints(conn, [asset]).get(asset)
                if ck is not None and ck.model_version != m.version:
                    # another process may already follow a newer alias: check first
                    self.check_model(force=True)
                    m = self.model
                a = self._new_asset(conn, asset, ck)
            transitions: list[Transition] = []
            if a.ck.model_version != m.version:
                transitions += self._swap(a)
            times, X = self._read_new(conn, asset, a.ck.last_time)
            n = times.size
            if n >= self.config.batch_rows:
                stats.backlog = True
                with self._hint_lock:
                    self._dirty.add(asset)  # more to read: due at the next step too
            dirty = bool(transitions)
            first_new = times[0] if n else None
            if n:
                # a copy: the scorer fills gaps in place, the quality rules need them
                res = m.streams.update(asset, times, X.copy())
                flags = np.asarray(res.is_anomaly, dtype=bool)
                score = np.asarray(res.score, dtype=np.float64)
                contrib = np.asarray(res.contributions, dtype=np.float64)
                transitions += a.events.feed(times, flags, score, contrib)
                transitions += a.quality.feed(times, X)
                self._predictions(conn, asset, times, res, flags, a.ck.n_scored)
                if a.ck.state.get("first_time") is None:
                    a.ck.state["first_time"] = iso(times[0])
                a.ck.last_time = to_datetime(times[-1])
                a.ck.n_scored += n
                a.ck.last_score = float(score[-1]) if math.isfinite(score[-1]) else None
                a.ck.is_anomaly = bool(flags[-1])
                a.last_arrival = wall
                dirty = True
            elif a.last_arrival is None and a.ck.last_time is not None:
                a.last_arrival = wall  # first sight of an asset with history: start the clock
            transitions += a.quality.check_silence(wall, a.last_arrival, a.ck.last_time, first_new)
            dirty = dirty or bool(transitions)
            if (
                a.ck.last_time is not None
                and a.ck.state.get("first_time")
                and wall - a.late_checked >= self.config.late_check_s
            ):
                a.late_checked = wall
                stored = self._count_stored(
                    conn, asset, to_datetime(a.ck.state["first_time"]), a.ck.last_time
                )
                late = max(0, stored - a.ck.n_scored)
                if late != a.ck.n_late:
                    stats.late += late - a.ck.n_late
                    a.ck.n_late = late
                    dirty = True
            if not dirty:
                self.assets[asset] = a
                return
            transitions.sort(key=lambda t: (t.at or t.start, t.kind != FAILURE))
            a.ck.state = {
                "stream": m.streams.state_of(asset),
                "event": a.events.state(),
                "quality": a.quality.state(),
                "last_arrival": a.last_arrival,
                "first_time": a.ck.state.get("first_time"),
            }
            ids = apply_transitions(conn, transitions)
            self._enqueue(conn, transitions, ids)
            if not save_checkpoint(conn, a.ck):
                # another process moved this asset's checkpoint: it owns the asset now
                raise _Fenced(asset)
        self.assets[asset] = a
        stats.readings += n
        stats.transitions += transitions
        if transitions and self.notifier is not None:
            # committed: send now, not after the rest of the step (measured: the
            # webhook came ~0.5 s after the alarm was written with one wake per step)
            self.notifier.wake()

    def _predictions(
        self,
        conn: sa.Connection,
        asset: str,
        times: np.ndarray,
        res: Any,
        flags: np.ndarray,
        offset: int,
    ) -> None:
        every = self.config.predictions_every
        if every <= 0:
            return
        n = times.size
        keep = (
            np.ones(n, dtype=bool) if every == 1 else ((np.arange(n) + offset) % every == 0) | flags
        )
        idx = np.flatnonzero(keep)
        if not idx.size:
            return
        assert self.model is not None
        names = np.asarray(self.model.sensors, dtype=object)
        top = np.asarray(res.top)[idx]
        tops = [";".join(r) for r in names[top].tolist()]
        state = np.asarray(getattr(res, "state", np.full(n, -1)))[idx]
        now = utc_now()
        score = np.asarray(res.score, dtype=np.float64)[idx]
        score = np.nan_to_num(score, nan=0.0, posinf=1e308, neginf=-1e308)
        rows = [
            {
                "asset_id": asset,
                "time": t,
                "model_name": self.model.name,
                "model_version": self.model.version,
                "score": s,
                "is_anomaly": f,
                "state": st,
                "top_sensors": tp,
                "created_at": now,
            }
            for t, s, f, st, tp in zip(
                times[idx].astype(datetime).tolist(),
                score.tolist(),
                flags[idx].tolist(),
                state.astype(np.int64).tolist(),
                tops,
                strict=True,
            )
        ]
        if conn.dialect.name == "postgresql":
            self._copy_predictions(conn, rows)
            return
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        conn.execute(sqlite_insert(predictions).on_conflict_do_nothing(), rows)

    def _copy_predictions(self, conn: sa.Connection, rows: list[dict[str, Any]]) -> None:
        """PostgreSQL: ``COPY`` (text) straight into ``predictions`` when none is stored
        yet for this asset, version and time span (the live case), else through a
        temporary table and ``INSERT ... ON CONFLICT DO NOTHING`` (a span scored before,
        e.g. by ``sensorguard store score``). Measured on 20k rows: about 140k rows/s
        direct and 64k rows/s through the temporary table, against 15k rows/s for one
        multi-row INSERT over arrays."""
        first, last = rows[0], rows[-1]
        overlap = conn.execute(
            sa.select(sa.literal(1))
            .where(
                predictions.c.asset_id == first["asset_id"],
                predictions.c.model_name == first["model_name"],
                predictions.c.model_version == first["model_version"],
                predictions.c.time >= first["time"],
                predictions.c.time <= last["time"],
            )
            .limit(1)
        ).first()
        cols = list(first)
        esc = _copy_escape
        const = {c: esc(str(first[c])) for c in ("asset_id", "model_name", "model_version")}
        created = first["created_at"].isoformat(sep=" ")
        lines = "".join(
            f"{const['asset_id']}\t{r['time'].isoformat(sep=' ')}\t{const['model_name']}\t"
            f"{const['model_version']}\t{r['score']!r}\t{'t' if r['is_anomaly'] else 'f'}\t"
            f"{r['state']}\t{esc(r['top_sensors'])}\t{created}\n"
            for r in rows
        )
        raw = conn.connection.dbapi_connection
        assert raw is not None
        cur = raw.cursor()
        try:
            target = "predictions"
            if overlap is not None:
                cur.execute(
                    "CREATE TEMP TABLE IF NOT EXISTS sg_watch_predictions (LIKE predictions)"
                )
                cur.execute("TRUNCATE sg_watch_predictions")
                target = "sg_watch_predictions"
            cur.copy_expert(f"COPY {target} ({', '.join(cols)}) FROM STDIN", io.StringIO(lines))
            if overlap is not None:
                cur.execute(
                    "INSERT INTO predictions SELECT * FROM sg_watch_predictions "
                    "ON CONFLICT DO NOTHING"
                )
        finally:
            cur.close()

    def _enqueue(self, conn: sa.Connection, transitions: list[Transition], ids: list[int]) -> None:
        if not transitions:
            return
        from sensorguard.live.notify import Transition as Notice
        from sensorguard.live.notify import enqueue

        for t, alarm_id in zip(transitions, ids, strict=True):
            body = {"id": alarm_id, **t.event()}
            enqueue(conn, Notice(str(alarm_id), t.name, t.asset_id, t.kind, body))

    # -- the loop
    def step(self) -> StepStats:
        """Refresh leases and the model when due, then score every owned asset once."""
        stats = StepStats()
        self.check_model()
        owned = sorted(self.refresh_leases())
        for asset in self._due(owned):
            try:
                self._step_asset(asset, stats)
            except BaseException as exc:
                # the step was rolled back: forget what it changed in memory, and
                # continue from the committed checkpoint at the next step
                self.assets.pop(asset, None)
                if self.model is not None:
                    self.model.streams.drop(asset)
                if isinstance(exc, _Fenced):
                    stats.fenced += 1
                elif isinstance(exc, sa.exc.DBAPIError):  # a lost connection: retry later
                    log.warning("watch: store error on %s: %s", asset, str(exc).splitlines()[0])
                elif isinstance(exc, SensorGuardError):
                    # this asset's data cannot be scored (e.g. a state the model refuses):
                    # the others go on; the step is retried, the reason logged once
                    if self._asset_errors.get(asset) != exc.message:
                        log.error("watch: cannot score %s: %s", asset, exc.message)
                    self._asset_errors[asset] = exc.message
                else:
                    raise
            else:
                self._asset_errors.pop(asset, None)
        t = self.totals
        t["readings"] += stats.readings
        t["late"] += stats.late
        t["transitions"] += len(stats.transitions)
        t["fenced"] += stats.fenced
        t["steps"] += 1
        if stats.transitions and self.on_transitions is not None:
            self.on_transitions(stats.transitions)
        if self.metrics is not None:
            self.metrics.observe(self, stats)
        return stats

    def run(self, stop: threading.Event) -> None:
        """Score until ``stop`` is set; then release the leases (the checkpoints are
        already committed with every step, so a clean stop loses nothing)."""
        backoff = 0.5
        try:
            while not stop.is_set():
                try:
                    stats = self.step()
                except sa.exc.DBAPIError as exc:
                    # the store is down (leases cannot be renewed either): wait and retry;
                    # the checkpoints hold everything committed so far
                    log.error("watch: store unavailable (%s); retrying", str(exc).splitlines()[0])
                    stop.wait(backoff)
                    backoff = min(2 * backoff, 30.0)
                    continue
                backoff = 0.5
                if not stats.backlog:
                    self._wake.wait(self.config.poll_interval)
                    self._wake.clear()
        finally:
            try:
                self.leases.release_all()
            except sa.exc.DBAPIError as exc:
                log.warning("watch: could not release leases: %s", str(exc).splitlines()[0])


# ---------------------------------------------------------------- metrics


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
            "Version of the model scoring (0 for a local folder).",
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
        self._t = time.perf_counter()

    def set_model(self, name: str, version: str) -> None:
        self.version.set(float(version) if str(version).isdigit() else 0.0)

    def observe(self, watcher: Watcher, stats: StepStats) -> None:
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
        self._kinds |= set(counts)
        self.owned.set(len(watcher.leases.owned))
        self.workers.set(watcher.leases.workers)


# ---------------------------------------------------------------- the service process


def run_service(
    config: WatchConfig | None = None,
    *,
    settings: Settings | None = None,
    stop: threading.Event | None = None,
    ingest: bool = True,
    notify: bool = True,
    metrics_port: int | None = None,
    metrics_host: str = "127.0.0.1",
    on_transitions: Callable[[list[Transition]], None] | None = None,
    on_ready: Callable[[Watcher], None] | None = None,
) -> Watcher:
    """``sensorguard watch``: the watch loop in the foreground until ``stop`` is set,
    with the MQTT ingester (``ingest``) and the notifier (``notify``) on threads of
    the same process. Returns the watcher (its ``totals``) after a clean shutdown."""
    settings = settings or get_settings()
    config = config or WatchConfig.from_settings(settings)
    stop = stop or threading.Event()
    metrics = WatchMetrics()
    server = None
    port = metrics_port if metrics_port is not None else settings.watch_metrics_port
    if port is not None:
        from sensorguard.live.metrics import serve_metrics

        server = serve_metrics(metrics.live, port, metrics_host)
    notifier = None
    if notify:
        from sensorguard.live.notify import Notifier

        notifier = Notifier(config.store_url, metrics=metrics.live)
    watcher = Watcher(
        config,
        settings=settings,
        metrics=metrics,
        on_transitions=on_transitions,
        notifier=notifier,
    )
    while True:
        # no model yet (nothing promoted, registry down): wait for one, as the predictor does
        try:
            watcher.check_model(force=True)
            break
        except SensorGuardError as exc:
            if not watcher._ref.startswith("models:/"):
                raise  # a folder that is not there will not appear by waiting
            log.warning("watch: no model to score with yet (%s); retrying", exc.message)
            if stop.wait(config.model_poll_s):
                return watcher
    ingester = None
    try:
        if ingest:
            from sensorguard.live.ingest import MqttIngester

            ingester = MqttIngester(config.store_url, metrics=metrics.live, on_stored=watcher.wake)
            ingester.start()
        if notifier is not None:
            notifier.start()
        if on_ready is not None:
            on_ready(watcher)
        watcher.run(stop)
    finally:
        if ingester is not None:
            ingester.stop()
        if notifier is not None:
            notifier.stop()
        if server is not None:
            server.shutdown()
    return watcher
