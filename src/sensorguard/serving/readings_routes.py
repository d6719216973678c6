"""``POST /v1/readings``: batched, idempotent ingestion of live readings into the store.

Included by the predictor app (``app.include_router(router)``); it shares the error body
of the other endpoints (``{"error": {"code", "message", "hint", "path"}}``). Each
reading is a flat record like a row of a readings file::

    {"asset_id": "pump-01",
     "readings": [{"timestamp": "2026-01-01T00:00:00Z", "motor_speed": 1480.2,
                   "flow_rate": null, "machine_status": "NORMAL"}]}

Idempotent on (asset, time): re-sending a batch stores nothing twice and reports the
repeats as ``duplicates``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response

from sensorguard.errors import SensorGuardError
from sensorguard.serving.auth import check_bearer
from sensorguard.serving.parsing import RequestError

router = APIRouter(tags=["readings"])

STATUS_KEYS = ("machine_status", "status")
_TIME_HINT = "use ISO 8601, e.g. 2026-01-01T00:00:00Z (times without a zone are UTC)"
_SHAPE_HINT = (
    'send {"asset_id": "pump-01", "readings": [{"timestamp": "2026-01-01T00:00:00Z", '
    '"sensor": 1.0, ...}]}'
)

_EXAMPLE = {
    "asset_id": "pump-01",
    "readings": [
        {
            "timestamp": "2026-01-01T00:00:00Z",
            "motor_speed": 1480.2,
            "flow_rate": 52.1,
            "machine_status": "NORMAL",
        },
        {"timestamp": "2026-01-01T00:01:00Z", "motor_speed": 1479.8, "flow_rate": None},
    ],
}

_REQUEST_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["readings"],
    "properties": {
        "asset_id": {
            "type": "string",
            "minLength": 1,
            "maxLength": 200,
            "description": "Asset of every reading without its own `asset_id`.",
        },
        "readings": {
            "type": "array",
            "minItems": 1,
            "description": "Readings; at most SENSORGUARD_MAX_BATCH (413 above).",
            "items": {
                "type": "object",
                "required": ["timestamp"],
                "properties": {
                    "timestamp": {"type": "string", "format": "date-time"},
                    "asset_id": {"type": "string"},
                    "machine_status": {"type": ["string", "null"]},
                },
                "additionalProperties": {
                    "type": ["number", "null"],
                    "description": "Sensor value; null = missing.",
                },
            },
        },
    },
    "example": _EXAMPLE,
}

_ERROR_SCHEMA = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "hint": {"type": "string"},
                "path": {"type": "string", "example": "readings[3].flow_rate"},
            },
        }
    },
}


def _err(status: int, code: str, message: str, hint: str | None = None, path: str | None = None):  # type: ignore[no-untyped-def]
    extra = {"path": path} if path is not None else {}
    return RequestError(status, code, message, hint, **extra)


def _parse_time(value: Any, path: str) -> datetime:
    if not isinstance(value, str):
        raise _err(422, "bad_timestamp", f"{path} must be a string", _TIME_HINT, path)
    try:
        ts = datetime.fromisoformat(value)
    except ValueError:
        raise _err(
            422, "bad_timestamp", f"{path}: cannot read {value!r}", _TIME_HINT, path
        ) from None
    if ts.tzinfo is not None:
        ts = ts.astimezone(UTC).replace(tzinfo=None)
    return ts


class _Group:
    __slots__ = ("rows", "sensors", "status", "times")

    def __init__(self, sensors: tuple[str, ...]) -> None:
        self.sensors = sensors
        self.times: list[datetime] = []
        self.rows: list[list[float | None]] = []
        self.status: list[str | None] = []


def parse_readings(body: bytes, max_batch: int) -> dict[tuple[str, tuple[str, ...]], _Group]:
    """Validate a request body; group readings by asset and sensor set."""
    if not body:
        raise _err(400, "empty_body", "the request body is empty", _SHAPE_HINT)
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise _err(
            400,
            "malformed_json",
            f"the request body is not valid JSON: {exc}",
            "check quoting and commas; NaN and Infinity are not JSON — send null",
        ) from None
    if not isinstance(doc, dict):
        raise _err(422, "bad_body", "the request body must be a JSON object", _SHAPE_HINT, "$")
    default_asset = doc.get("asset_id")
    if default_asset is not None and (
        not isinstance(default_asset, str) or not 0 < len(default_asset) <= 200
    ):
        raise _err(
            422, "bad_asset", "asset_id must be a string of 1-200 characters", None, "asset_id"
        )
    items = doc.get("readings")
    if not isinstance(items, list):
        raise _err(
            422, "bad_body", "'readings' must be a list of reading objects", _SHAPE_HINT, "readings"
        )
    if not items:
        raise _err(
            422, "empty_batch", "'readings' is empty", "send at least one reading", "readings"
        )
    if len(items) > max_batch:
        raise _err(
            413,
            "batch_too_large",
            f"{len(items)} readings in one request; the limit is {max_batch}",
            "split the batch, or raise SENSORGUARD_MAX_BATCH",
        )
    groups: dict[tuple[str, tuple[str, ...]], _Group] = {}
    for i, item in enumerate(items):
        where = f"readings[{i}]"
        if not isinstance(item, dict):
            raise _err(422, "bad_reading", f"{where} must be an object", _SHAPE_HINT, where)
        if "timestamp" not in item:
            raise _err(
                422,
                "missing_timestamp",
                f"{where} has no timestamp",
                _TIME_HINT,
                where + ".timestamp",
            )
        ts = _parse_time(item["timestamp"], where + ".timestamp")
        asset = item.get("asset_id", default_asset)
        if not isinstance(asset, str) or not 0 < len(asset) <= 200:
            raise _err(
                422,
                "missing_asset",
                f"{where} has no asset_id (1-200 characters)",
                "set asset_id on the batch or on the reading",
                where + ".asset_id",
            )
        status: str | None = None
        sensors: list[str] = []
        values: list[float | None] = []
        for key, value in item.items():
            if key in ("timestamp", "asset_id"):
                continue
            if key in STATUS_KEYS:
                if value is not None and not isinstance(value, str):
                    raise _err(
                        422,
                        "bad_status",
                        f"{where}.{key} must be a string or null",
                        None,
                        f"{where}.{key}",
                    )
                status = value
                continue
            if value is not None and (type(value) not in (int, float)):
                raise _err(
                    422,
                    "not_a_number",
                    f"{where}.{key} must be a number or null, got {type(value).__name__}",
                    "sensor values must be JSON numbers; send null for a missing reading",
                    f"{where}.{key}",
                )
            sensors.append(key)
            values.append(value)
        if not sensors:
            raise _err(422, "no_sensors", f"{where} has no sensor values", _SHAPE_HINT, where)
        gkey = (asset, tuple(sensors))
        group = groups.get(gkey)
        if group is None:
            group = groups[gkey] = _Group(gkey[1])
        group.times.append(ts)
        group.rows.append(values)
        group.status.append(status)
    return groups


def _store(groups: dict[tuple[str, tuple[str, ...]], _Group], url: str | None) -> dict[str, Any]:
    from sensorguard.store import ensure_schema, insert_frame

    engine = ensure_schema(url)
    inserted = received = 0
    assets: list[str] = []
    for (asset, _), group in groups.items():
        values = np.array(group.rows, dtype=np.float64)  # None -> NaN
        status = group.status if any(s is not None for s in group.status) else None
        res = insert_frame(engine, asset, group.times, values, list(group.sensors), status)
        received += res.rows
        inserted += res.inserted
        if asset not in assets:
            assets.append(asset)
    return {
        "asset_ids": assets,
        "received": received,
        "inserted": inserted,
        "duplicates": received - inserted,
    }


@router.post(
    "/v1/readings",
    summary="Store a batch of readings (idempotent on asset + time)",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _REQUEST_SCHEMA}},
        }
    },
    responses={
        200: {
            "description": "Stored; repeats of stored (asset, time) pairs count as duplicates.",
            "content": {
                "application/json": {
                    "example": {
                        "asset_ids": ["pump-01"],
                        "received": 2,
                        "inserted": 2,
                        "duplicates": 0,
                    }
                }
            },
        },
        400: {
            "description": "Empty or malformed JSON body.",
            "content": {"application/json": {"schema": _ERROR_SCHEMA}},
        },
        401: {"description": "A token is configured and none was sent."},
        403: {"description": "Wrong token."},
        413: {"description": "More readings than SENSORGUARD_MAX_BATCH."},
        422: {
            "description": "Invalid reading; `path` names the field, e.g. readings[3].flow_rate.",
            "content": {"application/json": {"schema": _ERROR_SCHEMA}},
        },
        503: {"description": "The readings store is unreachable."},
    },
)
async def post_readings(request: Request) -> Response:
    settings = getattr(request.app.state, "settings", None)
    if settings is None:  # mounted outside the predictor app
        from sensorguard.config import get_settings

        settings = get_settings()
    try:
        if settings.api_token:
            check_bearer(request.headers.get("authorization"), settings.api_token)
        groups = parse_readings(await request.body(), settings.max_batch)
        result = await run_in_threadpool(_store, groups, settings.store_url)
    except RequestError as exc:
        return JSONResponse(exc.body(), status_code=exc.status)
    except SensorGuardError as exc:
        from sensorguard.store import StoreError

        status = 503 if isinstance(exc, StoreError) else 422
        code = "store_unavailable" if status == 503 else "bad_readings"
        body = {"error": {"code": code, "message": exc.message, "hint": exc.hint}}
        return JSONResponse(body, status_code=status)
    except Exception as exc:  # the database went away mid-request
        import sqlalchemy as sa

        if not isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError):
            raise
        body = {
            "error": {
                "code": "store_unavailable",
                "message": f"the readings store is unreachable: {str(exc.orig).strip()}",
                "hint": "check SENSORGUARD_STORE_URL and the database server; then retry",
            }
        }
        return JSONResponse(body, status_code=503)
    return JSONResponse(result)
