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

from starlette.concurrency import run_in_threadpool

from sensorguard.serving.auth import check_bearer
from sensorguard.serving.errors import RequestError, error_payload, internal_error
from sensorguard.serving.holder import ModelHolder
from sensorguard.serving.metrics import ServingMetrics
from sensorguard.serving.parsing import (
    check_content_type,
    parse_json_body,
    parse_predict_body,
    parse_predict_doc,
    read_body,
)

log = logging.getLogger("sensorguard.serving")

ORIENTS = ("records", "columns")
# batches this large are scored in a worker thread so health checks stay responsive
THREAD_BATCH = 2_000


class Disconnected(Exception):
    """The client went away before sending the whole body."""


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


class Predictor:
    def __init__(
        self,
        holder: ModelHolder,
        metrics: ServingMetrics,
        *,
        token: str | None,
        max_batch: int,
        max_body: int,
        pool: Any = None,
    ) -> None:
        self.holder = holder
        # several models (serving/fleet.py ModelPool): consulted only for a body with a
        # top-level "model" or "asset_id"; every other request takes the path below as is
        self.pool = pool
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
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        """Status, JSON body and extra headers for one prediction request."""
        t0 = time.perf_counter()
        model = self.holder.served  # read once: this request uses this version throughout
        try:
            if self.token is not None:
                check_bearer(auth, self.token)
            if model is None and (self.pool is None or not self.pool.extra):
                raise RequestError(
                    503,
                    "not_ready",
                    "no model is loaded yet",
                    f"check /readyz; last registry error: {self.holder.last_error or 'none'}",
                )
            orient, stateless = _query(query)
            if ctype != "application/json":  # the usual header needs no parsing
                check_content_type(ctype)
            if type(chunks) is bytes and len(chunks) <= self.max_body:
                body = chunks  # the whole body came in one message: no coroutine
            else:
                body = await read_body(chunks, length, self.max_body)
            doc = None
            if self.pool is not None:
                doc = parse_json_body(body)
                if "model" in doc or "asset_id" in doc:
                    model = await self.pool.route(doc)
            if model is None:
                raise RequestError(
                    503,
                    "not_ready",
                    "the default model is not loaded yet",
                    'check /readyz, or name a loaded "model" (GET /v1/models)',
                )
            if doc is None:
                batch = parse_predict_body(body, model, self.max_batch)
            else:
                batch = parse_predict_doc(doc, body, model, self.max_batch)
                # let the parsed readings go now: kept to the end of the request, their
                # 1,000 dicts (batch 1,000) stayed in the young GC generation while the
                # response was built, one more collection per request traversed them
                # (callgrind: 1.5 % of the request)
                doc = None
            # checked stateless too: the API describes asset_id as a string or an integer
            assets = _assets(batch.passthrough.get("asset_id"), batch.layout)
            if stateless:
                assets = None
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
            payload, headers = error_payload(internal_error(), model)
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
        # a small body arrives in one message: skip the async generator
        whole = first["type"] == "http.request" and not first.get("more_body", False)
        try:
            status, body, headers = await self.handle(
                auth,
                ctype,
                length,
                first.get("body", b"") if whole else _chunks(first, receive),
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


async def _chunks(first: dict[str, Any], receive: Any) -> AsyncIterator[bytes]:
    """The body of a request that arrives in several ASGI messages."""
    message = first
    while True:
        if message["type"] == "http.disconnect":
            raise Disconnected
        yield message.get("body", b"")
        if not message.get("more_body", False):
            return
        message = await receive()
