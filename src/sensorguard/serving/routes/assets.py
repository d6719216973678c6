"""``/v1/assets``: the asset registry, merged with each asset's live state.

One router serves both: the registry entry (:mod:`sensorguard.store.assets`: model =
machine type, site, area, description, sensor tags) and the live status the watch
service keeps (:func:`sensorguard.store.alarms.asset_live_status`: last reading, last
score and state, open alarms, model version). An asset that sends readings without a
registry entry is listed with ``registered: false`` — its readings are stored, never
dropped. Store calls run in a worker thread. Reads and writes need the API token when
one is configured.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from sensorguard.errors import RegistryError
from sensorguard.serving.deps import BearerDep, SettingsDep
from sensorguard.serving.errors import JSON, RequestError
from sensorguard.serving.openapi import error_responses

router = APIRouter(tags=["assets"])


class AssetIn(BaseModel):
    """A registration: the machine type is required, the rest optional."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())
    model: str = Field(description="Registered model = machine type, e.g. pump-centrifugal.")
    site: str | None = None
    area: str | None = None
    description: str | None = None
    sensor_tags: dict[str, str] = Field(
        default_factory=dict,
        description='The plant tag of each sensor, e.g. {"flow_rate": "FT-101"}.',
    )


class OpenAlarm(BaseModel):
    id: int
    kind: str
    sensor: str | None
    start: datetime


class AssetOut(BaseModel):
    model_config = ConfigDict(protected_namespaces=())
    asset_id: str
    registered: bool = Field(description="Whether the asset registry has an entry.")
    model: str | None = Field(description="Its machine type (registered model).")
    site: str | None = None
    area: str | None = None
    description: str | None = None
    sensor_tags: dict[str, str] = Field(default_factory=dict)
    created_at: datetime | None = None
    updated_at: datetime | None = None
    last_reading_at: datetime | None = Field(description="Newest stored reading.")
    last_scored_at: datetime | None = None
    score: float | None = Field(default=None, description="Score of the last scored reading.")
    is_anomaly: bool | None = None
    state: str = Field(description="alarm, normal or not_scored (by the watch service).")
    model_name: str | None = Field(default=None, description="Model that scored it last.")
    model_version: str | None = None
    open_alarms: list[OpenAlarm] = Field(default_factory=list)


class AssetList(BaseModel):
    assets: list[AssetOut]
    unregistered: int = Field(description="Assets sending readings without a registry entry.")


def _live(asset_ids: list[str] | None, url: str) -> dict[str, dict[str, Any]]:
    try:
        from sensorguard.store.alarms import asset_live_status
    except ImportError:  # pragma: no cover - the live tables ship with the store
        return {}
    return asset_live_status(asset_ids, url)


def _merge(entry: Any, live: dict[str, Any] | None, asset_id: str) -> dict[str, Any]:
    live = dict(live or {})
    out: dict[str, Any] = {
        "asset_id": asset_id,
        "registered": entry is not None,
        "model": None,
        "sensor_tags": {},
        "last_reading_at": None,
        "state": "not_scored",
        "open_alarms": [],
    }
    out.update({k: v for k, v in live.items() if k not in ("scored", "late")})
    if live.get("model_version") is not None:
        out["model_version"] = str(live["model_version"])
    if entry is not None:
        d = entry.to_dict()
        out.update(
            model=d["model"],
            site=d["site"],
            area=d["area"],
            description=d["description"],
            sensor_tags=d["sensor_tags"],
            created_at=d["created_at"],
            updated_at=d["updated_at"],
        )
    return out


def _dump(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body, default=str), status_code=status, media_type=JSON)


@router.get(
    "/v1/assets",
    summary="Every asset: registry entry and live state",
    response_model=AssetList,
    responses=error_responses(401, 403, 503),
)
async def list_assets(
    settings: SettingsDep,
    _: BearerDep,
    model: str | None = Query(None, description="Only the assets of this model."),
) -> Response:
    from sensorguard.store.assets import list_registered_assets

    url = settings.resolved_store_url

    def read() -> dict[str, Any]:
        entries = {a.asset_id: a for a in list_registered_assets(model, url)}
        live = _live(None, url)
        ids = sorted(entries) if model is not None else sorted(set(entries) | set(live))
        rows = [_merge(entries.get(a), live.get(a), a) for a in ids]
        return {"assets": rows, "unregistered": sum(1 for r in rows if not r["registered"])}

    return _dump(await run_in_threadpool(read))


@router.get(
    "/v1/assets/{asset_id}",
    summary="One asset: registry entry and live state",
    response_model=AssetOut,
    responses=error_responses(
        401, 403, 404, 503, e404="Neither registered nor ever sent readings."
    ),
)
async def get_asset(asset_id: str, settings: SettingsDep, _: BearerDep) -> Response:
    from sensorguard.store.assets import get_asset as get_entry

    url = settings.resolved_store_url

    def read() -> dict[str, Any] | None:
        entry = get_entry(asset_id, url)
        live = _live([asset_id], url).get(asset_id)
        if entry is None and live is None:
            return None
        return _merge(entry, live, asset_id)

    body = await run_in_threadpool(read)
    if body is None:
        raise RequestError(
            404,
            "unknown_asset",
            f"asset {asset_id!r} is not registered and has sent no readings",
            f'register it with PUT /v1/assets/{asset_id} {{"model": NAME}}',
        )
    return _dump(body)


@router.put(
    "/v1/assets/{asset_id}",
    summary="Register an asset (or replace its entry)",
    response_model=AssetOut,
    status_code=200,
    responses={
        **error_responses(
            401,
            403,
            409,
            422,
            503,
            e409="A sensor tag already belongs to another sensor or asset.",
            e422="Unknown model, a sensor the model does not have, or a bad field.",
        ),
        201: {"model": AssetOut, "description": "Registered (new asset)."},
    },
)
async def put_asset(
    asset_id: str, payload: AssetIn, request: Request, settings: SettingsDep, _: BearerDep
) -> Response:
    from sensorguard.pipelines.fleet import register_asset
    from sensorguard.store.assets import AssetError

    url = settings.resolved_store_url

    def write() -> tuple[dict[str, Any], bool]:
        entry, created = register_asset(
            asset_id,
            payload.model,
            site=payload.site,
            area=payload.area,
            description=payload.description,
            sensor_tags=payload.sensor_tags,
            settings=settings,
        )
        return _merge(
            entry, _live([entry.asset_id], url).get(entry.asset_id), entry.asset_id
        ), created

    try:
        body, created = await run_in_threadpool(write)
    except AssetError as exc:
        status = 409 if exc.code == "conflicting_sensors" else 422
        raise RequestError(status, exc.code, exc.message, exc.hint) from None
    except RegistryError as exc:
        raise RequestError(503, "registry_unavailable", exc.message, exc.hint) from None
    pool = getattr(request.app.state, "pool", None)
    if pool is not None:  # route predictions for it at once
        pool.note_asset(body["asset_id"], body["model"])
    return _dump(body, 201 if created else 200)


@router.delete(
    "/v1/assets/{asset_id}",
    summary="Remove an asset's registry entry (its readings stay)",
    status_code=204,
    responses=error_responses(401, 403, 404, 503, e404="Not registered."),
)
async def delete_asset(
    asset_id: str, request: Request, settings: SettingsDep, _: BearerDep
) -> Response:
    from sensorguard.store.assets import remove_asset

    if not await run_in_threadpool(remove_asset, asset_id, settings.resolved_store_url):
        raise RequestError(
            404, "unknown_asset", f"asset {asset_id!r} is not registered", "see GET /v1/assets"
        )
    pool = getattr(request.app.state, "pool", None)
    if pool is not None:
        pool.note_asset(asset_id, None)
    return Response(status_code=204)
