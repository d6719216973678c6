"""Probes and scraping: ``/healthz``, ``/readyz``, ``/metrics`` (open, no token).

``/readyz`` names the registry it polls with any password masked
(:func:`sensorguard.config.redact`): the endpoint is unauthenticated.
"""

from __future__ import annotations

import orjson
from fastapi import APIRouter
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import Response

from sensorguard.serving import schemas
from sensorguard.serving.deps import HolderDep, MetricsDep
from sensorguard.serving.errors import JSON
from sensorguard.serving.openapi import error_responses

router = APIRouter(tags=["health"])


@router.get(
    "/healthz",
    summary="Liveness",
    response_model=schemas.Health,
    responses=error_responses(),
)
async def healthz() -> Response:
    return Response(b'{"status":"ok"}', media_type=JSON)


@router.get(
    "/readyz",
    summary="Readiness: 200 once a model is loaded, 503 before",
    response_model=schemas.Readiness,
    responses={
        503: {"model": schemas.Readiness, "description": "No model loaded yet."},
        **error_responses(),
    },
)
async def readyz(holder: HolderDep) -> Response:
    status = holder.status()
    return Response(
        orjson.dumps(status), status_code=200 if status["ready"] else 503, media_type=JSON
    )


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={
        200: {
            "content": {"text/plain": {"schema": {"type": "string"}}},
            "description": "Prometheus text.",
        },
        **error_responses(),
    },
)
async def prometheus(metrics: MetricsDep) -> Response:
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
