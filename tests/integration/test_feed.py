"""The feed of all orders: every event, with a global position, resumable, no gaps."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any

from aiohttp import ClientWebSocketResponse

from orderengine.repository import Repository
from tests.harness import Client, StartApp
from tests.streams import MARKET, submit, wait_terminal

ALICE = "alice-key-0123456789"
BOB = "bob-key-0123456789abc"
UPGRADE = {
    "Upgrade": "websocket",
    "Connection": "Upgrade",
    "Sec-WebSocket-Version": "13",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
}


async def read(ws: ClientWebSocketResponse, count: int) -> list[dict[str, Any]]:
    """The next `count` messages of the feed."""
    messages: list[dict[str, Any]] = []
    async with asyncio.timeout(30):
        while len(messages) < count:
            messages.append(await ws.receive_json())
    return messages


def check_order(messages: list[dict[str, Any]]) -> None:
    """Positions rise, and each order's seqs run 1, 2, 3 … with no gap or repeat."""
    positions = [message["position"] for message in messages]
    assert positions == sorted(set(positions))
    seqs: defaultdict[str, list[int]] = defaultdict(list)
    for message in messages:
        seqs[message["orderId"]].append(message["seq"])
    for order_seqs in seqs.values():
        assert order_seqs == list(range(order_seqs[0], order_seqs[0] + len(order_seqs)))


async def test_the_feed_streams_every_event_of_every_order_in_order(client: Client) -> None:
    async with client.ws_connect("/api/events") as ws:
        ids = [await submit(client, MARKET) for _ in range(3)]
        for order_id in ids:
            await wait_terminal(client, order_id)
        messages = await read(ws, 3 * 5)

    check_order(messages)
    assert {m["orderId"] for m in messages} == set(ids)
    assert [m["status"] for m in messages if m["orderId"] == ids[0]] == [
        "pending",
        "routing",
        "building",
        "submitted",
        "confirmed",
    ]


async def test_the_feed_resumes_after_a_position_with_nothing_missed(client: Client) -> None:
    ids = [await submit(client, MARKET) for _ in range(2)]
    for order_id in ids:
        await wait_terminal(client, order_id)

    async with client.ws_connect("/api/events?after=0") as ws:
        everything = await read(ws, 10)
    middle = everything[4]["position"]
    async with client.ws_connect(f"/api/events?after={middle}") as ws:
        rest = await read(ws, 5)

    check_order(everything)
    assert rest == everything[5:]


async def test_a_position_beyond_the_newest_is_refused_not_waited_for(client: Client) -> None:
    """It was never given here: the feed would skip every event until positions reached it."""
    await wait_terminal(client, await submit(client, MARKET))
    async with client.ws_connect("/api/events?after=0") as ws:
        newest = (await read(ws, 5))[-1]["position"]

    beyond = await client.get(
        f"/api/events?after={newest + 1}",
        headers=UPGRADE,
    )
    async with client.ws_connect(f"/api/events?after={newest}") as ws:
        order_id = await submit(client, MARKET)
        live = await read(ws, 1)

    assert beyond.status == 400
    assert "beyond the newest position" in (await beyond.json())["error"]["message"]
    assert live[0]["orderId"] == order_id


async def test_the_feed_shows_a_key_only_its_own_orders(start_app: StartApp) -> None:
    client = await start_app(api_keys={"alice": ALICE, "bob": BOB})
    alice = {"Authorization": f"Bearer {ALICE}"}
    bob = {"Authorization": f"Bearer {BOB}"}

    async with client.ws_connect("/api/events?after=0", headers=bob) as ws:
        posted = await client.post("/api/orders/execute", json=MARKET, headers=alice)
        alices = (await posted.json())["orderId"]
        mine = await client.post("/api/orders/execute", json=MARKET, headers=bob)
        bobs = (await mine.json())["orderId"]
        messages = await read(ws, 5)

    assert {m["orderId"] for m in messages} == {bobs}
    assert alices != bobs
    refused = await client.get("/api/events")
    assert refused.status == 401


async def test_a_plain_get_of_the_feed_is_426_asking_for_a_websocket(client: Client) -> None:
    response = await client.get("/api/events")

    assert response.status == 426
    assert response.headers["Upgrade"] == "websocket"
    error = (await response.json())["error"]
    assert error["code"] == "upgrade_required"
    assert error["message"] == "GET here must upgrade to a WebSocket"


async def test_positions_are_given_by_one_sequencer_in_commit_order(
    client: Client, repository: Repository
) -> None:
    ids = [await submit(client, MARKET) for _ in range(4)]
    for order_id in ids:
        await wait_terminal(client, order_id)

    given = await asyncio.gather(*(repository.feed.sequence() for _ in range(4)))
    page = await repository.feed.read(0, 100)

    assert sum(given) == 20  # each event positioned once, whoever ran at once
    assert len(page) == 20
    positions = [entry.position for entry in page]
    assert positions == sorted(positions)
    assert await repository.feed.sequence() == 0


async def test_an_order_on_another_engine_reaches_the_feed(start_app: StartApp) -> None:
    first = await start_app()
    second = await start_app()

    async with second.ws_connect("/api/events") as ws:
        order_id = await submit(first, MARKET)
        messages = await read(ws, 5)

    assert {m["orderId"] for m in messages} == {order_id}
    assert messages[-1]["status"] == "confirmed"


async def test_a_browser_follows_the_feed_with_a_stream_token(start_app: StartApp) -> None:
    client = await start_app(api_keys={"alice": ALICE})
    alice = {"Authorization": f"Bearer {ALICE}"}
    minted = await (await client.post("/api/stream-tokens", headers=alice)).json()

    async with client.ws_connect(f"/api/events?after=0&token={minted['token']}") as ws:
        posted = await client.post("/api/orders/execute", json=MARKET, headers=alice)
        order_id = (await posted.json())["orderId"]
        messages = await read(ws, 5)
    order_token = (await posted.json())["ws"].split("&token=")[1]
    refused = await client.get(f"/api/events?token={order_token}", headers=UPGRADE)

    assert {m["orderId"] for m in messages} == {order_id}
    assert refused.status == 403  # a token for one order follows that order only


async def test_feeds_woken_at_once_each_read_every_event_without_waiting_for_an_idle_check(
    start_app: StartApp,
) -> None:
    """A feed that asks for positions while another feed gives them waits for that run.

    Swaps take a little time, so the events come one by one, each waking every feed at
    once. With a minute between idle checks, a feed that read before another's positions
    were committed would sit on what it missed until more news came, and on the last event
    for that minute: `read` would time out. It did, in one run of three, when a feed that
    found the sequencer busy gave nothing and read at once.
    """
    first = await start_app(ws_idle_check_s=60, latency_scale=0.02)
    second = await start_app(ws_idle_check_s=60, latency_scale=0.02)
    feeds = [await app.ws_connect("/api/events") for app in (first, second) for _ in range(4)]
    try:
        orders = await asyncio.gather(*(submit(app, MARKET) for app in (first, second) * 4))
        read_by_each = await asyncio.gather(*(read(ws, 5 * len(orders)) for ws in feeds))
    finally:
        for ws in feeds:
            await ws.close()

    for messages in read_by_each:
        check_order(messages)
        assert {m["orderId"] for m in messages} == set(orders)
    assert len({tuple(m["position"] for m in messages) for messages in read_by_each}) == 1
