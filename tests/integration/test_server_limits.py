"""The server below the app: what the parser refuses, slow clients, the connection cap.

Against the engine's own listener on a real port (`tests/raw_http.py`), over plain sockets:
requests the HTTP parser refuses are answered in the one error shape without quoting them;
idle connections, headers that never end and bodies that trickle are cut off in bounded
time; and however many connections are opened, honest clients are still answered.
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import time
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpClient
from structlog.testing import capture_logs

from orderengine import api
from orderengine.errors import BadRequest
from orderengine.server import MAX_HEADER_BYTES, MAX_HEADERS, MAX_URL_BYTES
from orderengine.wire import SECURITY_HEADERS
from tests.polling import eventually
from tests.raw_http import (
    HOST,
    Answer,
    closed_by_server,
    connect,
    exchange,
    read_answer,
    request_bytes,
    serving,
)
from tests.streams import MARKET

FAST_TIMEOUTS: dict[str, Any] = {"request_timeout_s": 0.5, "keepalive_timeout_s": 0.3}
ORDER = json.dumps(MARKET).encode()
JSON = {"Content-Type": "application/json"}


def error_of(answer: Answer) -> dict[str, Any]:
    assert answer.headers["content-type"].startswith("application/json")
    body = answer.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    return dict(body["error"])


async def order_count(site: Any) -> int:
    answer = await exchange(site.port, request_bytes("GET", "/api/orders?limit=200"))
    assert answer.status == 200
    return len(answer.json()["orders"])


# ---- what the parser refuses, in the one shape ---------------------------------------------


@pytest.mark.parametrize(
    ("request_", "status", "code"),
    [
        (
            request_bytes("GET", "/api/orders?x=" + "<b>" * MAX_URL_BYTES),
            414,
            "uri_too_long",
        ),
        (
            request_bytes("GET", "/health", headers={"X-Long": "<b>" * MAX_HEADER_BYTES}),
            431,
            "request_header_fields_too_large",
        ),
        (
            request_bytes(
                "GET", "/health", headers={f"X-{i}": "<b>" for i in range(MAX_HEADERS + 1)}
            ),
            431,
            "request_header_fields_too_large",
        ),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03<b>\r\n\r\n", 400, "bad_request"),
        (b"GET /health HTTP/1.1\r\nHost: x\r\nX-Bad: <b>\x01\r\n\r\n", 400, "bad_request"),
        (b"GET /he<b>alth HTTP/9.9\r\nHost: x\r\n\r\n", 400, "bad_request"),
        (b"GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: <b>\r\n\r\n", 400, "bad_request"),
        (
            request_bytes(
                "POST",
                "/api/orders/execute",
                headers={**JSON, "Transfer-Encoding": "chunked"},
            ).replace(b"Content-Length: 0\r\n", b"")
            + b"<b>\r\n{}\r\n0\r\n\r\n",
            400,
            "bad_request",
        ),
    ],
    ids=[
        "long URL",
        "long header",
        "too many headers",
        "TLS on the HTTP port",
        "control byte in a header",
        "bad request line",
        "bad Content-Length",
        "bad chunk size",
    ],
)
async def test_what_the_http_parser_refuses_is_answered_in_the_error_shape_without_echo(
    database_url: str, request_: bytes, status: int, code: str
) -> None:
    async with serving(database_url) as site:
        reader, writer = await connect(site.port)
        try:
            writer.write(request_)
            answer = await read_answer(reader)

            assert (answer.version, answer.status) == ("HTTP/1.1", status)
            assert error_of(answer)["code"] == code
            assert b"<b>" not in answer.body
            assert {(name.lower(), value) for name, value in SECURITY_HEADERS.items()} <= set(
                answer.headers.items()
            )
            assert await closed_by_server(reader) == b""
        finally:
            writer.close()
        assert await order_count(site) == 0
        assert (await exchange(site.port, request_bytes("GET", "/health"))).status == 200


def chunked(body: bytes) -> bytes:
    return f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"


@pytest.mark.parametrize(
    ("request_", "problem"),
    [
        (
            request_bytes("POST", "/api/orders/execute", ORDER, JSON).replace(
                b"HTTP/1.1", b"HTTP/2.0", 1
            ),
            "only HTTP/1.0 and HTTP/1.1 are served",
        ),
        (
            request_bytes(
                "POST",
                "/api/orders/execute",
                headers={**JSON, "Transfer-Encoding": "gzip, chunked"},
            ).replace(b"Content-Length: 0\r\n", b"")
            + chunked(ORDER),
            "Transfer-Encoding may only be chunked",
        ),
        (
            request_bytes(
                "POST",
                "/api/orders/execute",
                headers={**JSON, "Transfer-Encoding": "chunked"},
            )
            .replace(b"Content-Length: 0\r\n", b"")
            .replace(b"HTTP/1.1", b"HTTP/1.0", 1)
            + chunked(ORDER),
            "Transfer-Encoding is not HTTP/1.0",
        ),
        (
            request_bytes(
                "OPTIONS",
                "/api/orders/execute",
                headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST"},
            ).replace(b"HTTP/1.1", b"HTTP/2.0", 1),
            "only HTTP/1.0 and HTTP/1.1 are served",
        ),
    ],
    ids=[
        "HTTP/2.0 in an HTTP/1 request line",
        "a coding besides chunked",
        "chunked in HTTP/1.0",
        "an HTTP/2.0 preflight",
    ],
)
async def test_http_the_engine_does_not_serve_creates_nothing(
    database_url: str, request_: bytes, problem: str
) -> None:
    async with serving(database_url, keepalive_timeout_s=30) as site:
        reader, writer = await connect(site.port)
        try:
            writer.write(request_)
            answer = await read_answer(reader)
            after = await closed_by_server(reader, limit_s=10)
        finally:
            writer.close()

        assert (answer.version, answer.status) == ("HTTP/1.1", 400)
        assert error_of(answer)["message"] == problem
        assert after == b"", "the connection is closed after the answer"
        assert await order_count(site) == 0


# ---- slow and idle clients --------------------------------------------------------------------


async def test_an_idle_connection_is_closed(database_url: str) -> None:
    async with serving(database_url, **FAST_TIMEOUTS) as site:
        reader, writer = await connect(site.port)
        try:
            assert await closed_by_server(reader, limit_s=3) == b""
        finally:
            writer.close()


async def test_an_idle_keep_alive_connection_is_closed_after_its_answers(
    database_url: str,
) -> None:
    async with serving(database_url, **FAST_TIMEOUTS) as site:
        reader, writer = await connect(site.port)
        try:
            for _ in range(2):
                writer.write(request_bytes("GET", "/health"))
                assert (await read_answer(reader)).status == 200
            assert await closed_by_server(reader, limit_s=3) == b""
        finally:
            writer.close()


async def test_headers_that_never_end_are_cut_off(database_url: str) -> None:
    async with serving(database_url, **FAST_TIMEOUTS) as site:
        reader, writer = await connect(site.port)
        try:
            writer.write(b"POST /api/orders/execute HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            for _ in range(30):  # a byte every 0.1 s keeps nothing open
                await asyncio.sleep(0.1)
                if reader.at_eof() or writer.is_closing():
                    break
                writer.write(b"a")
            assert await closed_by_server(reader, limit_s=3) == b""
        finally:
            writer.close()
        assert await order_count(site) == 0


async def test_a_body_that_stops_short_is_408_and_the_connection_closed(
    database_url: str,
) -> None:
    async with serving(database_url, **FAST_TIMEOUTS) as site:
        reader, writer = await connect(site.port)
        try:
            head = request_bytes("POST", "/api/orders/execute", ORDER, JSON)
            writer.write(head[: len(head) - len(ORDER) + 10])

            answer = await read_answer(reader, limit_s=3)

            assert answer.status == 408
            assert error_of(answer)["code"] == "request_timeout"
            assert answer.headers["connection"] == "close"
            await closed_by_server(reader, limit_s=5)
        finally:
            writer.close()
        assert await order_count(site) == 0


async def test_a_body_trickled_a_byte_at_a_time_is_408(database_url: str) -> None:
    async with serving(database_url, **FAST_TIMEOUTS) as site:
        reader, writer = await connect(site.port)
        started = asyncio.get_running_loop().time()
        try:
            head = request_bytes("POST", "/api/orders/execute", ORDER, JSON)
            writer.write(head[: len(head) - len(ORDER)])

            async def trickle() -> None:
                for byte in ORDER:
                    writer.write(bytes([byte]))
                    await asyncio.sleep(0.05)

            trickling = asyncio.create_task(trickle())
            try:
                answer = await read_answer(reader, limit_s=3)
            finally:
                trickling.cancel()

            assert answer.status == 408
            assert asyncio.get_running_loop().time() - started < 2
        finally:
            writer.close()
        assert await order_count(site) == 0


async def test_a_slow_but_timely_client_is_served(database_url: str) -> None:
    async with serving(database_url, request_timeout_s=2.0, keepalive_timeout_s=2.0) as site:
        reader, writer = await connect(site.port)
        try:
            request = request_bytes("POST", "/api/orders/execute", ORDER, JSON)
            for at in range(0, len(request), len(request) // 4 + 1):
                writer.write(request[at : at + len(request) // 4 + 1])
                await asyncio.sleep(0.1)

            answer = await read_answer(reader)

            assert answer.status == 201, answer.body
        finally:
            writer.close()


# ---- the connection cap -------------------------------------------------------------------------


async def test_idle_connections_make_room_for_new_ones_at_the_cap(database_url: str) -> None:
    async with serving(database_url, max_connections=4) as site:
        idle = [await connect(site.port) for _ in range(12)]
        slow = [await connect(site.port) for _ in range(12)]
        for _, writer in slow:
            writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        try:
            answer = await exchange(site.port, request_bytes("GET", "/health"))

            assert answer.status == 200
            # The oldest were closed to make room; no more than the cap stay open.
            assert await closed_by_server(idle[0][0], limit_s=3) == b""
            assert site.cap.open <= 4
        finally:
            for _, writer in idle + slow:
                writer.close()


async def test_when_every_connection_is_busy_a_newcomer_gets_503_in_the_error_shape(
    database_url: str,
) -> None:
    async with serving(database_url, max_connections=2, request_timeout_s=1.0) as site:
        busy = [await connect(site.port) for _ in range(2)]
        for _, writer in busy:  # each is in the middle of sending a body
            writer.write(request_bytes("POST", "/api/orders/execute", ORDER, JSON)[:-5])
        await asyncio.sleep(0.2)
        try:
            refused = await exchange(site.port, request_bytes("GET", "/health"))

            assert refused.status == 503
            assert error_of(refused)["code"] == "too_many_connections"
            assert refused.headers["retry-after"] == "1"

            for reader, _ in busy:  # the slow bodies run out of time, and make room
                assert (await read_answer(reader, limit_s=3)).status == 408
            await asyncio.sleep(0.1)
            assert (await exchange(site.port, request_bytes("GET", "/health"))).status == 200
        finally:
            for _, writer in busy:
                writer.close()
        assert await order_count(site) == 0


def refused_at_once(port: int) -> bytes:
    """All a plain client reads that sends its request as it connects, and reads a while later.

    Blocking, as curl is: nothing is read until it asks, so a reset that comes first would
    lose the answer.
    """
    with socket.create_connection((HOST, port)) as client:
        client.sendall(request_bytes("GET", "/health"))
        time.sleep(0.3)
        received = b""
        while chunk := client.recv(65536):
            received += chunk
        return received


async def test_a_newcomer_refused_at_the_cap_reads_its_503(database_url: str) -> None:
    async with serving(database_url, max_connections=1, request_timeout_s=5.0) as site:
        _, busy = await connect(site.port)
        busy.write(request_bytes("POST", "/api/orders/execute", ORDER, JSON)[:-5])

        async def taken() -> bool:
            return site.cap.busy == 1

        await eventually(taken, limit_s=5)
        try:
            received = await asyncio.to_thread(refused_at_once, site.port)
        finally:
            busy.close()

    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503")
    assert json.loads(body)["error"]["code"] == "too_many_connections"


async def test_honest_clients_are_answered_under_a_flood_of_idle_and_slow_connections(
    database_url: str,
) -> None:
    async with serving(database_url, max_connections=20) as site:
        flood = []
        for i in range(100):
            _, writer = await connect(site.port)
            if i % 2:
                writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: a")
            flood.append(writer)
        try:
            answers = [
                await exchange(site.port, request_bytes("POST", "/api/orders/execute", ORDER, JSON))
                for _ in range(5)
            ]

            assert [answer.status for answer in answers] == [201] * 5
            assert site.cap.open <= 20
        finally:
            for writer in flood:
                writer.close()


# ---- errors after an answer has begun ---------------------------------------------------------


@pytest.mark.parametrize("failure", [RuntimeError("a bug"), BadRequest("too late to say")])
async def test_an_error_after_a_socket_switched_protocols_is_no_http_answer_in_its_stream(
    aiohttp_client: AiohttpClient, failure: Exception
) -> None:
    async def crashes_after_upgrading(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        raise failure

    app = web.Application(middlewares=[api.error_middleware])
    app.router.add_get("/socket", crashes_after_upgrading)
    client = await aiohttp_client(app)

    async with client.ws_connect("/socket") as ws:
        message = await ws.receive(timeout=5)

    # The connection is closed; no "HTTP/1.1 500" is read as a (broken) frame.
    assert message.type == aiohttp.WSMsgType.CLOSED, message


# ---- Expect: 100-continue -----------------------------------------------------------------


def expecting(headers: dict[str, str], length: int, expect: str = "100-continue") -> bytes:
    """A POST of an order's head only, announcing a body of `length` bytes."""
    head = request_bytes("POST", "/api/orders/execute", headers={**headers, "Expect": expect})
    return head.replace(b"Content-Length: 0", f"Content-Length: {length}".encode())


async def asked_then_answered(database_url: str, body: bytes) -> tuple[Answer, Answer]:
    """A POST of `body` announced with `Expect: 100-continue`: the ask, then the answer."""
    async with serving(database_url) as site:
        reader, writer = await connect(site.port)
        try:
            writer.write(expecting(JSON, len(body)))
            asked = await read_answer(reader)
            writer.write(body)
            answer = await read_answer(reader)
        finally:
            writer.close()
            await writer.wait_closed()
    return asked, answer


async def test_a_body_the_engine_will_read_is_asked_for_then_accepted(database_url: str) -> None:
    asked, accepted = await asked_then_answered(database_url, ORDER)

    assert asked.status == 100
    assert accepted.status == 201


async def test_a_body_asked_for_then_refused_gets_its_refusal(database_url: str) -> None:
    """The interim `100 Continue` is no answer begun: the refusal after it is sent whole."""
    invalid = b'{"type": "market", "tokenIn": "SOL", "tokenOut": "XXX", "amountIn": "1"}'

    asked, refused = await asked_then_answered(database_url, invalid)

    assert asked.status == 100
    assert refused.status == 422
    assert error_of(refused)["code"] == "invalid_order"


async def test_a_request_the_middlewares_refuse_is_not_asked_for_its_body(
    database_url: str,
) -> None:
    """Refused from its headers (a parameter no route takes), before its body is asked for.

    The connection closes after the answer: the body was never asked for, so it will not
    come, and what the client sends next must not be read as it.
    """
    head = expecting(JSON, len(ORDER)).replace(b"/api/orders/execute", b"/api/orders/execute?x=1")
    async with serving(database_url, keepalive_timeout_s=30) as site:
        reader, writer = await connect(site.port)
        try:
            writer.write(head)
            answer = await read_answer(reader)
            after = await closed_by_server(reader, limit_s=10)
        finally:
            writer.close()
            await writer.wait_closed()
        assert await order_count(site) == 0

    assert answer.status == 422
    assert error_of(answer)["code"] == "unknown_parameter"
    assert after == b""


@pytest.mark.parametrize(
    ("headers", "length", "status"),
    [(JSON, 100_000, 413), ({"Content-Type": "text/plain"}, len(ORDER), 415)],
    ids=["too long", "not JSON"],
)
async def test_a_body_the_headers_refuse_is_not_asked_for(
    database_url: str, headers: dict[str, str], length: int, status: int
) -> None:
    async with serving(database_url) as site:
        reader, writer = await connect(site.port)
        try:
            writer.write(expecting(headers, length))
            answer = await read_answer(reader)
        finally:
            writer.close()
        assert await order_count(site) == 0

    assert answer.status == status
    assert error_of(answer)["code"] in ("request_entity_too_large", "unsupported_media_type")


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("POST", "/api/quotes", 405),
        ("PUT", "/api/orders/execute", 405),
        ("POST", "/api/nowhere", 404),
        ("DELETE", "/api/stream-tokens", 405),
        ("POST", "/api/stream-tokens", 201),
    ],
    ids=["a method a path does not take", "PUT", "a path not served", "DELETE", "no body read"],
)
async def test_a_request_whose_body_no_route_reads_is_answered_without_asking_for_it(
    database_url: str, method: str, path: str, status: int
) -> None:
    head = request_bytes(method, path, headers={**JSON, "Expect": "100-continue"})
    head = head.replace(b"\r\n\r\n", f"\r\nContent-Length: {len(ORDER)}\r\n\r\n".encode())
    async with serving(database_url) as site:
        reader, writer = await connect(site.port)
        try:
            writer.write(head.replace(b"Content-Length: 0\r\n", b""))
            answer = await read_answer(reader)
        finally:
            writer.close()
            await writer.wait_closed()

    assert answer.status == status
    if status == 405:
        assert error_of(answer)["code"] == "method_not_allowed"
        assert "allow" in answer.headers


async def test_an_unknown_expectation_is_ignored(database_url: str) -> None:
    async with serving(database_url) as site:
        answer = await exchange(site.port, expecting(JSON, len(ORDER), "bogus") + ORDER)

    assert answer.status == 201


async def test_a_client_that_leaves_during_a_handshake_is_no_crash(database_url: str) -> None:
    handshake = {
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    }
    async with serving(database_url) as site:
        with capture_logs() as logs:
            _, writer = await connect(site.port)
            writer.write(request_bytes("GET", "/api/events", headers=handshake))
            await writer.drain()
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.close()  # a reset, before the handshake is answered

            async def told() -> bool:
                return any(log["event"] in ("client_left", "request_crashed") for log in logs)

            await eventually(told, limit_s=10)

    assert [log["event"] for log in logs if log["log_level"] == "error"] == []


async def test_a_refused_head_gets_the_refusals_headers_and_no_body(database_url: str) -> None:
    async with serving(database_url) as site:
        reader, writer = await connect(site.port)
        try:
            writer.write(request_bytes("HEAD", "/health").replace(b"HTTP/1.1", b"HTTP/2.0", 1))
            async with asyncio.timeout(10):
                received = await reader.read()
        finally:
            writer.close()
            await writer.wait_closed()

    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ")
    assert b"Content-Length: " in head
    assert body == b""
