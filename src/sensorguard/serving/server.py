"""uvicorn, configured so that slow or idle clients cannot hold the predictor.

uvicorn times out an idle keep-alive connection, but not a connection that never
finishes its request: 1,100 connections that each sent half a request line stayed open
for as long as their clients liked. :class:`DeadlineProtocol` gives every request a
deadline, ``SENSORGUARD_HEADER_TIMEOUT`` (10 s) from its first byte (or from connecting)
to the end of its headers and ``SENSORGUARD_BODY_TIMEOUT`` (60 s, plus at most one
sweep interval of 1 s) from there to the end of its body; a client that misses it
gets ``408`` (when nothing has been answered yet) and the connection is closed.
``SENSORGUARD_MAX_CONNECTIONS`` bounds connections plus requests in progress (uvicorn's
``limit_concurrency``: 503 beyond).
The protocol extends uvicorn's httptools parser (installed with ``uvicorn[standard]``);
without httptools the plain uvicorn protocol runs and a warning says what is missing.
"""

from __future__ import annotations

import asyncio
import logging
import math
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
    """uvicorn's httptools protocol with a per-request read deadline.

    A request costs one hook (``on_message_begin`` stores when it began); one sweep per
    event loop, every quarter of the shorter timeout (at most 1 s), reads each
    connection's phase from uvicorn's own state and closes those past their deadline:
    headers not complete ``header_timeout`` after the request began (or the connection
    opened), body not complete ``body_timeout`` after the first sweep that saw it
    arriving (so up to one sweep interval later than the end of the headers). Hooks on
    the header and message ends too, and a timer per request (``call_later`` plus
    ``cancel``), cost 7.5k and about 20k instructions a request under callgrind, of
    about 520k for a one-reading prediction; this costs about 2.5k."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    every = min(1.0, header_timeout / 4, body_timeout / 4)
    sweeping: set[asyncio.AbstractEventLoop] = set()

    class DeadlineProtocol(HttpToolsProtocol):
        began = math.inf  # when the request being read began (or the connection opened)
        body_cycle: Any = None  # the request whose body a sweep first saw arriving ...
        body_since = math.inf  # ... and when

        def _late(self, now: float) -> bool:
            cycle = self.cycle
            if cycle is None or cycle.scope is not self.scope:  # headers not complete
                return now - self.began > header_timeout
            if not cycle.more_body:  # read in full; the keep-alive timeout covers the rest
                return False
            if self.body_cycle is not cycle:
                self.body_cycle, self.body_since = cycle, now
                return False
            return now - self.body_since > body_timeout

        def _expired(self) -> None:
            self.began = math.inf
            if self.transport.is_closing():
                return
            if self.cycle is None or self.cycle.response_complete:  # nothing answered yet
                self.transport.write(_408 % (len(_408_BODY), _408_BODY))
            # a request mid-body: its handler sees a disconnect and stops
            self.transport.close()

        def _sweep(self) -> None:
            now = self.loop.time()
            for conn in list(self.connections):
                if isinstance(conn, DeadlineProtocol) and conn._late(now):
                    conn._expired()
            self.loop.call_later(every, self._sweep)

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self.began = self.loop.time()  # silent connections too
            if self.loop not in sweeping:
                sweeping.add(self.loop)
                self.loop.call_later(every, self._sweep)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self.began = self.loop.time()

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
