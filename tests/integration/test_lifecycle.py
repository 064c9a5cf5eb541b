"""An order's whole life as a client sees it, on each of the three ways to follow it."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal

from tests.harness import Client
from tests.streams import (
    MARKET,
    post_upgrade,
    read_until_closed,
    seqs,
    statuses,
    stream,
    submit,
)

LIFECYCLE = ["pending", "routing", "building", "submitted", "confirmed"]


async def test_post_then_websocket_streams_every_status_then_closes(client: Client) -> None:
    response = await client.post("/api/orders/execute", json=MARKET)
    assert response.status == 201
    body = await response.json()
    assert body["status"] == "pending"
    assert response.headers["Location"] == f"/api/orders/{body['orderId']}"
    assert body["ws"] == f"/api/orders/execute?orderId={body['orderId']}"

    events = await stream(client, body["orderId"])

    assert statuses(events) == LIFECYCLE
    assert seqs(events) == [1, 2, 3, 4, 5]
    assert {event["orderId"] for event in events} == {body["orderId"]}
    confirmed = events[-1]
    assert confirmed["dex"] in ("raydium", "meteora")
    assert Decimal(confirmed["amountOut"]) > 0
    assert isinstance(confirmed["executedPrice"], str)
    assert confirmed["txHash"] == events[3]["txHash"]


async def test_order_sent_as_first_socket_message_is_accepted_and_streamed(
    client: Client,
) -> None:
    async with client.ws_connect("/api/orders/execute") as ws:
        await ws.send_json(MARKET)
        messages = await read_until_closed(ws)
    assert ws.close_code == 1000
    accepted, events = messages[0], messages[1:]
    assert accepted["status"] == "pending"
    assert "seq" not in accepted
    assert statuses(events) == LIFECYCLE
    assert {event["orderId"] for event in events} == {accepted["orderId"]}


async def test_post_with_upgrade_streams_the_order_on_that_connection(client: Client) -> None:
    status, messages = await post_upgrade(client, json.dumps(MARKET).encode())
    assert status == 101
    accepted, events = messages[0], messages[1:]
    assert statuses(events) == LIFECYCLE
    assert {event["orderId"] for event in events} == {accepted["orderId"]}


async def test_invalid_order_posted_with_upgrade_is_refused_before_upgrading(
    client: Client,
) -> None:
    status, messages = await post_upgrade(client, json.dumps({**MARKET, "amountIn": "-1"}).encode())
    assert status == 422
    assert messages == []
    listing = await (await client.get("/api/orders")).json()
    assert listing["orders"] == []


async def test_late_subscriber_gets_the_same_events_and_since_resumes(client: Client) -> None:
    order_id = await submit(client)
    live = await stream(client, order_id)

    late = await stream(client, order_id)
    resumed = await stream(client, order_id, since=2)
    past_the_end = await stream(client, order_id, since=99)

    assert late == live
    assert resumed == live[2:]
    assert past_the_end == []


async def test_a_socket_opened_with_a_parameter_it_does_not_know_streams_all_the_same(
    client: Client,
) -> None:
    order_id = await submit(client)

    async with client.ws_connect(f"/api/orders/execute?orderId={order_id}&_=1732") as ws:
        events = await read_until_closed(ws)

    assert statuses(events)[-1] == "confirmed"
    assert ws.close_code == 1000


async def test_get_order_returns_the_order_with_its_history(client: Client) -> None:
    order_id = await submit(client)
    events = await stream(client, order_id)

    order = await (await client.get(f"/api/orders/{order_id}")).json()

    assert order["status"] == "confirmed"
    assert order["events"] == events
    assert order["amountOut"] == events[-1]["amountOut"]
    assert order["txHash"] == events[-1]["txHash"]
    assert order["amountIn"] == "1.5"


async def test_routing_event_shows_every_quote_and_why_the_best_won(client: Client) -> None:
    order_id = await submit(client)
    routing = (await stream(client, order_id))[1]

    quotes = routing["quotes"]
    assert {quote["dex"] for quote in quotes} == {"raydium", "meteora"}
    best = max(quotes, key=lambda quote: Decimal(quote["amountOut"]))
    assert routing["dex"] == best["dex"]
    assert best["dex"].capitalize() in routing["reason"]
    assert "better than" in routing["reason"]
    for quote in quotes:
        assert {"amountOut", "fee", "priceImpactPct", "pool", "price"} <= quote.keys()


async def test_native_sol_is_wrapped_on_the_way_in_and_unwrapped_on_the_way_out(
    client: Client,
) -> None:
    selling = await stream(client, await submit(client))
    buying = await stream(
        client, await submit(client, {**MARKET, "tokenIn": "USDC", "tokenOut": "SOL"})
    )

    def steps(events: list[dict[str, object]]) -> list[str]:
        building = next(event for event in events if event["status"] == "building")
        transaction = building["transaction"]
        assert isinstance(transaction, dict)
        return [step["action"] for step in transaction["instructions"]]

    wrapped = ["createIdempotent", "transfer", "syncNative", "swap", "closeAccount", "memo"]
    assert steps(selling) == wrapped
    assert steps(buying) == ["createIdempotent", "swap", "closeAccount", "memo"]


async def test_amount_sent_as_json_number_is_kept_exact(client: Client) -> None:
    response = await client.post(
        "/api/orders/execute",
        data=b'{"type": "market", "tokenIn": "SOL", "tokenOut": "USDC", "amountIn": 0.1}',
        headers={"Content-Type": "application/json"},
    )
    assert response.status == 201
    assert (await response.json())["amountIn"] == "0.1"


async def test_listing_is_newest_first_filtered_and_paged(client: Client) -> None:
    ids = [await submit(client) for _ in range(5)]
    for order_id in ids:
        await stream(client, order_id)

    first = await (await client.get("/api/orders?limit=2")).json()
    second = await (await client.get(f"/api/orders?limit=2&cursor={first['nextCursor']}")).json()
    third = await (await client.get(f"/api/orders?limit=2&cursor={second['nextCursor']}")).json()
    confirmed = await (await client.get("/api/orders?status=confirmed")).json()
    pending = await (await client.get("/api/orders?status=pending")).json()
    below_all = await (await client.get("/api/orders?cursor=0")).json()

    paged = [order["orderId"] for page in (first, second, third) for order in page["orders"]]
    assert paged == list(reversed(ids))
    assert third["nextCursor"] is None
    assert len(confirmed["orders"]) == 5
    assert pending["orders"] == []
    assert below_all == {"orders": [], "nextCursor": None}, "no position is below 0"


async def test_a_client_that_reads_late_still_gets_every_event_and_the_normal_close(
    client: Client,
) -> None:
    order_id = await submit(client)
    live = await stream(client, order_id)

    async with client.ws_connect(f"/api/orders/execute?orderId={order_id}") as ws:
        await asyncio.sleep(0.2)
        late = await read_until_closed(ws)

    assert late == live
    assert ws.close_code == 1000
