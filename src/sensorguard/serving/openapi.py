"""The OpenAPI description: request schemas and examples from the served model.

``POST /v1/predict`` reads its raw body (for speed), so FastAPI cannot derive its request
schema; :func:`install_openapi` adds it, built from the served model: every sensor of
the model is a *required* property (a reading without one gets 422 ``missing_sensors``),
values are numbers within the float32 range the detectors compute in (422
``out_of_range`` beyond), and unknown fields are allowed (ignored) or refused as the
model's ``extra_columns`` says. The description is rebuilt when a new version is
swapped in. Every operation documents ``500`` (a server fault, never a client mistake);
the tests check real responses against these schemas, and the fuzz test drives a live
server with them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from sensorguard.serving import schemas
from sensorguard.serving.errors import JSON
from sensorguard.serving.parsing import VALUE_LIMIT

if TYPE_CHECKING:  # pragma: no cover
    from sensorguard.serving.holder import ModelHolder
    from sensorguard.serving.model import ServedModel

ERRORS = {
    400: "Malformed JSON or an empty body.",
    401: "Missing bearer token (when SENSORGUARD_API_TOKEN is set).",
    403: "Wrong bearer token.",
    413: "More readings than SENSORGUARD_MAX_BATCH, or a body over SENSORGUARD_MAX_BODY_MB.",
    415: "Content-Type is not application/json.",
    422: "Missing sensors, non-numeric values (with their path), an empty batch, a repeated "
    "key, or a body of the wrong shape.",
    500: "A server fault (never a client mistake); the details are in the server log.",
    503: "No model loaded yet (see /readyz).",
}


def error_responses(*codes: int, **descriptions: str) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route: the shared error body under each status.
    ``descriptions`` override the text, keyed ``e503="..."``."""
    out: dict[int | str, dict[str, Any]] = {}
    for c in (*codes, 500):
        out[c] = {
            "model": schemas.ErrorResponse,
            "description": descriptions.get(f"e{c}", ERRORS.get(c, "")),
        }
    return out


_FALLBACK_SENSORS = {"temperature": 71.2, "pressure": 4.1, "flow_rate": 12.7}
_VALUE = {
    "anyOf": [
        {"type": "number", "minimum": -VALUE_LIMIT, "maximum": VALUE_LIMIT},
        {"type": "null"},
    ],
    "description": "Sensor value (null = missing); at most ±3.4e38 (float32).",
}
_ECHO = {"description": "Echoed back unchanged."}
_ASSET = {
    "anyOf": [{"type": "string"}, {"type": "integer"}, {"type": "null"}],
    "description": "The machine whose alarm state the reading continues; echoed back.",
}


def _request_schemas(model: ServedModel | None) -> dict[str, Any]:
    """``Reading``, ``RecordsRequest`` and ``ColumnsRequest`` for the served model."""
    sensors = list(model.sensors) if model is not None else list(_FALLBACK_SENSORS)
    extra_ok = model is None or model.schema["extra_columns"] != "error"
    reading = {
        "type": "object",
        "title": "Reading",
        "description": "One reading: every sensor of the model (null = missing), plus "
        "optional `timestamp` and `asset_id` that are echoed back. Other fields are "
        + ("ignored." if extra_ok else "refused by this model (422 unexpected_columns)."),
        "properties": {"timestamp": _ECHO, "asset_id": _ASSET, **{s: _VALUE for s in sensors}},
        "required": sensors,
        "additionalProperties": extra_ok,
    }
    records = schemas.RecordsRequest.model_json_schema(ref_template="#/components/schemas/{model}")
    records.pop("$defs", None)
    column = {"type": "array", "items": _VALUE, "minItems": 1}
    columns_body = {
        "type": "object",
        "description": "One equal-length list per sensor (numbers, null = missing), "
        "optionally `timestamp` and `asset_id` lists that are echoed back.",
        "properties": {
            "timestamp": {"type": "array", "items": _ECHO},
            "asset_id": {"type": "array", "items": _ASSET},
            **{s: column for s in sensors},
        },
        "required": sensors,
        "additionalProperties": extra_ok,
    }
    columns = {
        "type": "object",
        "title": "ColumnsRequest",
        "description": "Readings as columns: the compact form for large batches.",
        "properties": {"columns": columns_body},
        "required": ["columns"],
    }
    return {"Reading": reading, "RecordsRequest": records, "ColumnsRequest": columns}


def _examples(model: ServedModel | None) -> tuple[dict[str, Any], dict[str, Any]]:
    reading = model.example_reading() if model is not None else dict(_FALLBACK_SENSORS)
    name, version = (model.name, model.version) if model else ("sensor-failure-detector", 1)
    sensors = list(reading)
    second = {s: (None if i == 0 else v) for i, (s, v) in enumerate(reading.items())}
    records_ex = {
        "readings": [
            {"timestamp": "2026-01-01T00:00:00Z", "asset_id": "pump-01", **reading},
            {"timestamp": "2026-01-01T00:01:00Z", "asset_id": "pump-01", **second},
        ]
    }
    columns_ex = {"columns": {s: [reading[s], second[s]] for s in sensors}}
    request = {
        "records": {"summary": "Readings as records (null = sensor dropout)", "value": records_ex},
        "columns": {"summary": "Readings as columns", "value": columns_ex},
    }
    pred = {
        "score": 0.93,
        "is_anomaly": False,
        "above_threshold": False,
        "state": 1,
        "top_sensors": sensors[:3],
    }
    ref = {"name": name, "version": version}
    response = {
        "records": {
            "summary": "Default layout",
            "value": {
                "model": ref,
                "predictions": [
                    {**pred, "timestamp": "2026-01-01T00:00:00Z", "asset_id": "pump-01"},
                    {**pred, "timestamp": "2026-01-01T00:01:00Z", "asset_id": "pump-01"},
                ],
            },
        },
        "columns": {
            "summary": "With ?orient=columns",
            "value": {"model": ref, "columns": {k: [v, v] for k, v in pred.items()}},
        },
    }
    return request, response


def build(app: FastAPI, model: ServedModel | None) -> dict[str, Any]:
    schema = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    comps = schema.setdefault("components", {}).setdefault("schemas", {})
    comps.update(_request_schemas(model))
    request_ex, response_ex = _examples(model)
    op = schema["paths"]["/v1/predict"]["post"]
    op["requestBody"] = {
        "required": True,
        "content": {
            JSON: {
                "schema": {
                    "oneOf": [
                        {"$ref": "#/components/schemas/RecordsRequest"},
                        {"$ref": "#/components/schemas/ColumnsRequest"},
                    ]
                },
                "examples": request_ex,
            }
        },
    }
    op["responses"]["200"]["content"][JSON]["examples"] = response_ex
    comps_security = schema["components"].setdefault("securitySchemes", {})
    comps_security["bearer"] = {
        "type": "http",
        "scheme": "bearer",
        "description": "SENSORGUARD_API_TOKEN; optional for /v1/predict and /v1/readings "
        "(required once configured), required for /v1/admin/*.",
    }
    for path, ops in schema["paths"].items():
        for operation in ops.values():
            if path.startswith("/v1/admin/"):
                operation["security"] = [{"bearer": []}]
            elif any(c in operation.get("responses", {}) for c in ("401", "403")):
                operation["security"] = [{}, {"bearer": []}]
    return schema


def install_openapi(app: FastAPI, holder: ModelHolder) -> None:
    """``app.openapi`` built for the served model, cached per served version."""
    cache: dict[str, Any] = {}

    def openapi() -> dict[str, Any]:
        model = holder.served
        key = (model.name, model.version) if model is not None else None
        if cache.get("key") != key or "schema" not in cache:
            cache["schema"] = build(app, model)
            cache["key"] = key
        return cache["schema"]  # type: ignore[no-any-return]

    app.openapi = openapi  # type: ignore[method-assign]
