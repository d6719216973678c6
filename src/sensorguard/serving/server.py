"""uvicorn, configured so that slow or idle clients cannot hold the predictor.

uvicorn times out an idle keep-alive connection, but not a connection that never
finishes its request: 1,100 connections that each sent half a request line stayed open
for as long as their clients liked. :class:`DeadlineProtocol` gives every request a
deadline, ``SENSORGUARD_HEADER_TIMEOUT`` (10 s) from its first byte (or from connecting)
to the end of its headers and ``SENSORGUARD_BODY_TIMEOUT`` (60 s) from there to the end
of its body; a client that misses it gets ``408`` (when nothing has been answered yet)
and the connection is closed. ``SENSORGUARD_MAX_CONNECTIONS`` bounds connections plus
requests in progress (uvicorn's ``limit_concurrency``: 503 beyond).
The protocol extends uvicorn's httptools parser (installed with ``uvicorn[standard]``);
without httptools the plain uvicorn protocol runs and a warning says what is missing.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import uvicorn

from sensorguard.serving.settings import ServingSettings

log = logging.getLogger("sensorguard.serving")

_408 = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
    b"connection: close\r\ncontent-length: %d\r\n\r\n%s"
)
_408_BODY = (
    b'{"error":{"code":"request_timeout","message":"the request was not received in time",'
    b'"hint":"send the whole request without pausing"}}'
)


def deadline_protocol(header_timeout: float, body_timeout: float) -> type[asyncio.Protocol]:
    """uvicorn's httptools protocol with a per-request read deadline."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class DeadlineProtocol(HttpToolsProtocol):
        _deadline: asyncio.TimerHandle | None = None

        def _arm(self, seconds: float) -> None:
            self._disarm()
            self._deadline = self.loop.call_later(seconds, self._expired)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _expired(self) -> None:
            self._deadline = None
            if self.transport.is_closing():
                return
            if self.cycle is None or self.cycle.response_complete:  # nothing answered yet
                self.transport.write(_408 % (len(_408_BODY), _408_BODY))
            # a request mid-body: its handler sees a disconnect and stops
            self.transport.close()

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._arm(header_timeout)  # a connection that never sends a byte

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._arm(header_timeout)

        def on_headers_complete(self) -> None:
            super().on_headers_complete()
            self._arm(body_timeout)

        def on_message_complete(self) -> None:
            super().on_message_complete()
            self._disarm()  # read in full; the keep-alive timeout covers what follows

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

    return DeadlineProtocol


def http_protocol(settings: ServingSettings) -> type[asyncio.Protocol] | str:
    try:
        return deadline_protocol(settings.header_timeout, settings.body_timeout)
    except ImportError:
        log.warning(
            "httptools is not installed: no read deadline for slow clients (install "
            "uvicorn[standard], or keep a proxy with timeouts in front)"
        )
        return "auto"


def uvicorn_config(
    app: Any, settings: ServingSettings, *, log_level: str = "info", access_log: bool = False
) -> uvicorn.Config:
    """The one way the predictor is run (``sensorguard serve``)."""
    return uvicorn.Config(
        app,
        workers=1,
        loop="auto",  # uvloop when installed
        http=http_protocol(settings),
        log_level=log_level,
        access_log=access_log,
        server_header=False,
        lifespan="on",
        timeout_keep_alive=5,
        limit_concurrency=settings.max_connections,
        timeout_graceful_shutdown=5,
    )
