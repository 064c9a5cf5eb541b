"""Bad input gets a clear error in one shape, changes nothing, and stops no one else."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from tests.harness import Client
from tests.streams import MARKET, read_until_closed, statuses, stream, submit


def without(field: str) -> dict[str, Any]:
    return {key: value for key, value in MARKET.items() if key != field}


BAD_ORDERS: list[Any] = [
    without("tokenOut"),
    {**MARKET, "amountIn": True},
    {**MARKET, "tokenIn": "DOGE"},
    {**MARKET, "type": "limit"},
    {**MARKET, "slippageBps": "50"},
    {**MARKET, "amount": "1"},
    [MARKET],
]
"""A few bad orders of different kinds; every kind is in tests/unit/test_order_request.py."""


async def order_count(client: Client) -> int:
    listing = await (await client.get("/api/orders?limit=200")).json()
    return len(listing["orders"])


def error_of(body: Any) -> dict[str, Any]:
    assert set(body) == {"error"}
    error: dict[str, Any] = body["error"]
    assert {"code", "message", "details"} <= error.keys()
    assert isinstance(error["message"], str)
    return error


async def test_invalid_order_is_422_with_field_reasons_and_creates_nothing(
    client: Client,
) -> None:
    response = await client.post("/api/orders/execute", json={**MARKET, "tokenOut": "SOL"})

    assert response.status == 422
    error = error_of(await response.json())
    assert error["code"] == "invalid_order"
    assert error["details"] == [
        {"field": "tokenOut", "message": "tokenOut must differ from tokenIn", "type": "value_error"}
    ]
    assert await order_count(client) == 0


async def test_unreadable_json_is_400_and_creates_nothing(client: Client) -> None:
    response = await client.post(
        "/api/orders/execute", data=b"{nope", headers={"Content-Type": "application/json"}
    )

    assert response.status == 400
    assert error_of(await response.json())["code"] == "bad_request"
    assert await order_count(client) == 0


async def test_oversized_body_is_413_and_creates_nothing(client: Client) -> None:
    body = json.dumps({**MARKET, "padding": "x" * 100_000})

    response = await client.post(
        "/api/orders/execute", data=body, headers={"Content-Type": "application/json"}
    )

    assert response.status == 413
    error_of(await response.json())
    assert await order_count(client) == 0


@pytest.mark.parametrize("order_id", [str(uuid.uuid4()), "not-a-uuid", "1"])
async def test_unknown_or_malformed_order_is_404(client: Client, order_id: str) -> None:
    response = await client.get(f"/api/orders/{order_id}")

    assert response.status == 404
    assert error_of(await response.json())["code"] == "order_not_found"


async def test_websocket_for_an_unknown_order_is_refused_with_404(client: Client) -> None:
    response = await client.get(
        f"/api/orders/execute?orderId={uuid.uuid4()}",
        headers={
            "Connection": "Upgrade",
            "Upgrade": "websocket",
            "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        },
    )

    assert response.status == 404
    assert error_of(await response.json())["code"] == "order_not_found"


async def test_invalid_first_socket_message_gets_an_error_and_close_1008(client: Client) -> None:
    async with client.ws_connect("/api/orders/execute") as ws:
        await ws.send_json(without("tokenIn"))
        messages = await read_until_closed(ws)

    assert ws.close_code == 1008
    assert [error_of(message)["code"] for message in messages] == ["invalid_order"]
    assert await order_count(client) == 0


@pytest.mark.parametrize("query", ["status=lost", "limit=0", "limit=999", "limit=ten", "cursor=-1"])
async def test_bad_listing_queries_are_400(client: Client, query: str) -> None:
    response = await client.get(f"/api/orders?{query}")

    assert response.status == 400
    error_of(await response.json())


async def test_plain_get_on_the_execute_route_explains_itself(client: Client) -> None:
    response = await client.get("/api/orders/execute")

    assert response.status == 405
    assert response.headers["Allow"] == "POST"
    assert "must upgrade to a WebSocket" in error_of(await response.json())["message"]


async def test_the_engine_keeps_serving_after_bad_input(client: Client) -> None:
    for bad in BAD_ORDERS:
        assert (await client.post("/api/orders/execute", json=bad)).status == 422
    for raw in (b"{nope", b"\xff\xfe", b'{"amountIn": NaN}'):
        assert (await client.post("/api/orders/execute", data=raw)).status == 400

    events = await stream(client, await submit(client))

    assert statuses(events)[-1] == "confirmed"


async def test_reasons_name_the_problem(client: Client) -> None:
    response = await client.post(
        "/api/orders/execute", json={**MARKET, "type": "limit", "tokenIn": "DOGE"}
    )

    reasons = {r["field"]: r["message"] for r in error_of(await response.json())["details"]}
    assert "limit orders are not supported yet" in reasons["type"]
    assert reasons["tokenIn"].startswith("unknown token 'DOGE'")
