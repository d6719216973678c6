"""``POST /v1/readings``: batched, idempotent ingestion of live readings into the store.

The payload rules are :mod:`sensorguard.store.payload`'s (shared with MQTT ingestion);
this route adds what HTTP needs, the same as ``/v1/predict``: the bearer token when one
is configured, ``Content-Type: application/json`` (**required** here: this endpoint
writes, and a missing or form/text type is what a web page can send through an
operator's browser), the body limit ``SENSORGUARD_MAX_BODY_MB`` read as it streams in,
and parsing plus storing in a worker thread, so a 10k-reading batch never stalls the
event loop (and with it ``/v1/predict``). Errors are raised and answered by the app's
handlers (:mod:`sensorguard.serving.errors`)::

    {"asset_id": "pump-01",
     "readings": [{"timestamp": "2026-01-01T00:00:00Z", "motor_speed": 1480.2,
                   "flow_rate": null, "machine_status": "NORMAL"}]}

Idempotent on (asset, time): re-sending a batch stores nothing twice and reports the
repeats as ``duplicates``.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect
from starlette.responses import Response

from sensorguard.serving import schemas
from sensorguard.serving.deps import BearerDep, SettingsDep
from sensorguard.serving.errors import JSON
from sensorguard.serving.openapi import error_responses
from sensorguard.serving.parsing import check_content_type, read_body
from sensorguard.serving.settings import ServingSettings

router = APIRouter(tags=["readings"])

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
_NO_NUL = "^[^\\u0000]*$"
_ASSET = {"type": "string", "minLength": 1, "maxLength": 200, "pattern": _NO_NUL}


def _request_schema() -> dict[str, Any]:
    from sensorguard.store.payload import STATUS_KEYS, STATUS_MAX
    from sensorguard.timeutil import TIME_MAX, TIME_MIN

    status = {"type": "string", "maxLength": STATUS_MAX, "pattern": _NO_NUL}
    return {
        "type": "object",
        "required": ["readings"],
        "properties": {
            "asset_id": {**_ASSET, "description": "Asset of every reading without its own."},
            "readings": {
                "type": "array",
                "minItems": 1,
                "description": "Readings; at most SENSORGUARD_MAX_BATCH (413 above).",
                "items": {
                    "type": "object",
                    "required": ["timestamp"],
                    "properties": {
                        "timestamp": {
                            "anyOf": [
                                {"type": "string", "format": "date-time"},
                                {
                                    "type": "number",
                                    "minimum": TIME_MIN.timestamp(),
                                    "maximum": TIME_MAX.timestamp(),
                                },
                            ],
                            "description": "ISO 8601 (no zone = UTC; offsets converted) or "
                            f"Unix epoch seconds; {TIME_MIN.date()} .. {TIME_MAX.date()}.",
                        },
                        "asset_id": _ASSET,
                        "machine_status": {"anyOf": [status, {"type": "null"}]},
                        "status": {"anyOf": [status, {"type": "null"}]},
                    },
                    "additionalProperties": {
                        "anyOf": [{"type": "number"}, {"type": "null"}],
                        "description": "Sensor value; null = missing.",
                    },
                    "minProperties": 2,
                    # at least one sensor: a property that is none of the known fields
                    "not": {"propertyNames": {"enum": ["timestamp", "asset_id", *STATUS_KEYS]}},
                },
            },
        },
        # every reading has an asset: the batch's, or its own
        "anyOf": [
            {"required": ["asset_id"]},
            {"properties": {"readings": {"items": {"required": ["asset_id"]}}}},
        ],
        "example": _EXAMPLE,
    }


def _parse_and_store(body: bytes, settings: ServingSettings) -> dict[str, Any]:
    from sensorguard.store import ensure_schema, write_transaction
    from sensorguard.store.payload import parse_readings_payload, store_groups

    groups = parse_readings_payload(body, settings.max_batch)
    engine = ensure_schema(settings.resolved_store_url)
    # one transaction: a failed batch stores nothing; a lost connection (commit included)
    # is a StoreError (503), never a raw driver error
    with write_transaction(engine) as conn:
        return store_groups(conn, groups)


@router.post(
    "/v1/readings",
    summary="Store a batch of readings (idempotent on asset + time)",
    response_model=schemas.ReadingsResponse,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _request_schema()}},
        }
    },
    responses=error_responses(
        400,
        401,
        403,
        413,
        409,
        415,
        422,
        503,
        e400="Empty or malformed JSON body.",
        e409="A reading gives another value for a stored (asset, time, sensor); nothing of the "
        "batch is stored (`conflict` names the first).",
        e415="Content-Type is not application/json (required: this endpoint writes).",
        e422="Invalid reading (`path` names the field, e.g. readings[3].flow_rate), a repeated "
        "key, or a value the store cannot hold (`store_limit`: retrying cannot succeed).",
        e503="The readings store is unreachable; retry later (Retry-After).",
    ),
)
async def post_readings(request: Request, settings: SettingsDep, _: BearerDep) -> Response:
    check_content_type(request.headers.get("content-type"), required=True)
    try:
        body = await read_body(
            request.stream(), request.headers.get("content-length"), settings.max_body_bytes
        )
    except ClientDisconnect:  # nobody is left to answer
        return Response(status_code=400)
    result = await run_in_threadpool(_parse_and_store, body, settings)
    return Response(orjson.dumps(result), media_type=JSON)
