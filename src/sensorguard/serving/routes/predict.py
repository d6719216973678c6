"""``POST /v1/predict`` as a FastAPI route: it documents the endpoint.

The service answers this path on the raw ASGI fast path
(:class:`sensorguard.serving.app.PredictorApp`, :mod:`sensorguard.serving.predict`); this
route runs the same :meth:`Predictor.handle` when the fast path is switched off (the
tests run every request both ways), so the two cannot drift apart.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from sensorguard.serving import schemas
from sensorguard.serving.errors import JSON
from sensorguard.serving.openapi import error_responses
from sensorguard.serving.predict import Disconnected, Predictor

router = APIRouter(tags=["predict"])


@router.post(
    "/v1/predict",
    summary="Score a batch of readings",
    response_model=schemas.PredictResponse,
    responses=error_responses(400, 401, 403, 413, 415, 422, 503),
)
async def predict(
    request: Request,
    orient: Annotated[
        Literal["records", "columns"],
        Query(
            description="Response layout: `records` (a list of prediction objects) or "
            "`columns` (one list per field; smaller and faster for large batches)."
        ),
    ] = "records",
    stateless: Annotated[
        bool,
        Query(
            description="Score this batch on its own: `is_anomaly` uses only the batch as "
            "smoothing context and the per-asset alarm state is neither read nor updated "
            "(for scoring historic windows)."
        ),
    ] = False,
) -> Response:
    predictor: Predictor = request.app.predictor
    h = request.headers
    try:
        status, body, headers = await predictor.handle(
            h.get("authorization"),
            h.get("content-type"),
            h.get("content-length"),
            request.stream(),
            request.url.query,
        )
    except Disconnected:
        return Response(status_code=400)
    response = Response(body, status_code=status, media_type=JSON)
    for key, value in headers:
        response.headers.append(key.decode("latin-1"), value.decode("latin-1"))
    return response
