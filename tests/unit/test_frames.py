"""Several messages written at once: each arrives whole, in order, as a client reads them."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from aiohttp import ClientConnectionResetError, WSMsgType, web
from pytest_aiohttp import AiohttpClient

from orderengine.frames import CHUNK_BYTES, send_texts, text_frame
from tests.polling import eventually

TEXTS = ["", "é" * 3, "x" * 125, "y" * 126, "z" * 65_535, "w" * 65_536, '{"seq": 1}']
"""Every length encoding: up to 125 bytes, 16 bits from 126, 64 bits from 65,536."""


def test_a_frame_says_its_length_as_rfc_6455_lays_it_out() -> None:
    assert text_frame("hi") == b"\x81\x02hi"
    assert text_frame("a" * 126)[:4] == b"\x81\x7e\x00\x7e"
    assert text_frame("a" * 65_536)[:10] == b"\x81\x7f" + (65_536).to_bytes(8, "big")
    assert len(text_frame("é")) == 2 + 2, "the length is in bytes of UTF-8, not characters"


async def test_texts_sent_at_once_arrive_as_messages_in_order(
    aiohttp_client: AiohttpClient,
) -> None:
    async def send(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await send_texts(request, ws, TEXTS)
        await ws.send_str("after")
        await ws.close()
        return ws

    app = web.Application()
    app.router.add_get("/", send)
    client = await aiohttp_client(app)
    async with client.ws_connect("/") as ws:
        received = [message.data async for message in ws if message.type is WSMsgType.TEXT]
    assert received == [*TEXTS, "after"]


async def test_nothing_is_sent_once_the_socket_is_closing(aiohttp_client: AiohttpClient) -> None:
    refused: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

    async def send_after_close(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.close()
        with pytest.raises(ClientConnectionResetError):
            await send_texts(request, ws, ["late"])
        refused.set_result(True)
        return ws

    app = web.Application()
    app.router.add_get("/", send_after_close)
    client = await aiohttp_client(app)
    async with client.ws_connect("/") as ws:
        received = [message.type async for message in ws]
    assert received == [], "the client saw the close and nothing after it"
    assert await refused


async def test_the_sender_waits_for_a_client_that_stops_reading(
    aiohttp_client: AiohttpClient,
) -> None:
    """Flow control is aiohttp's: once the connection's buffers are full, `send_texts` waits."""
    batch = ["x" * 50_000] * 10
    batches = 100
    sent = 0

    async def flood(request: web.Request) -> web.WebSocketResponse:
        nonlocal sent
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        with contextlib.suppress(ClientConnectionResetError, ConnectionResetError):
            while sent < batches:
                await send_texts(request, ws, batch)
                sent += 1
        return ws

    app = web.Application()
    app.router.add_get("/", flood)
    client = await aiohttp_client(app)
    async with client.ws_connect("/"):
        async with asyncio.timeout(5):
            while True:
                before = sent
                await asyncio.sleep(0.2)
                if sent == before:
                    break
        assert 0 < sent < batches // 2, "about 25 MB went nowhere: the sender did not wait"


async def test_a_client_that_stops_reading_is_owed_its_messages_a_chunk_at_a_time(
    aiohttp_client: AiohttpClient,
) -> None:
    """Twenty megabytes owed hold a chunk in the engine's buffers, not twenty megabytes."""
    owed = ["x" * 50_000] * 400
    transports: list[asyncio.Transport] = []

    async def send_all(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        assert isinstance(request.transport, asyncio.Transport)
        transports.append(request.transport)
        with contextlib.suppress(ClientConnectionResetError, ConnectionResetError):
            await send_texts(request, ws, owed)
        return ws

    app = web.Application()
    app.router.add_get("/", send_all)
    client = await aiohttp_client(app)
    sizes: list[int] = []

    async def settled() -> bool:
        """Whether the sender stopped writing: the buffered bytes did not change."""
        sizes.append(transports[0].get_write_buffer_size() if transports else -1)
        return len(sizes) > 1 and sizes[-1] == sizes[-2] >= 0

    async with client.ws_connect("/"):
        await eventually(settled, limit_s=5, interval_s=0.2)

    assert sizes[-1] <= 3 * CHUNK_BYTES
