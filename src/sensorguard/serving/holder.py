"""The served model and its hot swap.

``ModelHolder.served`` is one reference; a request reads it once and keeps that object,
so swapping is a single assignment and no request ever sees half a model. A swap:

1. resolves the alias to a version number (in a worker thread, off the event loop);
2. if the number differs from the one served, loads **that version** (by number, so a
   second promotion during the load cannot mix versions) and warms it up on its input
   example, still in a worker thread;
3. assigns the new object. Failures at any step keep the old model serving, are logged
   and counted in ``sensorguard_model_reload_failures_total{stage=...}``.

Checks run every ``poll_interval`` seconds and on ``POST /v1/admin/reload``. Until the
first load succeeds the same loop retries, and ``/readyz`` answers 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from sensorguard.config import redact
from sensorguard.serving.metrics import ServingMetrics
from sensorguard.serving.model import ServedModel
from sensorguard.serving.settings import ServingSettings

log = logging.getLogger("sensorguard.serving")

_MAX_BACKOFF = 60.0


class ModelSource(Protocol):
    """Where models come from: an alias to resolve and versions to load."""

    name: str
    alias: str

    def resolve(self) -> int: ...
    def load(self, version: int) -> ServedModel: ...
    def location(self) -> str: ...


class RegistrySource:
    """``models:/<name>@<alias>`` in the configured MLflow registry (embedded or server)."""

    def __init__(self, settings: ServingSettings) -> None:
        self.settings = settings
        self.name = settings.model_name
        self.alias = settings.alias
        # MLflow's HTTP retries and timeout: registry.setup.mlflow_http_env, from the
        # settings (ServingSettings.registry_http_retries = 0: the poll loop is the retry)

    def location(self) -> str:
        return redact(self.settings.resolved_registry_uri)

    def resolve(self) -> int:
        from sensorguard.registry import resolve_alias

        return int(resolve_alias(self.name, self.alias, settings=self.settings))

    def load(self, version: int) -> ServedModel:
        from sensorguard.registry import load_version

        lm = load_version(self.name, version, alias=self.alias, settings=self.settings)
        return ServedModel(
            lm,
            top_k=self.settings.top_k,
            max_assets=self.settings.max_tracked_assets,
        )


@dataclass
class ReloadResult:
    changed: bool
    version: int | None
    previous: int | None
    trigger: str
    error: str | None = None
    stage: str | None = None
    seconds: float = 0.0  # wall time of the check: waiting for one in progress, resolve, load

    def to_dict(self) -> dict[str, Any]:
        return {
            "changed": self.changed,
            "version": self.version,
            "previous": self.previous,
            "trigger": self.trigger,
            "error": self.error,
            "stage": self.stage,
            "seconds": round(self.seconds, 4),
        }


class _LoadFailed(Exception):
    def __init__(self, stage: str, cause: BaseException) -> None:
        super().__init__(f"{type(cause).__name__}: {cause}")
        self.stage = stage


class ModelHolder:
    def __init__(
        self, source: ModelSource, metrics: ServingMetrics, poll_interval: float = 5.0
    ) -> None:
        self.source = source
        self.metrics = metrics
        self.poll_interval = float(poll_interval)
        self.served: ServedModel | None = None
        self.last_error: str | None = None
        self.last_check: datetime | None = None
        self.failures_in_a_row = 0
        self._lock: asyncio.Lock | None = None
        self._task: asyncio.Task[None] | None = None
        self.checked: asyncio.Event | None = None  # set after the first check, good or bad
        # a version that failed to load is retried by the poller with backoff only
        self._bad: dict[int, tuple[int, float]] = {}

    @property
    def ready(self) -> bool:
        return self.served is not None

    # ---- lifecycle
    def start(self) -> None:
        self._lock = asyncio.Lock()
        self.checked = asyncio.Event()
        self._task = asyncio.create_task(self._poll(), name="sensorguard-model-poller")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _poll(self) -> None:
        while True:
            try:
                await self.refresh("poll")
            except Exception:  # never let the poller die
                log.exception("model poll failed unexpectedly")
            await asyncio.sleep(self.poll_interval)

    # ---- the swap
    async def refresh(self, trigger: str = "manual") -> ReloadResult:
        """Check the alias and swap to the version it points at if it moved."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        t0 = time.perf_counter()
        async with self._lock:
            try:
                result = await self._refresh(trigger)
            finally:
                if self.checked is not None:
                    self.checked.set()
        # the whole wait is what a caller sees (a hung registry: the running poll's
        # timeout plus this check's), so it is what a reload reports, success or not
        result.seconds = time.perf_counter() - t0
        return result

    async def _refresh(self, trigger: str) -> ReloadResult:
        prev = self.served
        prev_v = prev.version if prev is not None else None
        self.last_check = datetime.now(UTC)
        try:
            version = await asyncio.to_thread(self.source.resolve)
        except Exception as exc:
            return self._failure(trigger, "resolve", exc, prev_v, None)
        if version == prev_v:
            self._recovered()
            return ReloadResult(False, version, prev_v, trigger)
        if trigger == "poll" and version in self._bad:
            _, not_before = self._bad[version]
            if time.monotonic() < not_before:
                return ReloadResult(False, prev_v, prev_v, trigger, self.last_error, "backoff")
        t0 = time.perf_counter()
        try:
            model = await asyncio.to_thread(self._load_and_warm, version)
        except _LoadFailed as exc:
            return self._failure(trigger, exc.stage, exc, prev_v, version)
        seconds = time.perf_counter() - t0  # load + warm-up only, for the histogram
        self._swap(model)
        # move everything loaded so far (MLflow, pandas, the model) out of the cyclic GC's
        # reach: full collections then stay short instead of adding tens of ms to p99
        gc.freeze()
        self._bad.pop(version, None)
        self._recovered()
        self.metrics.load_seconds.observe(seconds)
        log.info(
            "serving %s version %s (alias %s; was %s), loaded and warmed in %.2f s [%s]",
            model.name,
            model.version,
            model.alias,
            prev_v if prev_v is not None else "none",
            seconds,
            trigger,
        )
        return ReloadResult(True, model.version, prev_v, trigger)

    def _load_and_warm(self, version: int) -> ServedModel:
        try:
            model = self.source.load(version)
        except Exception as exc:
            raise _LoadFailed("load", exc) from exc
        try:
            model.warm()
        except Exception as exc:
            raise _LoadFailed("warmup", exc) from exc
        model.bind_metrics(self.metrics)
        return model

    def _swap(self, model: ServedModel) -> None:
        m = self.metrics
        self.served = model  # the atomic swap: one reference assignment
        m.model_info.clear()
        m.model_info.labels(
            model.name, str(model.version), model.alias or "", model.run_id or ""
        ).set(1)
        m.model_version.set(model.version)
        m.model_loaded_at.set(model.loaded_at.timestamp())
        m.ready.set(1)
        m.reloads.inc()

    def _failure(
        self,
        trigger: str,
        stage: str,
        exc: BaseException,
        prev_v: int | None,
        version: int | None,
    ) -> ReloadResult:
        self.metrics.reload_failures.labels(stage).inc()
        message = redact(str(exc))  # shown by the open /readyz: no registry password
        what = (
            f"loading version {version} of {self.source.name}"
            if version is not None
            else f"resolving {self.source.name}@{self.source.alias} at "
            f"{redact(self.source.location())}"
        )
        keep = f"still serving version {prev_v}" if prev_v is not None else "not ready yet"
        # log the first failure of a streak loudly, repeats quietly, recovery once
        level = (
            logging.WARNING if self.failures_in_a_row == 0 or trigger != "poll" else logging.DEBUG
        )
        if version is not None:
            tries, _ = self._bad.get(version, (0, 0.0))
            delay = min(_MAX_BACKOFF, self.poll_interval * 2**tries)
            self._bad[version] = (tries + 1, time.monotonic() + delay)
            level = logging.WARNING
        log.log(level, "%s failed (%s): %s; %s", what, stage, message, keep)
        self.failures_in_a_row += 1
        self.last_error = f"{stage}: {message}"
        return ReloadResult(False, prev_v, prev_v, trigger, message, stage)

    def _recovered(self) -> None:
        if self.failures_in_a_row:
            log.info(
                "model registry reachable again after %d failed check(s)", self.failures_in_a_row
            )
        self.failures_in_a_row = 0
        self.last_error = None

    def status(self) -> dict[str, Any]:
        m = self.served
        return {
            "ready": m is not None,
            "model": m.ref if m is not None else None,
            "alias": self.source.alias,
            "registry": redact(self.source.location()),
            "last_check": self.last_check.isoformat() if self.last_check else None,
            "last_error": self.last_error,
            "failed_checks_in_a_row": self.failures_in_a_row,
        }
