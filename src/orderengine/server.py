"""The HTTP server under the app: its limits, and its answers to what never reaches the app.

aiohttp's connection handler answers a request it cannot parse (a URL or a header too long,
bytes that are not HTTP) itself, before any middleware, in plain text quoting the input. And
left to itself it keeps every connection as long as the peer likes, however many there are,
until the process has no descriptor left and can accept no one, not even for `/health`.
Here:

- `handler_args`: the parser's limits; a keep-alive timeout that also bounds how long a
  request's headers may take; no automatic decompression (`wire.read_body` decodes, within
  the body limit). `create_app` gives them to every server of the app, the tests' included.
- `EngineRequestHandler`: aiohttp's handler, whose own errors take the error shape, and which
  a connection gets only under the cap.
- `ConnectionCap`: at most so many connections. At the cap a newcomer takes the place of the
  oldest connection with no request in progress (idle, or still sending its headers); when
  every one is busy it is answered 503, and closed once its client has read the answer.
- `EngineSite`: the TCP listener `python -m orderengine` serves on, making those handlers.

The body of a request is bounded in time by `wire.read_body`, which reads it.
"""

from __future__ import annotations

import asyncio
import json
import resource
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any, cast

import structlog
from aiohttp import hdrs, web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.http_exceptions import BadHttpMessage, HttpProcessingError, LineTooLong
from aiohttp.web_request import BaseRequest
from yarl import URL

from orderengine.settings import Settings
from orderengine.venues.connections import venue_connections
from orderengine.wire import API_HEADERS, SECURITY_HEADERS, error_body

log = structlog.get_logger(__name__)

MAX_URL_BYTES = 4096
"""The longest request target (path and query); 414 beyond."""
MAX_HEADER_BYTES = 8190
"""The longest header, name and value; 431 beyond.

It differs from `MAX_URL_BYTES`: the parser's complaint names only the limit it hit, and so
says which of the two was too long.
"""
MAX_HEADERS = 64
"""The most headers a request may have; 431 beyond."""
BACKLOG = 128
"""Connections the kernel queues for accepting; one wake-up accepts at most this many."""
LINGER_S = 2.0
"""How long the rest of a body is read after an early answer (a 413, a 415), so that the
client sees the answer rather than a reset; then the connection is closed."""
REFUSED_LINGER_S = 1.0
"""How long a connection refused at the cap stays half open after its 503 at most."""
MOST_REFUSING = 32
"""Refused connections kept half open at once; beyond, a refused connection is closed at
once. The cap leaves descriptors for them."""
RESERVED_DESCRIPTORS = 64
"""Descriptors kept for what is neither a client's connection nor one `connection_cap`
counts: the standard streams and the log, the listening socket, the event loop's own, DNS…"""
DEDICATED_DATABASE_CONNECTIONS = 2
"""The engine's database connections outside its pool: the intake's (new orders are committed
on it) and the listener's."""
REPORT_EVERY_S = 1.0
"""Connections closed or refused at the cap are logged at most this often, counted."""


def handler_args(settings: Settings) -> dict[str, Any]:
    """What every connection handler of the app is made with (`Application(handler_args=…)`)."""
    return {
        # Closes a connection with no request in progress: idle between requests, or still
        # sending a request's headers. So headers, too, must come within the request timeout.
        "keepalive_timeout": min(settings.keepalive_timeout_s, settings.request_timeout_s),
        "max_line_size": MAX_URL_BYTES,
        "max_field_size": MAX_HEADER_BYTES,
        "max_headers": MAX_HEADERS,
        "lingering_time": LINGER_S,
        "auto_decompress": False,
    }


def connection_cap(settings: Settings) -> int:
    """`ORDERENGINE_MAX_CONNECTIONS`, or as many as the descriptor limit leaves room for.

    Room is kept for the engine's database connections (its pool, the intake's and the
    listener's), for the venues' (the simulated chain's pool, or the live venues' HTTP
    connections: `venue_connections`), for one wake-up's worth of accepted connections
    (`BACKLOG`) that are closed only on the loop's next turn, for the connections refused at
    the cap that are still being closed (`MOST_REFUSING`), and for the rest
    (`RESERVED_DESCRIPTORS`).
    """
    if settings.max_connections is not None:
        return settings.max_connections
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        soft = 1 << 20
    reserved = (
        RESERVED_DESCRIPTORS
        + settings.db_pool_size
        + DEDICATED_DATABASE_CONNECTIONS
        + venue_connections(settings)
        + BACKLOG
        + MOST_REFUSING
    )
    return max(1, min(soft, 1 << 20) - reserved)


def _http_answer(
    status: HTTPStatus, body: dict[str, Any], headers: Mapping[str, str], *, head: bool = False
) -> bytes:
    """A JSON answer as bytes, in HTTP/1.1, after which the connection is closed.

    To a HEAD, its headers alone: the body's length, and no body.
    """
    payload = json.dumps(body).encode()
    lines = [
        f"HTTP/1.1 {status.value} {status.phrase}",
        "Content-Type: application/json; charset=utf-8",
        f"Content-Length: {len(payload)}",
        *(f"{name}: {value}" for name, value in headers.items()),
        "Connection: close",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + (b"" if head else payload)


class Http11Answer(web.StreamResponse):
    """A JSON error answer whose status line says HTTP/1.1, whatever the request's said.

    aiohttp writes the request's version on the status line: `HTTP/1.0` for a request its
    parser refused (it stands in a request of that version for it), `HTTP/2.0` for a request
    line claiming a version the engine does not speak. The engine speaks HTTP/1.1, and says
    so; the connection is closed after the answer. Its headers are those it is given and
    those the app's middlewares add (`headers`) before it is written, whole, when prepared.
    """

    def __init__(self, status: int, body: dict[str, Any], headers: Mapping[str, str]) -> None:
        super().__init__(status=status, headers=headers)
        self._answer_body = body
        self._written = False
        self.force_close()

    async def prepare(self, request: BaseRequest) -> AbstractStreamWriter | None:
        if not self._written:
            self._written = True
            answer = _http_answer(
                HTTPStatus(self.status),
                self._answer_body,
                self.headers,
                head=request.method == hdrs.METH_HEAD,
            )
            await request.writer.write(answer)
        return request.writer

    async def write_eof(self, data: bytes = b"") -> None:
        """Nothing more: the answer was written whole by `prepare`."""


TOO_MANY_CONNECTIONS = _http_answer(
    HTTPStatus.SERVICE_UNAVAILABLE,
    error_body("too_many_connections", "too many connections are busy; try again shortly"),
    {"Retry-After": "1"},
)
"""The answer to a connection refused at the cap, written before its request is read."""


class ConnectionCap:
    """At most `limit` open connections, making room by closing the longest-idle one."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: dict[EngineRequestHandler, None] = {}
        """The open connections, oldest first."""
        self._refusing: dict[EngineRequestHandler, asyncio.Transport] = {}
        """Connections refused, half open until their client has read its 503."""
        self._closed = 0
        self._refused = 0
        self._reported_at = 0.0

    @property
    def open(self) -> int:
        return len(self._open)

    @property
    def busy(self) -> int:
        """Open connections with a request in progress: those no newcomer may take over."""
        return sum(not handler.idle for handler in self._open)

    def admit(self, newcomer: EngineRequestHandler) -> bool:
        """Whether `newcomer` may stay; at the cap, an idle connection is closed for it."""
        if len(self._open) >= self.limit:
            idle = next((handler for handler in self._open if handler.idle), None)
            if idle is None:
                self._refused += 1
                self._report()
                return False
            del self._open[idle]
            _drop(idle)
            self._closed += 1
            self._report()
        self._open[newcomer] = None
        return True

    def release(self, handler: EngineRequestHandler) -> None:
        self._open.pop(handler, None)
        self._refusing.pop(handler, None)

    def refuse(self, handler: EngineRequestHandler, transport: asyncio.Transport) -> None:
        """Answer the connection 503, and close it once its client has read the answer.

        Closed at once, with the request the client sent meanwhile unread, the system would
        reset the connection, and the reset could overtake the answer. It is half closed
        instead, and ends when the client closes its side, after `REFUSED_LINGER_S` at most;
        at once when `MOST_REFUSING` are half closed already.
        """
        transport.write(TOO_MANY_CONNECTIONS)
        if len(self._refusing) >= MOST_REFUSING:
            transport.close()
            return
        self._refusing[handler] = transport
        transport.write_eof()
        asyncio.get_running_loop().call_later(REFUSED_LINGER_S, transport.abort)

    def drop_refused(self) -> None:
        """Abort the connections still half closed after their 503: the server is stopping."""
        refusing, self._refusing = self._refusing, {}
        for transport in refusing.values():
            transport.abort()

    def _report(self) -> None:
        now = asyncio.get_running_loop().time()
        if now - self._reported_at < REPORT_EVERY_S:
            return
        log.warning(
            "connection_cap_reached",
            limit=self.limit,
            idle_closed=self._closed,
            refused=self._refused,
        )
        self._reported_at, self._closed, self._refused = now, 0, 0


def _drop(handler: EngineRequestHandler) -> None:
    """Close an idle connection, aborting it if its client has not read all it was sent.

    A close would otherwise wait for a client that is not reading, holding the descriptor the
    cap means to free.
    """
    transport = handler.transport
    handler.force_close()
    if transport is not None and transport.get_write_buffer_size() > 0:
        transport.abort()


class EngineRequestHandler(web.RequestHandler):
    """aiohttp's connection handler, under a cap, answering its own errors in the one shape."""

    def __init__(self, manager: web.Server, cap: ConnectionCap, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._cap = cap

    @property
    def idle(self) -> bool:
        """No request is in progress or waiting: closing the connection loses nothing sent.

        Read from aiohttp's own state; were it ever renamed, every connection would count as
        busy, and the cap would refuse newcomers rather than close anyone.
        """
        if self.transport is None:
            return True
        busy = getattr(self, "_request_in_progress", True)
        waiting = getattr(self, "_messages", True)
        return not busy and not waiting

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self._cap.admit(self):
            super().connection_made(transport)
            return
        self.close()  # serve nothing on it: what it sends is read and thrown away
        # uvloop's transports are asyncio's in all but name: not subclasses of its classes.
        self._cap.refuse(self, cast(asyncio.Transport, transport))

    def connection_lost(self, exc: BaseException | None) -> None:
        self._cap.release(self)
        super().connection_lost(exc)

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """A request the parser refused (or a crash outside the app): the one error shape.

        In our words: aiohttp's `message` quotes the offending bytes. With the headers every
        answer of the API carries: the app's middlewares never see this one.
        """
        if request.writer.output_size > 0:
            raise ConnectionError("an answer was already begun; the connection is closed")
        status, code, text = explain(status, exc)
        if status >= 500:
            log.error("request_failed_in_server", status=status, exc_info=exc)
        else:
            log.debug("request_refused_by_parser", status=status, code=code)
        return Http11Answer(status, error_body(code, text), SECURITY_HEADERS | API_HEADERS)


def explain(status: int, error: BaseException | None) -> tuple[int, str, str]:
    """The status, code and message for what went wrong below the app."""
    if isinstance(error, LineTooLong):
        if str(error.args[1]) == str(MAX_URL_BYTES):
            return 414, "uri_too_long", f"the request's URL is longer than {MAX_URL_BYTES} bytes"
        return (
            431,
            "request_header_fields_too_large",
            f"a request header is longer than {MAX_HEADER_BYTES} bytes",
        )
    if isinstance(error, BadHttpMessage) and error.message == "Too many headers received":
        return (
            431,
            "request_header_fields_too_large",
            f"the request has more than {MAX_HEADERS} headers",
        )
    if isinstance(error, HttpProcessingError) or status == 400:
        return 400, "bad_request", "the request is not valid HTTP/1.1"
    if status == 500:
        return 500, "internal_error", "internal error"
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    return status, phrase.lower().replace(" ", "_"), phrase


class EngineSite(web.BaseSite):
    """A TCP listener whose connections are `EngineRequestHandler`s under one cap."""

    __slots__ = ("_bound_port", "_handler_args", "_host", "_port", "cap")

    def __init__(
        self,
        runner: web.BaseRunner,
        settings: Settings,
        host: str | None = None,
        port: int | None = None,
    ) -> None:
        super().__init__(runner, backlog=BACKLOG)
        self._host = settings.host if host is None else host
        self._port = settings.port if port is None else port
        self._bound_port: int | None = None
        self._handler_args = handler_args(settings)
        self.cap = ConnectionCap(connection_cap(settings))

    async def stop(self) -> None:
        self.cap.drop_refused()
        await super().stop()

    @property
    def port(self) -> int:
        """The port listened on: the one asked for, or the one given for port 0."""
        return self._port if self._bound_port is None else self._bound_port

    @property
    def name(self) -> str:
        return str(URL.build(scheme="http", host=self._host, port=self.port))

    async def start(self) -> None:
        await super().start()
        manager = self._runner.server
        assert manager is not None, "the runner is set up before its site starts"
        loop = asyncio.get_running_loop()

        def connection() -> EngineRequestHandler:
            return EngineRequestHandler(
                manager, self.cap, loop=loop, access_log=None, **self._handler_args
            )

        server = await loop.create_server(connection, self._host, self._port, backlog=BACKLOG)
        self._server = server
        self._bound_port = server.sockets[0].getsockname()[1]
