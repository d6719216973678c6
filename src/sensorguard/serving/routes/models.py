"""``GET /v1/models``: every model this predictor holds (one per machine type).

The default model is ``GET /v1/model``'s; the others are loaded by the model pool
(:mod:`sensorguard.serving.fleet`) at start and on demand, each hot-swapped on its own
alias, at most ``SENSORGUARD_MAX_LOADED_MODELS`` at once.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request
from pydantic import BaseModel, Field
from starlette.responses import Response

from sensorguard.serving.deps import BearerDep
from sensorguard.serving.errors import JSON
from sensorguard.serving.openapi import error_responses

router = APIRouter(tags=["model"])


class LoadedModelInfo(BaseModel):
    name: str
    version: int | None = Field(description="Version served (null while loading).")
    alias: str
    run_id: str | None
    loaded_at: str | None
    default: bool = Field(description="The settings' model: requests without model/asset_id.")
    ready: bool
    sensors: list[str]
    idle_seconds: float | None = Field(description="Since the last request (null: default).")
    last_error: str | None


class LoadedModels(BaseModel):
    models: list[LoadedModelInfo]
    max_models: int = Field(description="SENSORGUARD_MAX_LOADED_MODELS: models held at once.")
    evictions: int = Field(description="Models unloaded to stay within max_models.")
    routed_assets: int = Field(description="Registered assets POST /v1/predict can route.")


@router.get(
    "/v1/models",
    summary="The models this predictor serves",
    response_model=LoadedModels,
    responses=error_responses(401, 403),
)
async def loaded_models(request: Request, _: BearerDep) -> Response:
    pool = getattr(request.app.state, "pool", None)
    if pool is not None:
        body: dict[str, Any] = pool.describe()
    else:  # a custom model source: just the one model
        m = request.app.state.holder.served
        body = {
            "models": [
                {
                    "name": request.app.state.holder.source.name,
                    "version": None if m is None else m.version,
                    "alias": request.app.state.holder.source.alias,
                    "run_id": None if m is None else m.run_id,
                    "loaded_at": None if m is None else m.loaded_at.isoformat(),
                    "default": True,
                    "ready": m is not None,
                    "sensors": [] if m is None else m.sensors,
                    "idle_seconds": None,
                    "last_error": request.app.state.holder.last_error,
                }
            ],
            "max_models": 1,
            "evictions": 0,
            "routed_assets": 0,
        }
    return Response(orjson.dumps(body), media_type=JSON)
