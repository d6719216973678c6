"""The predictor's HTTP routes, one ``APIRouter`` per concern.

``create_app`` includes every router in :data:`ROUTERS`, in this order. A new concern
is a module here with a module-level ``router``, added to the tuple below.
"""

from __future__ import annotations

from fastapi import APIRouter

from sensorguard.serving.routes import (
    admin,
    alarms,
    assets,
    health,
    model,
    models,
    predict,
    readings,
    training_jobs,
)

ROUTERS: tuple[APIRouter, ...] = (
    predict.router,
    model.router,
    readings.router,
    health.router,
    admin.router,
    alarms.router,
    models.router,
    assets.router,
    training_jobs.router,
)
