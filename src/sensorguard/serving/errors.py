"""Every error the predictor answers, in one shape and from one place.

The body is always ``{"error": {"code", "message", "hint"?, "path"?, ...}, "model"?}``;
the served model is named in the body and the ``X-Model-*`` headers when one is loaded.
Routes *raise* (:class:`RequestError`, the store's
:class:`~sensorguard.store.payload.PayloadError`, ``StoreLimitError``,
``ReadingConflictError`` or ``StoreError``, or a database error) and
:func:`install_handlers` answers through :func:`error_response`; the raw ASGI predict path
builds the same bytes with :func:`error_payload`. What the store cannot hold is a 4xx that
names the limit (retrying cannot help), an outage a 503 with ``Retry-After``. A 500 is
only ever a server fault, its body says nothing about the fault (the log does), and it
keeps the keep-alive connection (:class:`ServerFaults`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from sensorguard.config import redact
from sensorguard.errors import DataValidationError, SchemaMismatchError, SensorGuardError

if TYPE_CHECKING:  # pragma: no cover
    from sensorguard.serving.model import ServedModel

log = logging.getLogger("sensorguard.serving")

JSON = "application/json"
DOCS_HINT = "see the API description at /docs"
Headers = list[tuple[bytes, bytes]]


class RequestError(Exception):
    """A client mistake (or a named server condition such as 503 not ready)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        hint: str | None = None,
        *,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.hint = hint
        self.headers = headers or {}
        self.extra = {k: v for k, v in extra.items() if v is not None}

    def body(self) -> dict[str, Any]:
        err: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.hint:
            err["hint"] = self.hint
        err.update(self.extra)
        return {"error": err}


def internal_error() -> RequestError:
    return RequestError(
        500, "internal_error", "internal server error; the details are in the server log"
    )


def as_request_error(exc: BaseException) -> RequestError:
    """Any exception as the error the client gets (500 for anything unexpected)."""
    if isinstance(exc, RequestError):
        return exc
    import sqlalchemy as sa

    from sensorguard import store
    from sensorguard.store.payload import PayloadError

    if isinstance(exc, PayloadError):
        return RequestError(exc.status, exc.code, exc.message, exc.hint, path=exc.path)
    if isinstance(exc, store.ReadingConflictError):
        # another value for a stored (asset, time, sensor): retrying cannot help
        return RequestError(409, exc.code, redact(exc.message), exc.hint, conflict=exc.first)
    if isinstance(exc, store.StoreLimitError):
        # the store cannot hold this however often it is retried: a 4xx, never "unreachable"
        return RequestError(422, exc.code, redact(exc.message), exc.hint, limit=exc.limit)
    if isinstance(exc, store.StoreError):
        return _unavailable(exc.message, exc.hint)
    if isinstance(exc, DataValidationError | SchemaMismatchError):
        return RequestError(422, "bad_readings", redact(exc.message), exc.hint)
    if isinstance(exc, sa.exc.DBAPIError):
        return _database_error(exc)
    if isinstance(exc, SensorGuardError):  # a server-side condition (settings, registry)
        log.error("request failed: %s", redact(str(exc)))
    return internal_error()


def _unavailable(message: str, hint: str | None) -> RequestError:
    return RequestError(
        503, "store_unavailable", redact(message), hint, headers={"retry-after": "1"}
    )


# SQLSTATE classes that are the request's fault: 22 data exception (a value too long for
# its column, a character the database cannot store), 54 program limit exceeded (an index
# row or array over the server's limit). Everything else from the driver is the store's.
_CLIENT_SQLSTATE = {"22": "bad_readings", "54": "store_limit"}


def _database_error(exc: Any) -> RequestError:
    orig = getattr(exc, "orig", None)
    state = str(getattr(orig, "pgcode", None) or "")
    text = (str(orig or exc).strip().splitlines() or [type(exc).__name__])[0]
    code = _CLIENT_SQLSTATE.get(state[:2])
    if code is not None:
        return RequestError(
            422,
            code,
            f"the readings store refused this batch: {redact(text)}",
            "this is a limit of the store, not an outage: retrying the same batch fails "
            "again; shorten the value or send fewer sensors per reading",
        )
    import sqlalchemy as sa

    if isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError):
        return _unavailable(
            f"the readings store is unreachable: {text}",
            "check SENSORGUARD_STORE_URL and the database server; then retry",
        )
    log.error("readings store error: %s", redact(text))
    return internal_error()


def error_payload(exc: RequestError, model: ServedModel | None = None) -> tuple[bytes, Headers]:
    """The JSON body and extra headers of an error (the raw ASGI path sends these)."""
    body = exc.body()
    headers: Headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in exc.headers.items()]
    if model is not None:
        body["model"] = model.ref
        headers.extend(model.headers)
    if exc.status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    elif exc.status == 503 and "retry-after" not in exc.headers:
        headers.append((b"retry-after", b"1"))
    return orjson.dumps(body), headers


def error_response(exc: BaseException, model: ServedModel | None = None) -> Response:
    """The one way an error becomes an HTTP response."""
    err = as_request_error(exc)
    body, headers = error_payload(err, model)
    response = Response(body, status_code=err.status, media_type=JSON)
    for key, value in headers:
        response.headers.append(key.decode("latin-1"), value.decode("latin-1"))
    return response


# 400: FastAPI could not parse a JSON body it reads for a route (before any auth check)
_HTTP_CODES = {400: "malformed_json", 404: "not_found", 405: "method_not_allowed"}


def install_handlers(app: FastAPI, served: Callable[[], ServedModel | None]) -> None:
    """Exception handlers that answer every error through :func:`error_response`."""
    import sqlalchemy as sa

    from sensorguard.store import StoreError
    from sensorguard.store.payload import PayloadError

    async def request_error(request: Request, exc: Exception) -> Response:
        return error_response(exc, served())

    async def validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        details = [
            {"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", ""))}
            for e in exc.errors()
        ]
        first = details[0] if details else {"loc": [], "msg": "invalid request"}
        err = RequestError(
            422,
            "invalid_request",
            f"invalid request: {'.'.join(first['loc'])}: {first['msg']}",
            DOCS_HINT,
            details=details,
        )
        return error_response(err)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        headers = dict(exc.headers or {})
        if exc.status_code == 405:  # Starlette names the methods of one route, not the path's
            headers["Allow"] = _allowed_methods(request) or headers.get("Allow", "")
        err = RequestError(
            exc.status_code,
            _HTTP_CODES.get(exc.status_code, "http_error"),
            str(exc.detail),
            DOCS_HINT if exc.status_code in _HTTP_CODES else None,
            headers=headers,
        )
        return error_response(err)

    for cls in (RequestError, PayloadError, StoreError, SensorGuardError, sa.exc.DBAPIError):
        app.add_exception_handler(cls, request_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_middleware(ServerFaults, served=served)


def _allowed_methods(request: Request) -> str:
    """Every method some route serves at this path (several routes may share a path)."""
    from starlette.routing import Match

    methods: set[str] = set()
    for route in request.app.router.routes:
        route_methods = getattr(route, "methods", None)
        if route_methods and route.matches(request.scope)[0] != Match.NONE:
            methods |= route_methods
    return ", ".join(sorted(methods))


class ServerFaults:
    """Answers an unexpected exception with the JSON 500 and keeps the connection.

    Starlette's own last-resort handler sends the 500 and then re-raises, and uvicorn
    closes a connection whose app raised: the client's next keep-alive request failed
    with a reset. Installed inside Starlette's, this middleware logs and answers instead.
    """

    def __init__(self, app: Any, served: Callable[[], ServedModel | None]) -> None:
        self.app = app
        self.served = served

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked(message: Any) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception:
            log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            if started:  # half a response is out: only closing the connection is honest
                raise
            await error_response(internal_error(), self.served())(scope, receive, send)
