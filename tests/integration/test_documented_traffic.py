"""Real traffic of every kind, each answer and message matching the API's documents.

Every test client checks all it receives as it arrives (`tests/recorded_traffic.py`); these
tests drive a broad set of requests on purpose (every route, the statuses that can be
provoked from a client, the three ways into a socket, the feed, limit and sniper orders, a
listing, failed attempts) and show that each kind was received and matched. What a test
client cannot receive (a POST that upgrades, spoken over a plain socket) is checked here by
hand.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest

from orderengine.routes import LISTING_EXAMPLE, ORDER_EXAMPLES
from orderengine.wire import EXECUTE
from tests.harness import Client, StartApp
from tests.raw_http import exchange, request_bytes, serving
from tests.recorded_traffic import Checked, check_answer, check_message, watching
from tests.streams import MARKET, post_upgrade, read_until_closed, stream, submit
from tests.venues import Down, wrapping

KEY, OTHER = "alice-key-0123456789", "bob-key-0123456789abc"
FAR_LIMIT = {**ORDER_EXAMPLES["limit"], "limitPrice": "1000000"}
"""A limit order whose price never comes: it waits."""


def answered(seen: Iterable[Checked]) -> set[tuple[str, str]]:
    return {(checked.where, checked.what) for checked in seen}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def follow(client: Client, order_id: str) -> list[dict[str, Any]]:
    """The order's events over its socket, until it ends or `limit_s` passes."""
    async with client.ws_connect(f"{EXECUTE}?orderId={order_id}") as ws:
        return await read_until_closed(ws)


async def wait_for(client: Client, order_id: str, kind: str) -> None:
    """Until the order has an event with the field `kind` (`waiting`, say)."""
    async with asyncio.timeout(20):
        while True:
            order = await (await client.get(f"/api/orders/{order_id}")).json()
            if any(kind in event for event in order["events"]):
                return
            await asyncio.sleep(0.05)


async def test_every_route_answers_as_documented(client: Client) -> None:
    with watching() as seen:
        market = await submit(client, MARKET)
        key = {"Idempotency-Key": "documented-traffic"}
        first = await client.post(EXECUTE, json=MARKET, headers=key)
        again = await client.post(EXECUTE, json=MARKET, headers=key)
        other = await client.post(EXECUTE, json={**MARKET, "amountIn": "2"}, headers=key)
        await client.post(EXECUTE, json={**MARKET, "tokenOut": "NOPE"})
        await stream(client, market)
        await client.get("/api/orders?status=confirmed&limit=20")
        await client.get("/api/orders?limit=0")
        await client.get(f"/api/orders/{market}")
        await client.get("/api/orders/00000000-0000-0000-0000-000000000000")
        await client.delete(f"/api/orders/{market}")
        waiting = await submit(client, FAR_LIMIT)
        await client.delete(f"/api/orders/{waiting}")
        await client.get("/api/quotes?tokenIn=SOL&tokenOut=USDC&amountIn=1.5")
        await client.get("/api/quotes?tokenIn=SOL&tokenOut=SOL&amountIn=-1")
        await client.get("/api/quotes?tokenIn=SOL&tokenIn=SOL&tokenOut=USDC&amountIn=1")
        await client.post("/api/simulation/listings", json=LISTING_EXAMPLE)
        await client.post("/api/simulation/listings", json=LISTING_EXAMPLE)
        await client.post("/api/simulation/listings", json={**LISTING_EXAMPLE, "dex": "?"})
        await client.get("/api/tokens")
        await client.post("/api/stream-tokens")
        for path in ("/health", "/metrics", "/api/openapi.json", "/api/asyncapi.json"):
            await client.get(path)
        await client.get("/api/docs")
        await client.get("/api/docs?file=swagger-ui.css")
        await client.get("/api/docs?file=nothing")

    assert (first.status, again.status, other.status) == (201, 200, 409)
    assert answered(seen) >= {
        ("POST /api/orders/execute", "201"),
        ("POST /api/orders/execute", "200"),
        ("POST /api/orders/execute", "409"),
        ("POST /api/orders/execute", "422"),
        ("GET /api/orders", "200"),
        ("GET /api/orders", "400"),
        ("GET /api/orders/{order_id}", "200"),
        ("GET /api/orders/{order_id}", "404"),
        ("DELETE /api/orders/{order_id}", "409"),
        ("DELETE /api/orders/{order_id}", "200"),
        ("GET /api/quotes", "200"),
        ("GET /api/quotes", "422"),
        ("GET /api/quotes", "400"),
        ("POST /api/simulation/listings", "201"),
        ("POST /api/simulation/listings", "409"),
        ("POST /api/simulation/listings", "422"),
        ("GET /api/tokens", "200"),
        ("POST /api/stream-tokens", "201"),
        ("GET /health", "200"),
        ("GET /metrics", "200"),
        ("GET /api/openapi.json", "200"),
        ("GET /api/asyncapi.json", "200"),
        ("GET /api/docs", "200"),
        ("GET /api/docs", "404"),
    }


async def test_refusals_before_any_handler_are_documented(start_app: StartApp) -> None:
    client = await start_app(max_body_bytes=1024)
    with watching() as seen:
        await client.post(EXECUTE, json={**MARKET, "pad": "x" * 2000})
        await client.post(EXECUTE, data=b"{}", headers={"Content-Type": "text/plain"})
        await client.post(EXECUTE, data=b'{"type": ', headers={"Content-Type": "application/json"})
        await client.put("/api/orders")
        await client.get("/api/nothing-here")
        plain_get = await client.get(EXECUTE)
        with pytest.raises(aiohttp.WSServerHandshakeError):
            await client.ws_connect(EXECUTE, origin="https://elsewhere.example")

    assert plain_get.status == 405
    assert answered(seen) >= {
        ("POST /api/orders/execute", "413"),
        ("POST /api/orders/execute", "415"),
        ("POST /api/orders/execute", "400"),
        ("PUT /api/orders", "405"),
        ("GET /api/nothing-here", "404"),
        ("GET /api/orders/execute", "405"),
        ("GET /api/orders/execute", "403"),
    }


async def test_what_the_engines_listener_refuses_is_documented(database_url: str) -> None:
    async with serving(database_url, request_timeout_s=0.2) as site:
        requests = [
            request_bytes("GET", "/api/orders?padding=" + "x" * 5000),
            request_bytes("GET", "/health", headers={f"X-{n}": "1" for n in range(70)}),
            request_bytes("POST", EXECUTE, headers={"Content-Type": "application/json"}).replace(
                b"Content-Length: 0", b"Content-Length: 10"
            ),
        ]
        answers = [await exchange(site.port, request) for request in requests]
        with watching() as seen:
            for (method, path), answer in zip(
                [("GET", "/api/orders"), ("GET", "/health"), ("POST", EXECUTE)],
                answers,
                strict=True,
            ):
                media_type = answer.headers["content-type"].split(";")[0]
                check_answer(method, path, answer.status, media_type, answer.body)

    assert answered(seen) == {
        ("GET /api/orders", "414"),
        ("GET /health", "431"),
        ("POST /api/orders/execute", "408"),
    }


async def test_the_answers_of_access_control_are_documented(start_app: StartApp) -> None:
    client = await start_app(
        api_keys={"alice": KEY, "bob": OTHER}, admin_keys=("alice",), key_submit_per_minute=1
    )
    with watching() as seen:
        await client.get("/api/orders")
        await client.get("/api/tokens", headers=bearer("a-wrong-key-000000000"))
        await client.post("/api/simulation/listings", json=LISTING_EXAMPLE, headers=bearer(OTHER))
        await client.post(EXECUTE, json=MARKET, headers=bearer(KEY))
        limited = await client.post(EXECUTE, json=MARKET, headers=bearer(KEY))
        await client.get("/api/docs")

    assert limited.status == 429
    assert answered(seen) >= {
        ("GET /api/orders", "401"),
        ("GET /api/tokens", "401"),
        ("POST /api/simulation/listings", "403"),
        ("POST /api/orders/execute", "201"),
        ("POST /api/orders/execute", "429"),
        ("GET /api/docs", "200"),
    }


async def test_the_three_ways_in_send_documented_messages(client: Client) -> None:
    with watching() as seen:
        followed = await follow(client, await submit(client, MARKET))
        async with client.ws_connect(EXECUTE) as ws:
            await ws.send_json(MARKET)
            first_message = await read_until_closed(ws)
        async with client.ws_connect(EXECUTE) as refused:
            await refused.send_json({"type": "market"})
            refusal = await read_until_closed(refused)
        status, posted = await post_upgrade(client, json.dumps(MARKET).encode())
        by_post = [check_message("submitByPost", message).what for message in posted]
        check_answer("POST", EXECUTE, status, "", b"")

    assert [event["status"] for event in followed][-1] == "confirmed"
    assert first_message[0]["status"] == "pending"
    assert "ws" in first_message[0]
    assert refusal[0]["error"]["code"] == "invalid_order"
    assert refused.close_code == 1008
    assert by_post[:2] == ["acceptedOrder", "plain"]
    assert by_post[-1] == "confirmed"
    assert answered(seen) >= {
        ("followOrder", "plain"),
        ("followOrder", "routingDecided"),
        ("followOrder", "building"),
        ("followOrder", "submitted"),
        ("followOrder", "confirmed"),
        ("submitOnSocket", "acceptedOrder"),
        ("submitOnSocket", "confirmed"),
        ("submitOnSocket", "error"),
        ("submitByPost", "acceptedOrder"),
        ("POST /api/orders/execute", "101"),
    }


async def test_limit_and_sniper_orders_send_documented_messages(client: Client) -> None:
    soon = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    with watching() as seen:
        accepted = await client.post(EXECUTE, json=ORDER_EXAMPLES["sniper"])
        sniper = (await accepted.json())["orderId"]
        cancelled = await submit(client, FAR_LIMIT)
        expiring = await submit(client, {**FAR_LIMIT, "expiresAt": soon})
        await wait_for(client, sniper, "waiting")
        await wait_for(client, cancelled, "waiting")
        await client.delete(f"/api/orders/{cancelled}")
        await client.post("/api/simulation/listings", json=LISTING_EXAMPLE)
        sniped = await follow(client, sniper)
        ended = [await follow(client, order_id) for order_id in (cancelled, expiring)]

    assert accepted.status == 201
    assert sniped[0]["waiting"] == "listing"
    assert sniped[-1]["status"] == "confirmed"
    assert ended[0][-1]["cancelled"] is True
    assert ended[1][-1]["expired"] is True
    assert answered(seen) >= {
        ("followOrder", "waiting"),
        ("followOrder", "routingDecided"),
        ("followOrder", "confirmed"),
        ("followOrder", "cancelled"),
        ("followOrder", "expired"),
    }


async def test_failed_attempts_send_documented_messages(start_app: StartApp) -> None:
    client = await start_app(venues=wrapping(Down), max_attempts=2)
    with watching() as seen:
        events = await follow(client, await submit(client, MARKET))

    assert events[-1]["status"] == "failed"
    assert answered(seen) >= {
        ("followOrder", "routingFailed"),
        ("followOrder", "retryScheduled"),
        ("followOrder", "failed"),
    }


async def test_the_feed_sends_documented_messages(client: Client) -> None:
    with watching() as seen:
        async with client.ws_connect("/api/events") as ws:
            order_id = await submit(client, MARKET)
            feed = [await ws.receive_json(timeout=20) for _ in range(5)]

    assert {message["orderId"] for message in feed} == {order_id}
    assert answered(seen) >= {
        ("eventFeed", "feedPlain"),
        ("eventFeed", "feedRoutingDecided"),
        ("eventFeed", "feedBuilding"),
        ("eventFeed", "feedSubmitted"),
        ("eventFeed", "feedConfirmed"),
    }
