"""A bounded backlog, and subscribers that cannot hold the engine back."""

from __future__ import annotations

import asyncio
import json
from functools import partial

import aiohttp
import pytest

from orderengine.engine import FRESH_COUNT_S
from tests.harness import Client, StartApp
from tests.polling import eventually
from tests.streams import MARKET, statuses, stream, submit
from tests.venues import Gate

LIMIT = {**MARKET, "type": "limit", "limitPrice": "1000000"}
"""An order for more than SOL fetches: it waits for its price."""


async def test_a_full_queue_answers_503_and_creates_nothing(start_app: StartApp) -> None:
    gate = Gate()
    client = await start_app(venues=gate.venues, concurrency=1, queue_limit=2)
    executing = await submit(client)
    await gate.waiting.wait()
    queued: list[str] = []
    for _ in range(3):
        response = await client.post("/api/orders/execute", json=MARKET)
        if response.status != 201:
            refused = response
            break
        queued.append((await response.json())["orderId"])
    else:
        pytest.fail("three orders were queued behind a limit of two")

    # An order accepted while the engine counts its backlog may be counted twice for a
    # moment (the backlog errs towards refusing early), so the limit may bite one sooner.
    assert len(queued) in (1, 2)
    assert refused.status == 503
    assert int(refused.headers["Retry-After"]) >= 1
    assert (await refused.json())["error"]["code"] == "queue_full"
    listing = await (await client.get("/api/orders")).json()
    assert len(listing["orders"]) == 1 + len(queued)
    gate.opened.set()
    for order_id in [executing, *queued]:
        assert statuses(await stream(client, order_id))[-1] == "confirmed"
    assert (await client.post("/api/orders/execute", json=MARKET)).status == 201


async def test_a_full_queue_refuses_an_order_that_will_wait_too(start_app: StartApp) -> None:
    """A limit already met is due at the next look at its price, as any market order is."""
    gate = Gate()
    client = await start_app(venues=gate.venues, concurrency=1, queue_limit=1)
    await submit(client)
    await gate.waiting.wait()
    for _ in range(3):
        if (await client.post("/api/orders/execute", json=MARKET)).status == 503:
            break
    else:
        pytest.fail("the queue never filled")

    met = await client.post("/api/orders/execute", json={**LIMIT, "limitPrice": "0.000001"})

    assert met.status == 503
    assert (await met.json())["error"]["code"] == "queue_full"
    gate.opened.set()


async def test_a_queue_emptied_by_cancels_takes_orders_at_once(start_app: StartApp) -> None:
    """Between counts the backlog follows only what this engine accepts and claims."""
    gate = Gate()
    client = await start_app(venues=gate.venues, concurrency=1, queue_limit=2)
    executing = await submit(client)
    await gate.waiting.wait()
    queued = [await submit(client) for _ in range(2)]
    assert (await client.post("/api/orders/execute", json=MARKET)).status == 503
    for order_id in queued:
        assert (await client.delete(f"/api/orders/{order_id}")).status == 200
    await asyncio.sleep(FRESH_COUNT_S)

    accepted = await client.post("/api/orders/execute", json=MARKET)

    assert accepted.status == 201, await accepted.text()
    gate.opened.set()
    assert statuses(await stream(client, executing))[-1] == "confirmed"


async def submitted(client: Client, order_id: str) -> bool:
    order = await (await client.get(f"/api/orders/{order_id}")).json()
    return bool(order["status"] == "submitted")


async def test_the_queue_limit_counts_the_orders_other_engines_accept(
    start_app: StartApp,
) -> None:
    """Each engine checks the limit against the whole database's backlog, not its own."""
    gate = Gate()
    first, second = [
        await start_app(venues=gate.venues, concurrency=1, queue_limit=3) for _ in range(2)
    ]
    busy = [await submit(first), await submit(second)]
    for client, order_id in zip((first, second), busy, strict=True):
        await eventually(partial(submitted, client, order_id))
    for _ in range(3):
        assert (await first.post("/api/orders/execute", json=MARKET)).status == 201

    refused = await second.post("/api/orders/execute", json=MARKET)

    assert refused.status == 503
    assert (await refused.json())["error"]["code"] == "queue_full"
    gate.opened.set()


async def test_a_socket_that_never_reads_does_not_hold_up_other_orders(
    start_app: StartApp,
) -> None:
    client = await start_app()
    watched = await submit(client)
    idle = await client.ws_connect(f"/api/orders/execute?orderId={watched}")

    others = [await submit(client) for _ in range(5)]
    results = [statuses(await stream(client, order_id))[-1] for order_id in others]

    assert results == ["confirmed"] * 5
    await idle.close()


async def test_heartbeats_drop_a_client_that_stops_answering(start_app: StartApp) -> None:
    gate = Gate()
    client = await start_app(venues=gate.venues, ws_heartbeat_s=0.1)
    order_id = await submit(client)
    silent = await client.ws_connect(f"/api/orders/execute?orderId={order_id}", autoping=False)

    async with asyncio.timeout(5):
        async for _ in silent:
            pass

    assert silent.closed
    gate.opened.set()


async def test_an_oversized_first_socket_message_is_refused(client: Client) -> None:
    async with client.ws_connect("/api/orders/execute") as ws:
        await ws.send_json({**MARKET, "padding": "x" * 100_000})
        async with asyncio.timeout(5):
            async for _ in ws:
                pass

    assert ws.close_code == 1009
    assert (await (await client.get("/api/orders")).json())["orders"] == []


@pytest.mark.parametrize(("extra", "close_code"), [(0, None), (1, 1009)])
async def test_a_first_socket_message_may_be_as_long_as_a_post_body(
    start_app: StartApp, extra: int, close_code: int | None
) -> None:
    client = await start_app(max_body_bytes=4096)
    order = json.dumps(MARKET)
    message = order + " " * (4096 - len(order) + extra)

    async with client.ws_connect("/api/orders/execute") as ws:
        await ws.send_str(message)
        reply = await ws.receive(timeout=5)

    if close_code is None:
        assert json.loads(reply.data)["status"] == "pending"
    else:
        assert reply.type is aiohttp.WSMsgType.CLOSE
        assert ws.close_code == close_code


async def test_sockets_decline_the_compression_a_browser_asks_for(client: Client) -> None:
    """A compressor kept per socket would cost memory and CPU for messages this small."""
    order_id = await submit(client)
    for path in (f"/api/orders/execute?orderId={order_id}", "/api/events"):
        async with client.ws_connect(path, compress=15) as ws:
            assert ws.compress == 0

    assert statuses(await stream(client, order_id))[-1] == "confirmed"
