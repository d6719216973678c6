"""The predictor service: score live readings with the registry's production model.

``create_app()`` builds the FastAPI app: state (settings, model holder, metrics) on
``app.state`` for the dependencies in :mod:`~sensorguard.serving.deps`, the error
handlers of :mod:`~sensorguard.serving.errors`, the routers of
:mod:`~sensorguard.serving.routes` and the OpenAPI of :mod:`~sensorguard.serving.openapi`.
The model is loaded in the lifespan by a background task (see
:mod:`sensorguard.serving.holder`), so the process answers ``/healthz`` at once and
``/readyz`` turns 200 after the first successful load; a registry that is down at start
is retried every poll interval.

``POST /v1/predict`` is the hot path and skips the framework (:class:`PredictorApp`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from sensorguard import __version__
from sensorguard.serving import console
from sensorguard.serving.errors import install_handlers
from sensorguard.serving.fleet import ModelPool
from sensorguard.serving.holder import ModelHolder, ModelSource, RegistrySource
from sensorguard.serving.metrics import ServingMetrics
from sensorguard.serving.openapi import install_openapi
from sensorguard.serving.predict import Predictor
from sensorguard.serving.routes import ROUTERS
from sensorguard.serving.settings import ServingSettings

log = logging.getLogger("sensorguard.serving")


class PredictorApp(FastAPI):
    """FastAPI, except that ``POST /v1/predict`` skips the framework (see ``predict.py``:
    routing, dependencies and middleware cost about 80 µs a request, more than parsing
    and scoring a reading)."""

    predictor: Predictor | None = None
    fast_path: bool = True

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if (
            self.fast_path
            and scope["type"] == "http"
            and scope["path"] == "/v1/predict"
            and scope["method"] == "POST"
            and self.predictor is not None
        ):
            await self.predictor.asgi(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


async def _start_after_first_check(holder: ModelHolder, pool: ModelPool | None) -> None:
    """The other models' pollers start once the default holder has checked once.

    Their first checks import MLflow in worker threads too, and two threads importing it
    at once left it half-initialised for good (``partially initialized module 'mlflow'``
    on every later check: the predictor never became ready)."""
    if pool is None or holder.checked is None:
        return
    await holder.checked.wait()
    pool.start()


def create_app(
    settings: ServingSettings | None = None, source: ModelSource | None = None
) -> PredictorApp:
    """The predictor app. ``source`` defaults to the configured MLflow registry."""
    settings = settings or ServingSettings()
    metrics = ServingMetrics()
    holder = ModelHolder(source or RegistrySource(settings), metrics, settings.poll_interval)
    # every other registered model too, routed by "model"/"asset_id" (registry sources only)
    pool = ModelPool(holder, settings, metrics) if source is None else None
    metrics.tracked_assets.set_function(
        lambda: float(len(holder.served.alarms)) if holder.served is not None else 0.0
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        src = holder.source
        log.info(
            "predictor starting: %s@%s from %s, polling every %.1f s",
            *(src.name, src.alias, src.location(), holder.poll_interval),  # location: redacted
        )
        holder.start()
        later = asyncio.create_task(_start_after_first_check(holder, pool))
        try:
            yield
        finally:
            later.cancel()
            if pool is not None:
                await pool.stop()
            await holder.stop()

    app = PredictorApp(
        title="SensorGuard predictor",
        version=__version__,
        description=(
            "Scores sensor readings with the model the registry alias points at "
            f"(`models:/{holder.source.name}@{holder.source.alias}`), hot-swapping when the "
            "alias moves. Every prediction names the model name and version that made it."
        ),
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.holder = holder
    app.state.metrics = metrics
    app.state.pool = pool
    app.predictor = Predictor(
        holder,
        metrics,
        token=settings.api_token,
        max_batch=settings.max_batch,
        max_body=settings.max_body_bytes,
        pool=pool,
    )
    install_handlers(app, lambda: holder.served)
    for router in ROUTERS:
        app.include_router(router)
    app.include_router(console.router)
    app.mount(console.STATIC, console.static_app(), name="console-static")
    install_openapi(app, holder)
    return app


__all__ = ["PredictorApp", "create_app"]
