"""Follow orders on an orderengine: the three ways into an order's stream, then the feed.

    .venv/bin/python examples/python/follow.py --url http://127.0.0.1:8080 [--key KEY]

Each way places a market order and prints its stream until the engine closes the socket.
The feed of all orders (`/api/events`) is opened first, so it holds every event of those
three orders; it is printed last, each event with its position, until all three have ended.
A key (`--key`, or the environment's `ORDERENGINE_KEY`) is sent as `Authorization: Bearer`.
Needs aiohttp 3.12 or later (client middlewares), as the project's virtualenv has.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from typing import Any

import aiohttp
from yarl import URL

ORDER = {"type": "market", "tokenIn": "SOL", "tokenOut": "USDC", "amountIn": "0.1"}
EXECUTE = "/api/orders/execute"
TERMINAL = {"confirmed", "failed"}
Event = dict[str, Any]


async def print_stream(way: str, ws: aiohttp.ClientWebSocketResponse) -> str:
    """Print every message until the engine closes the socket; the order's id."""
    order_id = ""
    async for message in ws:
        event = message.json()
        if "error" in event:
            sys.exit(f"{way}: {event['error']['message']}")
        order_id = event["orderId"]
        print(way, order_id, event.get("seq", "-"), event["status"])
    print(way, order_id, "closed", ws.close_code)
    return order_id


async def post_then_open(session: aiohttp.ClientSession, base: URL) -> str:
    """1. POST the order, then open the `ws` of the answer (it replays, then streams live)."""
    async with session.post(base.join(URL(EXECUTE)), json=ORDER) as response:
        accepted = await response.json()
    async with session.ws_connect(base.join(URL(accepted["ws"]))) as ws:
        return await print_stream("post-then-open", ws)


async def first_message(session: aiohttp.ClientSession, base: URL) -> str:
    """2. Open the socket and send the order: the accepted order comes back, then events."""
    async with session.ws_connect(base.join(URL(EXECUTE))) as ws:
        await ws.send_json(ORDER)
        return await print_stream("first-message", ws)


def with_body(order: Event) -> aiohttp.ClientMiddlewareType:
    """A middleware that gives a request the order as its JSON body.

    `ws_connect` takes a method but no body, so the body is put on its request here.
    """
    body = json.dumps(order).encode()

    async def add_body(
        request: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType
    ) -> aiohttp.ClientResponse:
        request.headers["Content-Type"] = "application/json"
        request.headers["Content-Length"] = str(len(body))
        await request.update_body(body)
        return await handler(request)

    return add_body


async def post_upgrade(headers: dict[str, str], base: URL) -> str:
    """3. POST the order with `Upgrade: websocket`: validated, then the same stream as 2."""
    middlewares = (with_body(ORDER),)
    async with (
        aiohttp.ClientSession(headers=headers, middlewares=middlewares) as session,
        session.ws_connect(base.join(URL(EXECUTE)), method="POST") as ws,
    ):
        return await print_stream("post-upgrade", ws)


async def read_feed(feed: aiohttp.ClientWebSocketResponse, events: asyncio.Queue[Event]) -> None:
    """Keep reading the feed (which also answers its pings) while the orders run."""
    async for message in feed:
        await events.put(message.json())
    await events.put({"closed": feed.close_code})


async def print_feed(events: asyncio.Queue[Event], orders: set[str]) -> None:
    """Print the feed's events until each of `orders` has ended."""
    while orders:
        event = await events.get()
        if "closed" in event:
            sys.exit(f"the feed closed with {event['closed']}")
        print("feed", event["position"], event["orderId"], event["seq"], event["status"])
        if event["status"] in TERMINAL:
            orders.discard(event["orderId"])


async def main(base: URL, key: str | None) -> None:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with (
        aiohttp.ClientSession(headers=headers, raise_for_status=True) as session,
        session.ws_connect(base.join(URL("/api/events"))) as feed,
    ):
        events: asyncio.Queue[Event] = asyncio.Queue()
        reader = asyncio.create_task(read_feed(feed, events))
        orders = {
            await post_then_open(session, base),
            await first_message(session, base),
            await post_upgrade(headers, base),
        }
        await print_feed(events, orders)
        reader.cancel()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Follow orders on an orderengine.")
    parser.add_argument("--url", default="http://127.0.0.1:8080", help="the engine's base URL")
    parser.add_argument("--key", default=os.environ.get("ORDERENGINE_KEY"), help="an API key")
    arguments = parser.parse_args()
    try:
        asyncio.run(main(URL(arguments.url), arguments.key))
    except aiohttp.ClientResponseError as error:
        sys.exit(f"{error.status} from {error.request_info.url}")
