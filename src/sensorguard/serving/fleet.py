"""Several models in one predictor: one per machine type, each hot-swapped on its own alias.

Rules of this module:

* the settings' model (``SENSORGUARD_MODEL_NAME``) is the **default** and is always held
  (:class:`~sensorguard.serving.holder.ModelHolder` of ``app.state.holder``); a request
  without ``"model"`` or ``"asset_id"`` is scored by it exactly as before;
* every other registered model with a production version is held by its own
  ``ModelHolder`` (its own poller, its own alias check, its own swap, its own per-asset
  alarm state), loaded at start and when first asked for;
* at most ``SENSORGUARD_MAX_LOADED_MODELS`` models per process (default 8, the default
  model included): asking for one more unloads the least recently used other model
  (memory per loaded model is measured in ``benchmarks/bench_fleet.py``);
* ``"asset_id"`` is routed through the asset registry (``store.assets.asset_models``),
  cached, updated at once by ``PUT``/``DELETE /v1/assets`` of this process, re-read every
  poll interval, and at once (at most once a second) for an asset it does not know;
  an unregistered asset or an unknown model is a 404 that says how to fix it.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections import OrderedDict
from typing import Any

from sensorguard.config import redact
from sensorguard.serving.errors import RequestError
from sensorguard.serving.holder import ModelHolder, RegistrySource
from sensorguard.serving.metrics import ServingMetrics
from sensorguard.serving.model import ServedModel
from sensorguard.serving.settings import ServingSettings

log = logging.getLogger("sensorguard.serving")

_MISS_REFRESH_S = 1.0


class _ExtraHolder(ModelHolder):
    """A non-default model's holder: shares the metrics registry, and on a swap replaces
    only its own ``model_info`` series (the default holder owns the unlabelled gauges)."""

    last_used: float = 0.0
    _info: tuple[str, ...] | None = None

    def _swap(self, model: ServedModel) -> None:
        m = self.metrics
        self.served = model
        if self._info is not None:
            with contextlib.suppress(KeyError):
                m.model_info.remove(*self._info)
        self._info = (model.name, str(model.version), model.alias or "", model.run_id or "")
        m.model_info.labels(*self._info).set(1)
        m.reloads.inc()


class ModelPool:
    """The models a predictor serves, by name, with asset routing and an LRU bound."""

    def __init__(
        self, default: ModelHolder, settings: ServingSettings, metrics: ServingMetrics
    ) -> None:
        self.default = default
        self.settings = settings
        self.metrics = metrics
        self.max_models = int(settings.max_loaded_models)
        self.extra: OrderedDict[str, _ExtraHolder] = OrderedDict()
        self.evictions = 0
        self._assets: dict[str, str] = {}
        self._assets_at = 0.0
        self._miss_at = 0.0
        self._lock: asyncio.Lock | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def default_name(self) -> str:
        return str(self.default.source.name)

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> None:
        self._lock = asyncio.Lock()
        self._task = asyncio.create_task(self._discover_loop(), name="sensorguard-model-pool")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for holder in list(self.extra.values()):
            await holder.stop()
        self.extra.clear()

    async def _discover_loop(self) -> None:
        """Load the other models' production versions while there is room; keep the asset
        map fresh. Errors are logged and retried next round (the default model serves on).

        Starts after the default holder's first check: importing MLflow from two threads
        at once fails ("partially initialized module"), and that check imports it."""
        while self.default.last_check is None or self.default._lock is None:
            await asyncio.sleep(0.05)
        async with self.default._lock:  # the first check has finished (or failed)
            pass
        failing = False
        first = True
        while True:
            try:
                await self._discover()
                if failing:
                    log.info("model pool refresh works again")
                failing = False
            except Exception as exc:
                # the first failure of a streak loudly, repeats quietly; never a password
                level = logging.DEBUG if failing else logging.WARNING
                log.log(level, "model pool refresh failed: %s", redact(str(exc)))
                failing = True
            if first:
                # the first round builds SQLAlchemy's statement caches (about 3,300
                # objects) after ModelHolder._reload's gc.freeze(); left in the collected
                # heap, the older generations' collections walked them: 12.5 / 27.5 us per
                # 1,000-reading request (records / columns; bench_predict_inproc.py), 2.8 /
                # 4.6 us frozen, as before the pool existed (2.0 / 4.0)
                gc.freeze()
                first = False
            await asyncio.sleep(self.settings.poll_interval)

    async def _discover(self) -> None:
        # the asset map and the production models in one worker-thread hop: each hop makes
        # the event loop give up the GIL to the worker and wait to get it back
        self._assets, names = await asyncio.to_thread(self._read_registry)
        self._assets_at = time.monotonic()
        for name in names:
            if name == self.default_name or name in self.extra:
                continue
            if 1 + len(self.extra) >= self.max_models:
                return  # full: more models load on demand, replacing the least recently used
            await self._load(name, "start")

    def _read_registry(self) -> tuple[dict[str, str], list[str]]:
        from sensorguard.store.assets import asset_models

        return asset_models(self.settings.resolved_store_url), self._production_models()

    def _production_models(self) -> list[str]:
        from sensorguard.pipelines.fleet import model_names
        from sensorguard.registry.versions import version_at

        out = []
        for name in model_names(self.settings):
            if version_at(name, self.settings.alias, self.settings) is not None:
                out.append(name)
        return out

    async def _refresh_assets(self) -> None:
        from sensorguard.store.assets import asset_models

        url = self.settings.resolved_store_url
        self._assets = await asyncio.to_thread(asset_models, url)
        self._assets_at = time.monotonic()

    # ---------------------------------------------------------------- routing
    async def route(self, doc: dict[str, Any]) -> ServedModel:
        """The served model a predict document asks for (``model`` or ``asset_id``)."""
        name = doc.get("model")
        asset = doc.get("asset_id")
        if name is not None and type(name) is not str:
            raise RequestError(
                422,
                "bad_model",
                "'model' must be a registered model name",
                'e.g. "model": "pump-centrifugal"',
                path="model",
            )
        if asset is not None:
            if type(asset) is not str and type(asset) is not int:
                raise RequestError(
                    422,
                    "bad_asset_id",
                    "'asset_id' must be a string or an integer",
                    "the id the asset is registered under",
                    path="asset_id",
                )
            routed = await self.model_of(str(asset))
            if name is not None and name != routed:
                raise RequestError(
                    422,
                    "model_mismatch",
                    f"asset {asset!r} is registered with model '{routed}', not '{name}'",
                    "send only asset_id (it routes to its model), or fix the asset's entry "
                    f"with PUT /v1/assets/{asset}",
                    path="model",
                )
            name = routed
        assert name is not None
        return await self.served(name)

    def note_asset(self, asset: str, model: str | None) -> None:
        """An asset registered (or removed, ``model=None``) through this process."""
        if model is None:
            self._assets.pop(asset, None)
        else:
            self._assets[asset] = model

    async def model_of(self, asset: str) -> str:
        model = self._assets.get(asset)
        if model is None and time.monotonic() - self._miss_at > _MISS_REFRESH_S:
            self._miss_at = time.monotonic()  # registered elsewhere since the last refresh?
            await self._refresh_assets()
            model = self._assets.get(asset)
        if model is None:
            raise RequestError(
                404,
                "unknown_asset",
                f"asset {asset!r} is not in the asset registry",
                f'register it with PUT /v1/assets/{asset} {{"model": NAME}} or '
                '`sensorguard assets add`, or send "model" instead',
                path="asset_id",
            )
        return model

    async def served(self, name: str) -> ServedModel:
        """The loaded version of ``name`` (loading it if needed)."""
        if name == self.default_name:
            model = self.default.served
            if model is None:
                raise _not_ready(name, self.default.last_error)
            return model
        holder = self.extra.get(name)
        if holder is None:
            holder = await self._load(name)
        else:
            self.extra.move_to_end(name)
        holder.last_used = time.monotonic()
        model = holder.served
        if model is None:
            raise _not_ready(name, holder.last_error)
        return model

    async def _load(self, name: str, trigger: str = "demand") -> _ExtraHolder:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            holder = self.extra.get(name)
            if holder is not None:
                return holder
            source = RegistrySource(self.settings.model_copy(update={"model_name": name}))
            holder = _ExtraHolder(source, self.metrics, self.settings.poll_interval)
            result = await holder.refresh(trigger)
            if holder.served is None:
                raise RequestError(
                    404,
                    "unknown_model",
                    f"model '{name}' cannot be served: {redact(result.error or 'no version')}",
                    f"train it (`sensorguard train FILE --model {name}`) and promote a version "
                    f"to '{self.settings.alias}'; see `sensorguard models list`",
                    path="model",
                )
            while 1 + len(self.extra) >= self.max_models and self.extra:
                old_name, old = self.extra.popitem(last=False)
                await old.stop()
                self.evictions += 1
                log.info(
                    "unloaded model %s (least recently used; max %d)", old_name, self.max_models
                )
            holder.last_used = time.monotonic()
            holder.start()  # its own poller: hot swap on its own alias
            self.extra[name] = holder
            log.info("serving model %s version %s as well", name, holder.served.version)
            return holder

    # ---------------------------------------------------------------- reporting
    def describe(self) -> dict[str, Any]:
        """What is loaded: every model's name, version, alias, run and last use."""
        now = time.monotonic()
        rows = []
        for holder, default in [(self.default, True)] + [(h, False) for h in self.extra.values()]:
            m = holder.served
            rows.append(
                {
                    "name": holder.source.name,
                    "version": None if m is None else m.version,
                    "alias": holder.source.alias,
                    "run_id": None if m is None else m.run_id,
                    "loaded_at": None if m is None else m.loaded_at.isoformat(),
                    "default": default,
                    "ready": m is not None,
                    "sensors": [] if m is None else m.sensors,
                    "idle_seconds": None
                    if default
                    else round(now - getattr(holder, "last_used", now), 1),
                    "last_error": None if holder.last_error is None else redact(holder.last_error),
                }
            )
        return {
            "models": rows,
            "max_models": self.max_models,
            "evictions": self.evictions,
            "routed_assets": len(self._assets),
        }


def _not_ready(name: str, error: str | None) -> RequestError:
    return RequestError(
        503,
        "not_ready",
        f"model '{name}' is not loaded yet",
        f"check GET /v1/models; last registry error: {redact(error or 'none')}",
    )
