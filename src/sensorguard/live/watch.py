"""The watch service: every asset's new readings scored from the store, in time order.

Rules of this room:

* **Source.** Readings reach the store by any path (MQTT ingestion, ``POST
  /v1/readings``, bulk ingest). The service scores, per asset it holds the lease of,
  the readings newer than the asset's checkpoint, oldest first, in steps of at most
  ``watch_batch_rows``. With ``ingest=True`` (the default of ``sensorguard watch``)
  the same process runs the MQTT ingester and is woken by its commits. At most
  ``pass_rows`` readings are read per pass (so at most ``pass_rows / assets`` per asset
  of a full pass): what a pass holds in memory stays bounded.
* **Same scoring as the predictor.** Each asset's filter and alarm state continues
  from its checkpoint (``sensorguard.scoring.stream``), so the flags, and hence the
  ``failure`` events, equal one batch pass over the asset's readings however they
  were cut into steps or restarts.
* **Late readings.** A reading whose time is not after the asset's last scored time
  when it arrives is stored but never scored: scoring it would rewrite a past the
  alarms already reported. Each asset counts them (``late`` in ``GET /v1/assets/ID``,
  ``sensorguard_watch_late_readings``), by comparing every ``late_check_s`` seconds
  what is stored for the asset (the writers' per-asset count, minus the unscored tail
  and what was stored before the first scored reading) with what it scored. Readings
  of one batch may arrive in any order: the step reads them sorted by time.
* **One transaction per pass** (of at most ``pass_assets`` assets): one query reads
  the new readings of all of them, each is scored in memory, then the checkpoints
  (fenced by their ``seq``, written first), predictions, alarm transitions and outbox
  rows of the whole pass commit together. An asset fenced out writes nothing and is
  dropped, the others commit; so a checkpoint and what it covers are always in the same
  transaction, and ``kill -9`` at any point and a restart give the same alarm events
  as one run.
* **Routing by asset.** Without an explicit ``model_ref``, an asset registered in the
  asset registry (``store.assets.asset_models``, re-read every ``model_poll_s`` and at
  once, at most once a second, for an asset new to this process that it does not name)
  is scored by ``models:/<its model>@<production alias>``, one loaded model per machine
  type; any other asset by the default model (the settings' model name). A machine
  type without a loadable production version is never replaced by another model: its
  assets are not scored (``not_scored``, logged once per asset) until it has one. An
  explicit ``model_ref`` scores every asset with that model, no routing.
* **Hot swap.** The service follows each model's ``models:/<name>@<alias>`` like the
  predictor (checked every ``model_poll_s``). On a new version, or when an asset is
  routed to another model, the asset's open ``failure`` event is **closed with reason
  ``model_changed``** (end = its last flagged reading) at the asset's next step, in
  that step's transaction, and the asset's stream state starts afresh with the new
  model (as the predictor's does); an alarm that is still warranted reopens under the
  new version after its ``min_duration``. Only the assets of the swapped model are
  touched. Data-quality alarms stay open (``out_of_range`` then uses the new range).
* **Regime change** (:mod:`~sensorguard.live.regime_alarms`): the first 60 readings of
  an asset under a model version are judged against its training range by the rule of
  ``sensorguard score``; their failure flags are held until then, and a regime change
  opens one ``regime_change`` alarm instead of a ``failure`` alarm over everything.
* **Predictions**: every ``predictions_every``-th reading of an asset and every
  reading in alarm (1 = all, 0 = none), in the ``predictions`` table.

Around 900 lines on purpose: the pass and the loop around it (leases, wake-up hints,
sweeps, model polls and routing, rollback of a failed pass) share the service's state,
and each pass's transaction spans them. What a pass reads and writes is in
:mod:`~sensorguard.live.watch_store`, the per-asset state it continues from in
:mod:`~sensorguard.live.watch_state`, the metrics in :mod:`~sensorguard.live.watch_metrics`.
"""

from __future__ import annotations

import gc
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import sqlalchemy as sa

from sensorguard.config import Settings, get_settings
from sensorguard.errors import SensorGuardError
from sensorguard.live.checkpoints import load_checkpoints, save_checkpoints
from sensorguard.live.events import FAILURE, Transition, iso, to_datetime
from sensorguard.live.leases import Leases
from sensorguard.live.quality_alarms import QualityRules
from sensorguard.live.watch_metrics import TRACE, WatchMetrics
from sensorguard.live.watch_state import _Asset, _Model, new_asset, same_model, swap
from sensorguard.live.watch_store import (
    Predictions,
    SensorSets,
    assets_with_new_readings,
    read_new_many,
    relax_commit,
    stored_counts_many,
    write_predictions_many,
)
from sensorguard.scoring.stream import StreamResult
from sensorguard.store.alarms import apply_transitions
from sensorguard.store.engine import ensure_schema

log = logging.getLogger("sensorguard.watch")
_EMPTY = (np.zeros(0, dtype="datetime64[us]"), np.zeros((0, 0)))


@dataclass
class WatchConfig:
    store_url: str | None = None
    # None: route by asset (registered model @production, else the settings' model);
    # a reference: every asset is scored by it
    model_ref: str | None = None
    poll_interval: float = 0.1
    model_poll_s: float = 5.0
    lease_ttl: float = 10.0
    batch_rows: int = 20_000
    predictions_every: int = 1
    start: str = "earliest"  # earliest | latest: where an asset without checkpoint starts
    top_k: int = 3
    late_check_s: float = 30.0
    sweep_s: float = 1.0  # with ingester hints: visit every asset at least this often
    # one transaction per this many due assets, at most pass_rows readings read in it
    # (SENSORGUARD_WATCH_PASS_ASSETS / SENSORGUARD_WATCH_PASS_ROWS)
    pass_assets: int = 100
    pass_rows: int = 200_000
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
            pass_assets=s.watch_pass_assets,
            pass_rows=s.watch_pass_rows,
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


class _Fenced(Exception):
    """The asset's checkpoint moved under this process (rolls the step back)."""


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
        self.model: _Model | None = None  # the default model
        self.models: dict[str, _Model] = {}  # routing: machine type → its production version
        self.routing = self.config.model_ref is None
        self.asset_models: dict[str, str] = {}  # routing: asset → machine type (registry)
        self.not_scored: dict[str, str] = {}  # asset → the model it waits for
        self.model_errors: dict[str, str] = {}  # machine type → why it cannot score
        self.assets: dict[str, _Asset] = {}
        self.totals = {"readings": 0, "late": 0, "transitions": 0, "fenced": 0, "steps": 0}
        self._sensor_sets = SensorSets()
        self._wake = threading.Event()
        self._last_lease = 0.0
        self._new_assets = False
        self._asset_errors: dict[str, str] = {}
        self._hint_lock = threading.Lock()
        self._hinted = False
        self._dirty: set[str] = set()
        self._last_sweep = 0.0
        self._last_model_check = 0.0
        self._asset_models_at = -math.inf
        self._solo_until = -math.inf  # score assets one by one until then (_score_many)
        self._ref = self.config.model_ref or (
            f"models:/{self.settings.model_name}@{self.settings.production_alias}"
        )
        self.model_error: str | None = None

    # -- model
    def use(self, loaded: Any) -> None:
        """Score with this loaded model (``registry.LoadedModel``) from the next step on."""
        self.model = _Model(loaded, self.config.quality, self.config.top_k)
        self._last_model_check = time.monotonic()

    @property
    def default_name(self) -> str | None:
        """The default model's name (what an unregistered asset is scored by)."""
        if self.model is not None:
            return self.model.name
        return self.settings.model_name if self.routing else None

    def _new_model(self, ref: str, alias: str | None, default: bool) -> _Model:
        from sensorguard.registry import load_model

        loaded = load_model(ref, self.settings)
        if alias is not None:
            loaded.alias = alias
        m = _Model(loaded, self.config.quality, self.config.top_k)
        gc.freeze()  # the model and what loading it imported: see run()
        log.info("watch: scoring with %s version %s", m.name, m.version)
        if self.metrics is not None:
            self.metrics.set_model(m.name, m.version, default=default)
        return m

    def _follow(self, current: _Model | None, ref: str, default: bool) -> _Model | None:
        """The model ``ref`` points at when it is not ``current`` (loaded), else None."""
        if current is None:
            return self._new_model(ref, None, default)
        if not ref.startswith("models:/") or "@" not in ref:
            return None
        from sensorguard.registry import parse_model_uri, version_at

        name, _v, alias = parse_model_uri(ref)
        assert alias is not None
        now = version_at(name, alias, self.settings)
        if now is None or str(now) == current.version:
            return None
        return self._new_model(f"models:/{name}/{now}", alias, default)

    def check_model(self, force: bool = False) -> bool:
        """Follow the aliases: load the version each points at if it moved (the default
        model's and, when routing, every machine type's of the asset registry).
        True = a model was loaded or swapped."""
        now = time.monotonic()
        if (
            not force
            and (self.model is not None or self.routing)
            and now - self._last_model_check < self.config.model_poll_s
        ):
            return False
        self._last_model_check = now
        swapped = False
        try:
            got = self._follow(self.model, self._ref, True)
            if got is not None:
                self.model, swapped = got, True
            self.model_error = None
            if self.routing:
                self.model_errors.pop(self.settings.model_name, None)
        except Exception as exc:  # keep scoring with the old version; retry next poll
            if self.model is None and not self.routing:
                raise
            self._model_failed(self.settings.model_name, exc, default=True)
        if self.routing:
            self._refresh_asset_models()
            for name in sorted(set(self.asset_models.values()) - {self.default_name}):
                swapped = self._check_type(name) or swapped
        return swapped

    def _check_type(self, name: str) -> bool:
        """Follow machine type ``name``'s production alias (routing). True = loaded/swapped."""
        try:
            ref = f"models:/{name}@{self.settings.production_alias}"
            got = self._follow(self.models.get(name), ref, False)
        except Exception as exc:  # its assets wait (or keep the loaded version)
            self._model_failed(name, exc)
            return False
        self.model_errors.pop(name, None)
        if got is None:
            return False
        self.models[name] = got
        return True

    def _model_failed(self, name: str, exc: Exception, default: bool = False) -> None:
        msg = exc.message if isinstance(exc, SensorGuardError) else f"{type(exc).__name__}: {exc}"
        loaded = self.model if default else self.models.get(name)
        last = self.model_error if default else self.model_errors.get(name)
        if msg != last:
            if loaded is not None:
                log.warning("watch: model check of %s failed (%s); keeping it", name, msg)
            else:
                log.warning("watch: model %s cannot score yet (%s); its assets wait", name, msg)
        if default:
            self.model_error = msg
        self.model_errors[name] = msg

    def _refresh_asset_models(self) -> None:
        """Re-read the asset registry (routing); unload the models no asset uses."""
        from sensorguard.store.assets import asset_models

        self._asset_models_at = time.monotonic()
        try:
            self.asset_models = asset_models(self.config.store_url)
        except sa.exc.DBAPIError as exc:  # the step's own store error says more
            log.warning("watch: cannot read the asset registry: %s", str(exc).splitlines()[0])
            return
        used = set(self.asset_models.values()) | {self.settings.model_name}
        for name in set(self.model_errors) - used:
            del self.model_errors[name]
        for name in set(self.models) - used:
            del self.models[name]
            if self.metrics is not None:
                self.metrics.drop_model(name)

    def model_for(self, asset: str) -> tuple[str | None, _Model | None]:
        """The model that scores ``asset``: (its name, the loaded model or None)."""
        name = self.asset_models.get(asset) if self.routing else None
        if name is None or name == self.default_name:
            return self.default_name, self.model
        m = self.models.get(name)
        if m is None and name not in self.model_errors:
            self._check_type(name)  # registered since the last poll
            m = self.models.get(name)
        return name, m

    def _drop_stream(self, asset: str) -> None:
        for m in [self.model, *self.models.values()]:
            if m is not None:
                m.streams.drop(asset)

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
                self._drop_stream(gone)
            for gone in set(self.not_scored) - owned:
                del self.not_scored[gone]
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
        fresh = assets_with_new_readings(
            self.engine, known, [self.assets[a].ck.last_time for a in known]
        )
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

    # -- one pass over a chunk of assets
    def _plan(self, asset: str) -> _Model | None:
        """The model that scores ``asset`` now, or None (its model has none to load)."""
        if (
            self.routing
            and asset not in self.assets
            and asset not in self.not_scored
            and asset not in self.asset_models
            and time.monotonic() - self._asset_models_at >= 1.0
        ):
            self._refresh_asset_models()  # registered since the last poll?
        name, m = self.model_for(asset)
        if m is None:
            # its model has no production version (yet): never score it with another
            if self.not_scored.get(asset) != name:
                log.warning(
                    "watch: not scoring %s: model %s has no production version to load (%s)",
                    asset,
                    name,
                    self.model_errors.get(str(name), "not loaded"),
                )
                self.not_scored[asset] = str(name)
            if self.assets.pop(asset, None) is not None:
                self._drop_stream(asset)
            return None
        if self.not_scored.pop(asset, None) is not None:
            log.info("watch: scoring %s with %s version %s", asset, m.name, m.version)
        return m

    def _load(self, conn: sa.Connection, asset: str, ck: Any, m: _Model) -> tuple[_Asset, _Model]:
        """An asset new to this process, from its committed checkpoint ``ck``."""
        if ck is not None and ck.model_name == m.name and ck.model_version != m.version:
            # another process may already follow a newer alias: check first
            if m is self.model:
                self.check_model(force=True)
            else:
                self._check_type(m.name)
            m = self.model_for(asset)[1] or m
        a = new_asset(
            conn,
            asset,
            ck,
            m,
            top_k=self.config.top_k,
            rules=self.config.quality,
            start=self.config.start,
        )
        return a, m

    def _forget(self, asset: str) -> None:
        """Drop what a rolled-back pass changed in memory: the asset continues from its
        committed checkpoint at the next pass."""
        self.assets.pop(asset, None)
        self._drop_stream(asset)

    def _asset_failed(self, asset: str, exc: SensorGuardError) -> None:
        # this asset's data cannot be scored (e.g. a state the model refuses): the
        # others go on; it is retried at the next pass, the reason logged once
        self._forget(asset)
        if self._asset_errors.get(asset) != exc.message:
            log.error("watch: cannot score %s: %s", asset, exc.message)
        self._asset_errors[asset] = exc.message

    def _step_assets(self, assets: list[str], stats: StepStats) -> set[str]:
        """Score ``assets`` in one transaction; the assets fenced out (whose checkpoint
        another process moved: nothing of theirs is written, they are dropped).

        One query reads the new readings of every asset of a model, each asset is
        scored in memory, then one statement per kind writes the checkpoints (first:
        they fence and lock), the predictions, the alarm transitions and the outbox.
        Measured before (one transaction per asset, 100 assets x 13 readings): about
        6 round trips and 1-4 ms per asset, 0.1-0.3 s a pass."""
        plan: list[tuple[str, _Model]] = []
        for asset in assets:
            m = self._plan(asset)
            if m is not None:
                plan.append((asset, m))
        if not plan:
            return set()
        wall = time.time()
        stamps = {"t0": wall}
        cfg = self.config
        # at most pass_rows readings in memory per pass, at most batch_rows per asset
        limit = max(1, min(cfg.batch_rows, cfg.pass_rows // len(plan)))
        failed: set[str] = set()
        with self.engine.begin() as conn:
            fresh = [asset for asset, _m in plan if asset not in self.assets]
            cks = load_checkpoints(conn, fresh) if fresh else {}
            work: list[tuple[str, _Asset, _Model, list[Transition]]] = []
            for asset, m in plan:
                try:
                    a = self.assets.get(asset)
                    if a is None:
                        a, m = self._load(conn, asset, cks.get(asset), m)
                    # loading another asset of the chunk may have followed an alias
                    m = self.model_for(asset)[1] or m
                    transitions: list[Transition] = []
                    if not same_model(a.ck, m):
                        self._drop_stream(asset)
                        transitions += swap(a, m, cfg.top_k)
                except SensorGuardError as exc:
                    self._asset_failed(asset, exc)
                    failed.add(asset)
                    continue
                work.append((asset, a, m, transitions))
            # the readings: one query per model (its sensor order) for the whole chunk
            by_model: dict[int, list[tuple[str, _Asset, _Model, list[Transition]]]] = {}
            for w in work:
                by_model.setdefault(id(w[2]), []).append(w)
            new: dict[str, tuple[np.ndarray, np.ndarray]] = {}
            for group in by_model.values():
                m = group[0][2]
                new.update(
                    read_new_many(
                        conn,
                        [w[0] for w in group],
                        [w[1].ck.last_time for w in group],
                        sensors=m.sensors,
                        limit=limit,
                        sets=self._sensor_sets,
                    )
                )
            stamps["read"] = time.time()
            preds: list[Predictions] = []
            done: list[tuple[str, _Asset, _Model, list[Transition], int, bool]] = []
            late_due: list[tuple[str, _Asset]] = []
            scored = self._score_many(work, new, failed)
            for asset, a, m, transitions in work:
                if asset in failed:
                    continue
                times, X = new.get(asset, _EMPTY)
                n = times.size
                try:
                    dirty = self._score(
                        a, m, asset, times, X, transitions, preds, wall, scored.get(asset)
                    )
                except SensorGuardError as exc:
                    self._asset_failed(asset, exc)
                    failed.add(asset)
                    continue
                if n >= limit:
                    stats.backlog = True
                    with self._hint_lock:
                        self._dirty.add(asset)  # more to read: due at the next pass too
                if (
                    a.ck.last_time is not None
                    and a.ck.state.get("first_time")
                    and wall - a.late_checked >= cfg.late_check_s
                ):
                    late_due.append((asset, a))
                done.append((asset, a, m, transitions, n, dirty))
            if late_due:
                # stored = before the first scored reading + scored + late + not yet
                # scored; the first term is counted once per asset ("n_before")
                counts = stored_counts_many(
                    conn,
                    [
                        (
                            asset,
                            to_datetime(a.ck.state["first_time"]),
                            a.ck.last_time,
                            a.ck.state.get("n_before") is None,
                        )
                        for asset, a in late_due
                        if a.ck.last_time is not None
                    ],
                )
                changed = set()
                for asset, a in late_due:
                    a.late_checked = wall
                    c = counts.get(asset)
                    if c is None:
                        continue
                    if c.before is not None:
                        a.ck.state["n_before"] = c.before
                        changed.add(asset)
                    before = int(a.ck.state["n_before"])
                    late = max(0, c.total - before - a.ck.n_scored - c.after)
                    if late != a.ck.n_late:
                        stats.late += late - a.ck.n_late
                        a.ck.n_late = late
                        changed.add(asset)
                done = [(*d[:5], d[5] or d[0] in changed) for d in done]
            stamps["scored"] = time.time()
            # the writes: checkpoints first (they fence), then what they cover
            write = [d for d in done if d[5]]
            for asset, a, m, _t, _n, _d in write:
                a.ck.state = {
                    "stream": m.streams.state_of(asset),
                    "event": a.events.state(),
                    "quality": a.quality.state(),
                    "regime": a.regime.state(),
                    "last_arrival": a.last_arrival,
                    "first_time": a.ck.state.get("first_time"),
                    "n_before": a.ck.state.get("n_before"),
                    "sensors": m.sensors,  # the open event's, should another model take over
                }
            stamps["state"] = time.time()
            saved = save_checkpoints(conn, [d[1].ck for d in write])
            fenced = {d[0] for d in write if d[0] not in saved}
            stamps["checkpoints"] = time.time()
            write_predictions_many(
                conn, [p for p in preds if p.asset not in fenced], every=cfg.predictions_every
            )
            stamps["predictions"] = time.time()
            all_transitions: list[Transition] = []
            for asset, _a, _m, transitions, _n, _d in write:
                if asset not in fenced:
                    transitions.sort(key=lambda t: (t.at or t.start, t.kind != FAILURE))
                    all_transitions += transitions
            ids = apply_transitions(conn, all_transitions)
            self._enqueue(conn, all_transitions, ids)
            if not all_transitions:
                relax_commit(conn)  # no alarm in it: no WAL flush wait (watch_store)
            stamps["written"] = time.time()
        if TRACE is not None:
            TRACE.write(
                "pass",
                **stamps,
                commit=time.time(),
                assets=len(plan),
                rows=sum(d[4] for d in done),
                keys=[f"{i}:{t.name}" for t, i in zip(all_transitions, ids, strict=True)],
            )
        for asset, a, _m, _t, n, _d in done:
            if asset in fenced:
                self._forget(asset)  # another process owns it now
                continue
            self.assets[asset] = a
            stats.readings += n
            self._asset_errors.pop(asset, None)
        stats.fenced += len(fenced)
        stats.transitions += all_transitions
        if all_transitions and self.notifier is not None:
            # committed: send now, not after the rest of the pass (measured: the
            # webhook came ~0.5 s after the alarm was written with one wake per pass)
            self.notifier.wake()
        return fenced

    def _score(
        self,
        a: _Asset,
        m: _Model,
        asset: str,
        times: np.ndarray,
        X: np.ndarray,
        transitions: list[Transition],
        preds: list[Predictions],
        wall: float,
        res: StreamResult | None = None,
    ) -> bool:
        """Score one asset's new readings in memory (``transitions`` and ``preds`` get
        what is to be written; ``res``: the stream scorer's result for them when
        :meth:`_score_many` computed it already). True = its checkpoint has to be
        written."""
        n = times.size
        dirty = bool(transitions)
        first_new = times[0] if n else None
        if n:
            if res is None:
                # a copy: the scorer fills gaps in place, the quality rules need them
                res = m.streams.update(asset, times, X.copy())
            flags = np.asarray(res.is_anomaly, dtype=bool)
            score = np.asarray(res.score, dtype=np.float64)
            contrib = np.asarray(res.contributions, dtype=np.float64)
            # the regime rule holds the head's failure flags until it is judged
            regime, rows = a.regime.feed(times, X, flags, score, contrib)
            transitions += a.events.feed(*rows) + regime
            transitions += a.quality.feed(times, X)
            preds.append(
                Predictions(asset, times, res, flags, a.ck.n_scored, m.name, m.version, m.sensors)
            )
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
        return dirty or bool(transitions)

    def _score_many(
        self,
        work: list[tuple[str, _Asset, _Model, list[Transition]]],
        new: dict[str, tuple[np.ndarray, np.ndarray]],
        failed: set[str],
    ) -> dict[str, StreamResult]:
        """The pass's new readings of all assets of one model through one call of its
        stream scorer (each asset continues its own filter and alarm state there; a
        score may differ from a one-asset call in the last float32 bit, as another
        chunking of one asset's readings already does: at most 1.2e-7 measured).
        Measured (100 assets x 150 readings, operating-states, 10 sensors): 31 ms
        against 99-114 ms one asset at a time, the per-call overhead of the scorer and
        detector repeated per asset. An asset whose
        readings the model refuses (``arrange``: shape, infinite values) fails alone, as
        before; should the shared call itself fail, its assets are forgotten for this
        pass (their committed checkpoints stay) and scored one by one for a minute, so
        one bad asset cannot stop the others."""
        out: dict[str, StreamResult] = {}
        if time.monotonic() < self._solo_until:
            return out
        groups: dict[int, list[tuple[str, _Model, np.ndarray]]] = {}
        for asset, _a, m, _t in work:
            got = new.get(asset)
            if got is None or not got[0].size:
                continue
            try:
                # a new array: the scorer fills gaps in place, the quality rules need them
                A = m.streams.detector.schema_.arrange(got[1])
            except SensorGuardError as exc:
                self._asset_failed(asset, exc)
                failed.add(asset)
                continue
            groups.setdefault(id(m), []).append((asset, m, A))
        for group in groups.values():
            if len(group) == 1:
                continue  # one asset: update() in _score, as before
            m = group[0][1]
            keys = [asset for asset, _m, A in group for _ in range(A.shape[0])]
            try:
                res = m.streams.score(np.vstack([g[2] for g in group]), keys, transitions=False)
            except SensorGuardError as exc:
                log.warning(
                    "watch: scoring %d assets of %s together failed (%s); one by one for 60 s",
                    len(group),
                    m.name,
                    exc.message,
                )
                self._solo_until = time.monotonic() + 60.0
                for asset, _m, _A in group:
                    self._forget(asset)
                    failed.add(asset)
                continue
            lo = 0
            for asset, _m, A in group:
                hi = lo + A.shape[0]
                out[asset] = StreamResult(
                    res.score[lo:hi],
                    res.is_anomaly[lo:hi],
                    res.above[lo:hi],
                    res.state[lo:hi],
                    res.contributions[lo:hi],
                    res.top[lo:hi],
                )
                lo = hi
        return out

    def _step_asset(self, asset: str, stats: StepStats) -> None:
        """One asset on its own (a pass of one); raises :class:`_Fenced` when fenced."""
        if self._step_assets([asset], stats):
            raise _Fenced(asset)

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
        t0 = time.time()
        self.check_model()
        owned = sorted(self.refresh_leases())
        due = self._due(owned)
        if TRACE is not None:
            TRACE.write("step", t0=t0, due_at=time.time(), due=len(due), owned=len(owned))
        size = max(1, self.config.pass_assets)
        for lo in range(0, len(due), size):
            chunk = due[lo : lo + size]
            try:
                self._step_assets(chunk, stats)
            except BaseException as exc:
                # the chunk's transaction was rolled back: forget what it changed in
                # memory, and continue from the committed checkpoints at the next pass
                for asset in chunk:
                    self._forget(asset)
                if isinstance(exc, sa.exc.DBAPIError):  # a lost connection: retry later
                    log.warning(
                        "watch: store error on %d assets from %s: %s",
                        len(chunk),
                        chunk[0],
                        str(exc).splitlines()[0],
                    )
                else:
                    raise
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
        frozen = False
        try:
            while not stop.is_set():
                try:
                    stats = self.step()
                    if not frozen:
                        # After the first pass the heap holds what lives as long as the
                        # process (imported code, SQLAlchemy's statement caches, the model):
                        # about 194,000 tracked objects that every full collection walked,
                        # 110-350 ms each, 9-20 of them per 30-s latency run; frozen, the
                        # cyclic GC looks only at what the passes allocate (6-19 ms each).
                        gc.freeze()
                        frozen = True
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
        # no model yet (nothing promoted, registry down): wait for one, as the predictor
        # does; when routing, any machine type's model is enough to start
        try:
            watcher.check_model(force=True)
            if watcher.model is not None or watcher.models:
                break
            why = watcher.model_error or "nothing loaded"
        except SensorGuardError as exc:
            if not watcher._ref.startswith("models:/"):
                raise  # a folder that is not there will not appear by waiting
            why = exc.message
        log.warning("watch: no model to score with yet (%s); retrying", why)
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
