"""``/v1/admin/*``: operator actions, only with the API token (404 without one configured)."""

from __future__ import annotations

import orjson
from fastapi import APIRouter
from starlette.responses import Response

from sensorguard.serving import schemas
from sensorguard.serving.deps import AdminDep, HolderDep
from sensorguard.serving.errors import JSON
from sensorguard.serving.openapi import error_responses

router = APIRouter(prefix="/v1/admin", tags=["admin"])


@router.post(
    "/reload",
    summary="Check the alias now and swap if it moved (needs the API token)",
    response_model=schemas.ReloadResponse,
    responses={
        **error_responses(
            401, 403, 404, e404="Admin endpoints are disabled: no SENSORGUARD_API_TOKEN."
        ),
        502: {
            "model": schemas.ReloadResponse,
            "description": "The check or the load failed; the previous model serves on.",
        },
    },
)
async def reload(holder: HolderDep, _: AdminDep) -> Response:
    result = await holder.refresh("admin")
    body = result.to_dict()
    body["model"] = holder.served.ref if holder.served else None
    return Response(orjson.dumps(body), status_code=502 if result.error else 200, media_type=JSON)
