"""``POST /v1/predict``: the hot path, as a plain ASGI handler.

Going through FastAPI's routing, dependency solving and exception middleware costs about
80 µs of CPU per request here, more than parsing and scoring a reading. So the app
(``PredictorApp``) hands ``POST /v1/predict`` straight to :class:`Predictor`; the FastAPI
route of the same path documents the endpoint and runs the same ``handle`` when the
fast path is switched off. Everything else (docs, metrics, health, admin) is FastAPI.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qsl

import orjson
from starlette.concurrency import run_in_threadpool

from sensorguard.serving.auth import check_bearer
from sensorguard.serving.holder import ModelHolder
from sensorguard.serving.metrics import ServingMetrics
from sensorguard.serving.model import ServedModel
from sensorguard.serving.parsing import RequestError, parse_predict_body

log = logging.getLogger("sensorguard.serving")

JSON = "application/json"
ORIENTS = ("records", "columns")
# batches this large are scored in a worker thread so health checks stay responsive
THREAD_BATCH = 2_000

Headers = list[tuple[bytes, bytes]]


class Disconnected(Exception):
    """The client went away before sending the whole body."""


def error_payload(exc: RequestError, model: ServedModel | None) -> tuple[bytes, Headers]:
    body = exc.body()
    headers: Headers = []
    if model is not None:
        body["model"] = model.ref
        headers.extend(model.headers)
    if exc.status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    elif exc.status == 503:
        headers.append((b"retry-after", b"1"))
    return orjson.dumps(body), headers


_TRUE = frozenset({"true", "1", "yes", "on", "t", "y"})
_FALSE = frozenset({"false", "0", "no", "off", "f", "n"})


def _query(query: bytes | str) -> tuple[str, bool]:
    """``orient`` and ``stateless`` from the query string (defaults when absent)."""
    if not query:
        return "records", False
    text = query.decode("latin-1") if isinstance(query, bytes) else query
    orient = "records"
    stateless = False
    for key, val in parse_qsl(text, keep_blank_values=True):
        if key == "orient":
            orient = val
            if orient not in ORIENTS:
                raise RequestError(
                    422,
                    "invalid_request",
                    "invalid request: query.orient: must be 'records' or 'columns', "
                    f"got {orient!r}",
                    "see the API description at /docs",
                    path="orient",
                )
        elif key == "stateless":
            low = val.strip().lower()
            if low not in _TRUE and low not in _FALSE:
                raise RequestError(
                    422,
                    "invalid_request",
                    f"invalid request: query.stateless: must be true or false, got {val!r}",
                    "see the API description at /docs",
                    path="stateless",
                )
            stateless = low in _TRUE
    return orient, stateless


def _assets(values: list[Any] | None, layout: str) -> list[Any] | None:
    """Per-reading asset keys for the alarm trackers: strings or integers (or null)."""
    if values is None:
        return None
    for i, v in enumerate(values):
        if v is not None and (type(v) is not str and (type(v) is not int)):
            raise RequestError(
                422,
                "bad_asset_id",
                f"asset_id of reading {i} must be a string or an integer, got {_kind(v)}",
                "asset_id names the machine whose alarm state the reading continues",
                path=(
                    f"readings[{i}].asset_id" if layout == "records" else f"columns.asset_id[{i}]"
                ),
            )
    return values


def _kind(v: Any) -> str:
    return "a boolean" if isinstance(v, bool) else type(v).__name__


def _check_content_type(ctype: str | None) -> None:
    if ctype is None:  # a missing header is read as JSON; a wrong one is refused
        return
    media = ctype.split(";", 1)[0].strip().lower()
    if media != JSON and not media.endswith("+json"):
        raise RequestError(
            415,
            "unsupported_media_type",
            f"expected Content-Type: application/json, got {media or 'nothing'}",
            "send JSON with the header 'Content-Type: application/json'",
        )


def _too_big(limit: int) -> RequestError:
    return RequestError(
        413,
        "body_too_large",
        f"the request body exceeds {limit / (1024 * 1024):g} MiB",
        "split the batch, or raise SENSORGUARD_MAX_BODY_MB",
    )


async def _collect(chunks: AsyncIterator[bytes] | bytes, length: str | None, limit: int) -> bytes:
    if length is not None and length.isdigit() and int(length) > limit:
        raise _too_big(limit)
    if isinstance(chunks, bytes):  # the whole body came in one message
        if len(chunks) > limit:
            raise _too_big(limit)
        return chunks
    first = b""
    parts: list[bytes] = []
    size = 0
    async for chunk in chunks:
        if not chunk:
            continue
        size += len(chunk)
        if size > limit:
            raise _too_big(limit)
        if not first:
            first = chunk
        else:
            parts.append(chunk)
    return first if not parts else first + b"".join(parts)


class Predictor:
    def __init__(
        self,
        holder: ModelHolder,
        metrics: ServingMetrics,
        *,
        token: str | None,
        max_batch: int,
        max_body: int,
    ) -> None:
        self.holder = holder
        self.metrics = metrics
        self.token = token or None
        self.max_batch = max_batch
        self.max_body = max_body

    async def handle(
        self,
        auth: str | None,
        ctype: str | None,
        length: str | None,
        chunks: AsyncIterator[bytes] | bytes,
        query: bytes | str,
    ) -> tuple[int, bytes, Headers]:
        """Status, JSON body and extra headers for one prediction request."""
        t0 = time.perf_counter()
        model = self.holder.served  # read once: this request uses this version throughout
        try:
            if self.token is not None:
                check_bearer(auth, self.token)
            if model is None:
                raise RequestError(
                    503,
                    "not_ready",
                    "no model is loaded yet",
                    f"check /readyz; last registry error: {self.holder.last_error or 'none'}",
                )
            orient, stateless = _query(query)
            _check_content_type(ctype)
            body = await _collect(chunks, length, self.max_body)
            batch = parse_predict_body(body, model, self.max_batch)
            assets = None if stateless else _assets(batch.passthrough.get("asset_id"), batch.layout)
            if batch.values.shape[0] >= THREAD_BATCH:
                scored = await run_in_threadpool(
                    model.score, batch.values, assets, stateless, batch.missing
                )
                payload = await run_in_threadpool(model.encode, scored, batch.passthrough, orient)
            else:
                scored = model.score(batch.values, assets, stateless, batch.missing)
                payload = model.encode(scored, batch.passthrough, orient)
            model.count(scored)
            self.metrics.ok_requests.inc()
            result = (200, payload, model.headers)
        except RequestError as exc:
            self.metrics.requests.labels(exc.code).inc()
            payload, headers = error_payload(exc, model)
            result = (exc.status, payload, headers)
        except Disconnected:
            self.metrics.requests.labels("client_disconnected").inc()
            raise
        except Exception:
            log.exception("prediction failed")
            self.metrics.requests.labels("internal_error").inc()
            err = RequestError(
                500, "internal_error", "internal server error; the details are in the server log"
            )
            payload, headers = error_payload(err, model)
            result = (500, payload, headers)
        self.metrics.predict_latency.observe(time.perf_counter() - t0)
        return result

    async def asgi(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """The raw ASGI entry point for ``POST /v1/predict``."""
        auth = ctype = length = None
        for key, value in scope["headers"]:
            if key == b"authorization":
                auth = value.decode("latin-1")
            elif key == b"content-type":
                ctype = value.decode("latin-1")
            elif key == b"content-length":
                length = value.decode("latin-1")

        first = await receive()

        async def chunks() -> AsyncIterator[bytes]:
            message = first
            while True:
                if message["type"] == "http.disconnect":
                    raise Disconnected
                yield message.get("body", b"")
                if not message.get("more_body", False):
                    return
                message = await receive()

        # a small body arrives in one message: skip the async generator
        whole = first["type"] == "http.request" and not first.get("more_body", False)
        try:
            status, body, headers = await self.handle(
                auth,
                ctype,
                length,
                first.get("body", b"") if whole else chunks(),
                scope.get("query_string", b""),
            )
        except Disconnected:
            return
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    *headers,
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
