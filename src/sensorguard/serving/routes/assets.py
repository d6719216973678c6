"""``/v1/assets``: the asset registry, merged with each asset's live state.

One router serves both: the registry entry (:mod:`sensorguard.store.assets`: model =
machine type, site, area, description, sensor tags) and the live status the watch
service keeps (:func:`sensorguard.store.alarms.asset_live_status`: last reading, last
score and state, open alarms, model version). An asset that sends readings without a
registry entry is listed with ``registered: false`` — its readings are stored, never
dropped — and ``GET /v1/assets/{id}`` answers for it too (its live state).

The registry entry itself is the sub-resource ``/v1/assets/{id}/registration``:
``PUT /v1/assets/{id}`` creates or replaces it, ``GET``/``DELETE`` on it read or remove
it. ``DELETE`` is there, not on ``/v1/assets/{id}``, because removing the entry deletes
no asset: its readings, predictions and alarms stay, and so does its live view.

Responses go through the response models, so every time carries its zone (the store
keeps naive UTC). Store calls run in a worker thread. Reads and writes need the API
token when one is configured.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from starlette.concurrency import run_in_threadpool

from sensorguard.errors import RegistryError
from sensorguard.serving.deps import BearerDep, SettingsDep
from sensorguard.serving.errors import RequestError
from sensorguard.serving.openapi import error_responses
from sensorguard.serving.schemas import UtcTime
from sensorguard.store.assets import ASSET_ID_MAX, ASSET_ID_PATTERN, MODEL_NAME_PATTERN

router = APIRouter(tags=["assets"])

# any stored asset id (readings accept more than the registry's pattern)
AnyAssetId = Annotated[str, Path(min_length=1, max_length=ASSET_ID_MAX)]
# an id the registry accepts: letters, digits and . _ : - (one MQTT topic / URL segment)
AssetId = Annotated[str, Path(min_length=1, max_length=ASSET_ID_MAX, pattern=ASSET_ID_PATTERN)]
Tag = Annotated[str, StringConstraints(min_length=1, max_length=200)]


class AssetIn(BaseModel):
    """A registration: the machine type is required, the rest optional."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())
    model: str = Field(
        min_length=1,
        max_length=ASSET_ID_MAX,
        pattern=MODEL_NAME_PATTERN,
        description="Registered model = machine type, e.g. pump-centrifugal.",
    )
    site: str | None = Field(default=None, max_length=200)
    area: str | None = Field(default=None, max_length=200)
    description: str | None = Field(default=None, max_length=10_000)
    sensor_tags: dict[Tag, Tag] = Field(
        default_factory=dict,
        description='The plant tag of each sensor, e.g. {"flow_rate": "FT-101"}.',
    )


class OpenAlarm(BaseModel):
    id: int
    kind: str
    sensor: str | None
    start: UtcTime


class AssetEntry(BaseModel):
    """The registry entry alone (``/v1/assets/{id}/registration``)."""

    model_config = ConfigDict(protected_namespaces=())
    asset_id: str
    model: str = Field(description="Its machine type (registered model).")
    site: str | None
    area: str | None
    description: str | None
    sensor_tags: dict[str, str]
    created_at: UtcTime | None
    updated_at: UtcTime | None


class AssetOut(BaseModel):
    model_config = ConfigDict(protected_namespaces=())
    asset_id: str
    registered: bool = Field(description="Whether the asset registry has an entry.")
    model: str | None = Field(description="Its machine type (registered model).")
    site: str | None = None
    area: str | None = None
    description: str | None = None
    sensor_tags: dict[str, str] = Field(default_factory=dict)
    created_at: UtcTime | None = None
    updated_at: UtcTime | None = None
    last_reading_at: UtcTime | None = Field(description="Newest stored reading.")
    last_scored_at: UtcTime | None = None
    score: float | None = Field(default=None, description="Score of the last scored reading.")
    is_anomaly: bool | None = None
    state: str = Field(description="alarm, normal or not_scored (by the watch service).")
    model_name: str | None = Field(default=None, description="Model that scored it last.")
    model_version: str | None = None
    scored: int = Field(default=0, description="Readings the watch service scored.")
    late: int = Field(
        default=0, description="Readings stored too late to be scored (never scored)."
    )
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
    out.update(live)
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


@router.get(
    "/v1/assets",
    summary="Every asset: registry entry and live state",
    response_model=AssetList,
    responses=error_responses(401, 403, 422, 503),
)
async def list_assets(
    settings: SettingsDep,
    _: BearerDep,
    model: str | None = Query(
        None, max_length=ASSET_ID_MAX, description="Only the assets of this model."
    ),
) -> dict[str, Any]:
    from sensorguard.store.assets import list_registered_assets

    url = settings.resolved_store_url

    def read() -> dict[str, Any]:
        entries = {a.asset_id: a for a in list_registered_assets(model, url)}
        live = _live(None, url)
        ids = sorted(entries) if model is not None else sorted(set(entries) | set(live))
        rows = [_merge(entries.get(a), live.get(a), a) for a in ids]
        return {"assets": rows, "unregistered": sum(1 for r in rows if not r["registered"])}

    result: dict[str, Any] = await run_in_threadpool(read)
    return result


@router.get(
    "/v1/assets/{asset_id}",
    summary="One asset: registry entry and live state",
    description="Registered or not: an asset that sends readings without a registry entry "
    "answers with `registered: false` and its live state.",
    response_model=AssetOut,
    responses=error_responses(
        401, 403, 404, 422, 503, e404="Neither registered nor ever sent readings."
    ),
)
async def get_asset(asset_id: AnyAssetId, settings: SettingsDep, _: BearerDep) -> dict[str, Any]:
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
    return body


@router.put(
    "/v1/assets/{asset_id}",
    summary="Register an asset (or replace its entry)",
    response_model=AssetOut,
    status_code=200,
    responses={
        **error_responses(
            400,
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
    asset_id: AssetId,
    payload: AssetIn,
    request: Request,
    response: Response,
    settings: SettingsDep,
    _: BearerDep,
) -> dict[str, Any]:
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
    response.status_code = 201 if created else 200
    return body


def _not_registered(asset_id: str) -> RequestError:
    return RequestError(
        404,
        "unknown_asset",
        f"asset {asset_id!r} is not registered",
        f'see GET /v1/assets; register it with PUT /v1/assets/{asset_id} {{"model": NAME}}',
    )


@router.get(
    "/v1/assets/{asset_id}/registration",
    summary="An asset's registry entry alone",
    response_model=AssetEntry,
    responses=error_responses(401, 403, 404, 422, 503, e404="Not registered."),
)
async def get_registration(
    asset_id: AnyAssetId, settings: SettingsDep, _: BearerDep
) -> dict[str, Any]:
    from sensorguard.store.assets import get_asset as get_entry

    entry = await run_in_threadpool(get_entry, asset_id, settings.resolved_store_url)
    if entry is None:
        raise _not_registered(asset_id)
    result: dict[str, Any] = entry.to_dict()
    return result


@router.delete(
    "/v1/assets/{asset_id}/registration",
    summary="Remove an asset's registry entry (its readings, alarms and live view stay)",
    description="Unregisters the asset: predictions by its `asset_id` answer 404 until it is "
    "registered again. Nothing else is deleted, so `GET /v1/assets/{asset_id}` still answers "
    "(with `registered: false`) while the asset has readings.",
    status_code=204,
    responses=error_responses(401, 403, 404, 422, 503, e404="Not registered."),
)
async def delete_registration(
    asset_id: AnyAssetId, request: Request, settings: SettingsDep, _: BearerDep
) -> Response:
    from sensorguard.store.assets import remove_asset

    if not await run_in_threadpool(remove_asset, asset_id, settings.resolved_store_url):
        raise _not_registered(asset_id)
    pool = getattr(request.app.state, "pool", None)
    if pool is not None:
        pool.note_asset(asset_id, None)
    return Response(status_code=204)
