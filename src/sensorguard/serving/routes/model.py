"""``GET /v1/model``: the model being served."""

from __future__ import annotations

import orjson
from fastapi import APIRouter
from starlette.responses import Response

from sensorguard.serving import schemas
from sensorguard.serving.deps import HolderDep
from sensorguard.serving.errors import JSON, RequestError
from sensorguard.serving.openapi import error_responses

router = APIRouter(tags=["model"])


@router.get(
    "/v1/model",
    summary="The model being served",
    response_model=schemas.ModelInfo,
    responses=error_responses(503),
)
async def model_info(holder: HolderDep) -> Response:
    model = holder.served
    if model is None:
        raise RequestError(503, "not_ready", "no model is loaded yet", "check /readyz")
    return Response(orjson.dumps(model.describe()), media_type=JSON)
