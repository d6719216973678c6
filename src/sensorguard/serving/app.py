"""The predictor service: score live readings with the registry's production model.

``create_app()`` builds the FastAPI app. The model is loaded in the lifespan by a
background task (see :mod:`sensorguard.serving.holder`), so the process answers
``/healthz`` at once and ``/readyz`` turns 200 after the first successful load; a
registry that is down at start is retried every poll interval.

``/v1/predict`` is the hot path: it reads the raw body, parses it with orjson into a
numpy array in the model's sensor order and encodes the answer with orjson. Pydantic
models (``schemas.py``) only document the API.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Literal

import orjson
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from sensorguard import __version__
from sensorguard.serving import schemas
from sensorguard.serving.auth import check_admin
from sensorguard.serving.holder import ModelHolder, ModelSource, RegistrySource
from sensorguard.serving.metrics import ServingMetrics
from sensorguard.serving.model import ServedModel
from sensorguard.serving.parsing import RequestError
from sensorguard.serving.predict import JSON, Disconnected, Predictor, error_payload
from sensorguard.serving.settings import ServingSettings

log = logging.getLogger("sensorguard.serving")

_ERRORS = {
    400: "Malformed JSON or an empty body.",
    401: "Missing bearer token (when SENSORGUARD_API_TOKEN is set).",
    403: "Wrong bearer token.",
    413: "More readings than SENSORGUARD_MAX_BATCH, or a body over SENSORGUARD_MAX_BODY_MB.",
    415: "Content-Type is not application/json.",
    422: "Missing sensors, non-numeric values (with their path), an empty batch, or a "
    "body of the wrong shape.",
    500: "A server fault (never a client mistake); the details are in the server log.",
    503: "No model loaded yet (see /readyz).",
}


def _error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {c: {"model": schemas.ErrorResponse, "description": _ERRORS[c]} for c in codes}


def _json(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(payload), status_code=status, media_type=JSON, headers=headers)


def _error(exc: RequestError, model: ServedModel | None = None) -> Response:
    body, headers = error_payload(exc, model)
    response = Response(body, status_code=exc.status, media_type=JSON)
    for key, value in headers:
        response.headers.append(key.decode("latin-1"), value.decode("latin-1"))
    return response


class PredictorApp(FastAPI):
    """FastAPI, except that ``POST /v1/predict`` skips the framework (see ``predict.py``)."""

    predictor: Predictor | None = None
    fast_path: bool = True

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if (
            self.fast_path
            and scope["type"] == "http"
            and scope["path"] == "/v1/predict"
            and scope["method"] == "POST"
            and self.predictor is not None
        ):
            await self.predictor.asgi(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def create_app(
    settings: ServingSettings | None = None, source: ModelSource | None = None
) -> FastAPI:
    """The predictor app. ``source`` defaults to the configured MLflow registry."""
    settings = settings or ServingSettings()
    metrics = ServingMetrics()
    holder = ModelHolder(source or RegistrySource(settings), metrics, settings.poll_interval)
    token = settings.api_token or None
    metrics.tracked_assets.set_function(
        lambda: float(len(holder.served.alarms)) if holder.served is not None else 0.0
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        log.info(
            "predictor starting: %s@%s from %s, polling every %.1f s",
            holder.source.name,
            holder.source.alias,
            holder.source.location(),
            holder.poll_interval,
        )
        holder.start()
        try:
            yield
        finally:
            await holder.stop()

    app = PredictorApp(
        title="SensorGuard predictor",
        version=__version__,
        description=(
            "Scores sensor readings with the model the registry alias points at "
            f"(`models:/{holder.source.name}@{holder.source.alias}`), hot-swapping when the "
            "alias moves. Every prediction names the model name and version that made it."
        ),
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
    )
    predictor = Predictor(
        holder, metrics, token=token, max_batch=settings.max_batch, max_body=settings.max_body_bytes
    )
    app.predictor = predictor
    app.state.holder = holder
    app.state.metrics = metrics
    app.state.settings = settings

    # ------------------------------------------------------------ errors
    @app.exception_handler(RequestError)
    async def _request_error(request: Request, exc: RequestError) -> Response:
        return _error(exc, holder.served)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
        details = [
            {"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", ""))}
            for e in exc.errors()
        ]
        first = details[0] if details else {"loc": [], "msg": "invalid request"}
        err = RequestError(
            422,
            "invalid_request",
            f"invalid request: {'.'.join(first['loc'])}: {first['msg']}",
            "see the API description at /docs",
            details=details,
        )
        return _error(err)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        codes = {404: "not_found", 405: "method_not_allowed"}
        hint = "see the API description at /docs" if exc.status_code in codes else None
        err = RequestError(
            exc.status_code, codes.get(exc.status_code, "http_error"), str(exc.detail), hint
        )
        return _error(err)

    @app.exception_handler(Exception)
    async def _server_error(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        err = RequestError(
            500, "internal_error", "internal server error; the details are in the server log"
        )
        return _error(err)

    # ------------------------------------------------------------ predict
    @app.post(
        "/v1/predict",
        summary="Score a batch of readings",
        response_model=schemas.PredictResponse,
        responses=_error_responses(400, 401, 403, 413, 415, 422, 500, 503),
        openapi_extra={"x-sensorguard-request": True},
        tags=["predict"],
    )
    async def predict(
        request: Request,
        orient: Literal["records", "columns"] = Query(
            "records",
            description="Response layout: `records` (a list of prediction objects) or "
            "`columns` (one list per field; smaller and faster for large batches).",
        ),
        stateless: bool = Query(
            False,
            description="Score this batch on its own: `is_anomaly` uses only the batch as "
            "smoothing context and the per-asset alarm state is neither read nor updated "
            "(for scoring historic windows).",
        ),
    ) -> Response:
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

    # ------------------------------------------------------------ model + health
    @app.get(
        "/v1/model",
        summary="The model being served",
        response_model=schemas.ModelInfo,
        responses=_error_responses(503),
        tags=["model"],
    )
    async def model_info() -> Response:
        model = holder.served
        if model is None:
            raise RequestError(503, "not_ready", "no model is loaded yet", "check /readyz")
        return _json(model.describe())

    @app.get("/healthz", summary="Liveness", response_model=schemas.Health, tags=["health"])
    async def healthz() -> Response:
        return _json({"status": "ok"})

    @app.get(
        "/readyz",
        summary="Readiness: 200 once a model is loaded, 503 before",
        response_model=schemas.Readiness,
        responses={503: {"model": schemas.Readiness, "description": "No model loaded yet."}},
        tags=["health"],
    )
    async def readyz() -> Response:
        status = holder.status()
        return _json(status, 200 if status["ready"] else 503)

    @app.get(
        "/metrics",
        summary="Prometheus metrics",
        response_class=Response,
        responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text."}},
        tags=["health"],
    )
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    # ------------------------------------------------------------ admin
    @app.post(
        "/v1/admin/reload",
        summary="Check the alias now and swap if it moved (needs the API token)",
        response_model=schemas.ReloadResponse,
        responses={
            **_error_responses(401, 403),
            404: {
                "model": schemas.ErrorResponse,
                "description": "Admin endpoints are disabled: no SENSORGUARD_API_TOKEN.",
            },
            502: {
                "model": schemas.ReloadResponse,
                "description": "The check or the load failed; the previous model serves on.",
            },
        },
        tags=["admin"],
    )
    async def reload(request: Request) -> Response:
        check_admin(request.headers.get("authorization"), token)
        result = await holder.refresh("admin")
        body = result.to_dict()
        body["model"] = holder.served.ref if holder.served else None
        return _json(body, 502 if result.error else 200)

    _include_extra_routers(app)
    _document(app, holder)
    return app


def _include_extra_routers(app: FastAPI) -> None:
    """Routes other parts of the project contribute (the readings store)."""
    try:
        from sensorguard.serving.readings_routes import router
    except ModuleNotFoundError as exc:
        if exc.name != "sensorguard.serving.readings_routes":
            raise
        return
    app.include_router(router)


# ------------------------------------------------------------------ OpenAPI
_FALLBACK_SENSORS = {"temperature": 71.2, "pressure": 4.1, "flow_rate": 12.7}


def _document(app: FastAPI, holder: ModelHolder) -> None:
    """OpenAPI with the real request schemas and examples from the served model.

    The predict handler reads the raw body (for speed), so its request schema is added
    here; examples use the served model's sensors and input example, and are rebuilt
    when a new version is swapped in.
    """
    cache: dict[str, Any] = {}

    def openapi() -> dict[str, Any]:
        model = holder.served
        key = (model.name, model.version) if model is not None else None
        if cache.get("key") == key and "schema" in cache:
            return cache["schema"]  # type: ignore[no-any-return]
        schema = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
        )
        comps = schema.setdefault("components", {}).setdefault("schemas", {})
        for cls in schemas.REQUEST_MODELS:
            js = cls.model_json_schema(ref_template="#/components/schemas/{model}")
            comps.update(js.pop("$defs", {}))
            comps[cls.__name__] = js
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
        pred = {
            "score": 0.93,
            "is_anomaly": False,
            "above_threshold": False,
            "state": 1,
            "top_sensors": sensors[:3],
        }
        op = schema["paths"]["/v1/predict"]["post"]
        op.pop("x-sensorguard-request", None)
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
                    "examples": {
                        "records": {
                            "summary": "Readings as records (null = sensor dropout)",
                            "value": records_ex,
                        },
                        "columns": {"summary": "Readings as columns", "value": columns_ex},
                    },
                }
            },
        }
        ref = {"name": name, "version": version}
        op["responses"]["200"]["content"][JSON]["examples"] = {
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
                "value": {
                    "model": ref,
                    "columns": {k: [v, v] for k, v in pred.items()},
                },
            },
        }
        schema["components"]["securitySchemes"] = {
            "bearer": {
                "type": "http",
                "scheme": "bearer",
                "description": "SENSORGUARD_API_TOKEN; optional for /v1/predict, "
                "required for /v1/admin/*.",
            }
        }
        op["security"] = [{}, {"bearer": []}]
        schema["paths"]["/v1/admin/reload"]["post"]["security"] = [{"bearer": []}]
        cache["key"] = key
        cache["schema"] = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


__all__ = ["create_app"]
