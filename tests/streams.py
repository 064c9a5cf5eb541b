"""Client-side helpers: read an order's WebSocket stream the way a trading front-end would."""

from __future__ import annotations

import asyncio
import base64
import json
import os
from typing import Any

import aiohttp

from tests.harness import Client

MARKET: dict[str, Any] = {
    "type": "market",
    "tokenIn": "SOL",
    "tokenOut": "USDC",
    "amountIn": "1.5",
    "slippageBps": 100,
}


async def read_until_closed(
    ws: aiohttp.ClientWebSocketResponse, limit_s: float = 20
) -> list[dict[str, Any]]:
    """Every JSON message until the server closes the socket."""
    messages: list[dict[str, Any]] = []
    async with asyncio.timeout(limit_s):
        async for message in ws:
            assert message.type == aiohttp.WSMsgType.TEXT, message
            messages.append(json.loads(message.data))
    return messages


async def submit(client: Client, body: dict[str, Any] | None = None) -> str:
    response = await client.post("/api/orders/execute", json=body or MARKET)
    assert response.status == 201, await response.text()
    order_id: str = (await response.json())["orderId"]
    return order_id


async def stream(client: Client, order_id: str, since: int | None = None) -> list[dict[str, Any]]:
    """The events of an order over its WebSocket, up to the server's normal close."""
    query = f"orderId={order_id}" + (f"&since={since}" if since is not None else "")
    async with client.ws_connect(f"/api/orders/execute?{query}") as ws:
        events = await read_until_closed(ws)
    assert ws.close_code == 1000
    return events


async def wait_terminal(client: Client, order_id: str) -> dict[str, Any]:
    """The order once it is confirmed or failed, read over its stream."""
    await stream(client, order_id)
    response = await client.get(f"/api/orders/{order_id}")
    order: dict[str, Any] = await response.json()
    assert order["status"] in ("confirmed", "failed")
    return order


async def post_upgrade(
    client: Client, body: bytes, target: str = "/api/orders/execute"
) -> tuple[int, list[dict[str, Any]]]:
    """POST `body` to `target` with `Upgrade: websocket` on a raw connection.

    aiohttp's client only upgrades GET. Returns the status code and every text frame until
    the server's close frame.
    """
    assert client.server.host is not None
    assert client.server.port is not None
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    key = base64.b64encode(os.urandom(16)).decode()
    head = (
        f"POST {target} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    writer.write(head.encode() + body)
    messages: list[dict[str, Any]] = []
    try:
        async with asyncio.timeout(20):
            status = int((await reader.readuntil(b"\r\n\r\n")).split()[1])
            while status == 101:
                first, length = await reader.readexactly(2)
                length &= 0x7F
                if length == 126:
                    length = int.from_bytes(await reader.readexactly(2), "big")
                elif length == 127:
                    length = int.from_bytes(await reader.readexactly(8), "big")
                payload = await reader.readexactly(length)
                if first & 0x0F == 0x8:
                    break
                messages.append(json.loads(payload))
    finally:
        writer.close()
    return status, messages


def statuses(events: list[dict[str, Any]]) -> list[str]:
    return [event["status"] for event in events]


def seqs(events: list[dict[str, Any]]) -> list[int]:
    return [event["seq"] for event in events]
