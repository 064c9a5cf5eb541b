"""A socket's client cannot hold the engine: not by ceasing to read, nor by what it sends.

A client that stops reading fills its receive window, then the engine's buffer for it. Were
the connection only closed, asyncio would wait to write that buffer out first, which is
never, and hold the descriptor and the messages until the client left. A client that breaks
the protocol's rules for clients, or floods frames, is closed. These tests serve
`sockets.server_socket` from a tiny app on a real port and talk to it over a plain socket.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import socket
import struct
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from orderengine.app import SOCKET_CLOSE_S, close_sockets
from orderengine.keys import SOCKETS
from orderengine.limiter import TokenBucket
from orderengine.sockets import server_socket, until_client_leaves

MESSAGE = bytes(1 << 20)
"""A message of 1 MiB: a few fill any socket's buffers on loopback."""
Serve = Callable[[web.WebSocketResponse], Awaitable[None]]


async def sending_until_dropped(ws: web.WebSocketResponse) -> None:
    """Send messages until the connection is gone."""
    while True:
        await ws.send_bytes(MESSAGE)


async def a_client_that_never_reads(port: int) -> socket.socket:
    """A connection that completes the handshake on `/`, reads its answer, and no more."""
    client, _ = await handshake(port)
    return client


async def handshake(port: int, early: bytes = b"") -> tuple[socket.socket, bytes]:
    """A connection upgraded on `/`, and what came after the answer's head.

    `early` is sent in the same write as the handshake, before its answer.
    """
    client = socket.socket()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    client.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(client, ("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    await loop.sock_sendall(
        client,
        (
            f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
        + early,
    )
    answer = b""
    while b"\r\n\r\n" not in answer:
        answer += await loop.sock_recv(client, 4096)
    head, _, after = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    return client, after


@dataclass
class Served:
    """The tiny app's server, and when its one socket's handler returned."""

    app: web.Application
    port: int
    opened: asyncio.Event
    ended: asyncio.Event


@asynccontextmanager
async def serving(heartbeat_s: float, serve: Serve) -> AsyncIterator[Served]:
    """A server of one route, `/`: a socket with `heartbeat_s`, handed to `serve`."""
    app = web.Application()
    app[SOCKETS] = weakref.WeakSet()
    opened, ended = asyncio.Event(), asyncio.Event()

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = server_socket(heartbeat_s, max_msg_size=1024)
        await ws.prepare(request)
        app[SOCKETS].add(ws)
        opened.set()
        try:
            await serve(ws)
        except ConnectionError:
            pass
        finally:
            ended.set()
        return ws

    app.router.add_get("/", handler)
    server = TestServer(app)
    await server.start_server()
    try:
        yield Served(app, server.port or 0, opened, ended)
    finally:
        await server.close()


async def until_ended_beside_a_client_that_never_reads(heartbeat_s: float, serve: Serve) -> None:
    """Hand a socket to `serve` for a client that never reads, until `serve` ends (10 s at most)."""
    async with serving(heartbeat_s, serve) as served:
        client = await a_client_that_never_reads(served.port)
        try:
            await asyncio.wait_for(served.ended.wait(), 10)
        finally:
            client.close()


async def test_a_client_that_stops_reading_is_dropped_when_it_misses_a_ping() -> None:
    await until_ended_beside_a_client_that_never_reads(0.2, sending_until_dropped)


async def test_a_socket_that_cannot_be_closed_at_shutdown_is_dropped() -> None:
    async with serving(600, sending_until_dropped) as served:
        client = await a_client_that_never_reads(served.port)
        try:
            await asyncio.wait_for(served.opened.wait(), 5)
            await asyncio.sleep(0.2)  # the buffers fill: the handler waits to write

            await asyncio.wait_for(close_sockets(served.app), SOCKET_CLOSE_S + 2)
            await asyncio.wait_for(served.ended.wait(), 2)
        finally:
            client.close()


async def test_a_client_is_read_no_faster_than_its_allowance_and_its_pings_are_answered() -> None:
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    allowance = TokenBucket(rate_per_minute=600, burst=60, clock=lambda: 0.0, sleep=sleep)

    async def reading(ws: web.WebSocketResponse) -> None:
        await until_client_leaves(ws, allowance)

    async with serving(600, reading) as served, aiohttp.ClientSession() as session:
        async with session.ws_connect(f"http://127.0.0.1:{served.port}/", autoping=False) as ws:
            for n in range(95):
                await ws.send_str(f"message {n}")
            for _ in range(5):
                await ws.ping(b"are you there")
            pongs = [await ws.receive(timeout=5) for _ in range(5)]
        await asyncio.wait_for(served.ended.wait(), 5)

    assert [pong.type for pong in pongs] == [aiohttp.WSMsgType.PONG] * 5
    assert len(sleeps) == 40, "the first 60 were read at once; each of the 40 after waited"
    assert sleeps[-1] == pytest.approx(4.0)


def client_frame(
    opcode: int, payload: bytes = b"", *, fin: bool = True, masked: bool = True
) -> bytes:
    """A short frame as a client sends it: masked (with a zero mask), unless told otherwise."""
    first = (0x80 if fin else 0) | opcode
    if not masked:
        return bytes([first, len(payload)]) + payload
    return bytes([first, 0x80 | len(payload)]) + bytes(4) + payload


async def closed_with(client: socket.socket, answer: bytes = b"") -> int:
    """The code of the close frame the server answers with (`answer`: what came already)."""
    loop = asyncio.get_running_loop()
    while len(answer) < 4:
        chunk = await asyncio.wait_for(loop.sock_recv(client, 4096), 5)
        assert chunk, f"the connection ended without a close frame: {answer!r}"
        answer += chunk
    assert answer[0] == 0x88, answer
    return int(struct.unpack("!H", answer[2:4])[0])


@pytest.mark.parametrize(
    ("sent", "code"),
    [
        (client_frame(0x1, b"hello", masked=False), 1002),
        (client_frame(0x8, struct.pack("!H", 5000)), 1002),
        (client_frame(0x8, struct.pack("!H", 4999)), 1000),
        (client_frame(0x1, b"\xff\xfe"), 1007),
    ],
    ids=["a frame not masked", "close code 5000", "close code 4999", "text not UTF-8"],
)
async def test_what_no_client_may_send_is_answered_with_1002_and_the_rest_is_not(
    sent: bytes, code: int
) -> None:
    async with serving(600, until_client_leaves) as served:
        client = await a_client_that_never_reads(served.port)
        try:
            await asyncio.get_running_loop().sock_sendall(client, sent)

            assert await closed_with(client) == code
            await asyncio.wait_for(served.ended.wait(), 5)
        finally:
            client.close()


async def test_a_client_sending_a_message_of_endless_empty_fragments_is_closed_with_1008() -> None:
    loop = asyncio.get_running_loop()
    async with serving(600, until_client_leaves) as served:
        client = await a_client_that_never_reads(served.port)
        try:
            await loop.sock_sendall(client, client_frame(0x1, b"x", fin=False))
            fragments = client_frame(0x0, fin=False) * 1000
            with contextlib.suppress(ConnectionError):
                for _ in range(10):
                    await loop.sock_sendall(client, fragments)

            assert await closed_with(client) == 1008
            await asyncio.wait_for(served.ended.wait(), 5)
        finally:
            client.close()


async def test_a_client_flooding_messages_is_closed_with_1008_before_they_are_read() -> None:
    """Its messages wait for a reader that takes ten a second: its close may not wait too.

    They come in two writes, the first within the frames' burst, so that the engine has
    queued hundreds of them when it counts too many.
    """
    loop = asyncio.get_running_loop()
    messages = client_frame(0x1, b"x") * 500
    async with serving(600, until_client_leaves) as served:
        client = await a_client_that_never_reads(served.port)
        try:
            await loop.sock_sendall(client, messages)
            await asyncio.sleep(0.2)
            with contextlib.suppress(ConnectionError):
                await loop.sock_sendall(client, messages)

            assert await closed_with(client) == 1008
            await asyncio.wait_for(served.ended.wait(), 5)
        finally:
            client.close()


async def test_frames_sent_with_the_handshake_are_judged_from_the_first_byte() -> None:
    """What came with the handshake goes through the same checks, and keeps frames apart.

    The handshake's write ends two bytes into a frame: were they read past, the checks
    would take its mask for a header, and the frames after it for its payload.
    """
    loop = asyncio.get_running_loop()
    started = client_frame(0x2, bytes(125))
    unmasked_ping = client_frame(0x9, masked=False)
    async with serving(600, until_client_leaves) as served:
        client, after = await handshake(served.port, early=started[:2])
        try:
            await loop.sock_sendall(client, started[2:] + unmasked_ping)

            assert await closed_with(client, after) == 1002
        finally:
            client.close()
    async with serving(600, until_client_leaves) as served:
        client, after = await handshake(served.port, early=unmasked_ping)
        try:
            assert await closed_with(client, after) == 1002
        finally:
            client.close()


async def test_a_client_trickling_a_frame_is_closed_with_1008_after_a_heartbeat_period() -> None:
    """Each byte holds off the heartbeat's ping: without a deadline it would stay for ever."""
    loop = asyncio.get_running_loop()
    trickled = client_frame(0x1, b"x" * 100)
    async with serving(0.5, until_client_leaves) as served:
        client = await a_client_that_never_reads(served.port)
        try:
            with contextlib.suppress(ConnectionError):
                for at in range(len(trickled)):
                    await loop.sock_sendall(client, trickled[at : at + 1])
                    await asyncio.sleep(0.1)
                    if served.ended.is_set():
                        break

            assert await closed_with(client) == 1008
            await asyncio.wait_for(served.ended.wait(), 5)
        finally:
            client.close()


async def test_a_client_that_never_reads_is_sent_a_few_hundred_kib_at_most() -> None:
    """Beyond that the sender waits: it reads and writes no more for a client not reading.

    The system would otherwise buffer megabytes for the connection, each of them read from
    the store and written by the engine first.
    """
    sent: list[int] = []

    async def sending_until_it_waits(ws: web.WebSocketResponse) -> None:
        with contextlib.suppress(TimeoutError):
            while True:
                await asyncio.wait_for(ws.send_bytes(bytes(1024)), 1)
                sent.append(1024)

    await until_ended_beside_a_client_that_never_reads(600, sending_until_it_waits)

    assert 0 < sum(sent) < 1 << 20
