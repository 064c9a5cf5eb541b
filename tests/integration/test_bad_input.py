"""Bad input gets a clear error in one shape, changes nothing, and stops no one else."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from tests.conftest import Client
from tests.streams import MARKET, read_until_closed, statuses, stream, submit


def without(field: str) -> dict[str, Any]:
    return {key: value for key, value in MARKET.items() if key != field}


INVALID_ORDERS: list[tuple[str, Any, str | None]] = [
    ("missing tokenOut", without("tokenOut"), "tokenOut"),
    ("missing amountIn", without("amountIn"), "amountIn"),
    ("missing type", without("type"), "type"),
    ("amount of the wrong type", {**MARKET, "amountIn": [1]}, "amountIn"),
    ("amount as a boolean", {**MARKET, "amountIn": True}, "amountIn"),
    ("amount that is not a number", {**MARKET, "amountIn": "lots"}, "amountIn"),
    ("negative amount", {**MARKET, "amountIn": "-1"}, "amountIn"),
    ("zero amount", {**MARKET, "amountIn": "0"}, "amountIn"),
    ("infinite amount", {**MARKET, "amountIn": "Infinity"}, "amountIn"),
    ("NaN amount", {**MARKET, "amountIn": "NaN"}, "amountIn"),
    ("finer than the token allows", {**MARKET, "amountIn": "1.0000000001"}, "amountIn"),
    ("unknown token", {**MARKET, "tokenIn": "DOGE"}, "tokenIn"),
    ("same token in and out", {**MARKET, "tokenOut": "SOL"}, "tokenOut"),
    ("unknown order type", {**MARKET, "type": "stop"}, "type"),
    ("limit order, not supported yet", {**MARKET, "type": "limit"}, "type"),
    ("slippage of zero", {**MARKET, "slippageBps": 0}, "slippageBps"),
    ("slippage above 50%", {**MARKET, "slippageBps": 5001}, "slippageBps"),
    ("slippage as a string", {**MARKET, "slippageBps": "50"}, "slippageBps"),
    ("an unknown field", {**MARKET, "amount": "1"}, "amount"),
    ("not an object", [MARKET], None),
]


async def order_count(client: Client) -> int:
    listing = await (await client.get("/api/orders?limit=200")).json()
    return len(listing["orders"])


def error_of(body: Any) -> dict[str, Any]:
    assert set(body) == {"error"}
    error: dict[str, Any] = body["error"]
    assert {"code", "message", "details"} <= error.keys()
    assert isinstance(error["message"], str)
    return error


@pytest.mark.parametrize(
    ("name", "order", "field"), INVALID_ORDERS, ids=[c[0] for c in INVALID_ORDERS]
)
async def test_invalid_order_is_422_with_field_reasons_and_creates_nothing(
    client: Client, name: str, order: Any, field: str | None
) -> None:
    response = await client.post("/api/orders/execute", json=order)

    assert response.status == 422
    error = error_of(await response.json())
    assert error["code"] == "invalid_order"
    if field is not None:
        assert field in [reason["field"] for reason in error["details"]]
    assert await order_count(client) == 0


@pytest.mark.parametrize("raw", [b"{nope", b"", b'{"amountIn": NaN}', b"\xff\xfe"])
async def test_unreadable_json_is_400_and_creates_nothing(client: Client, raw: bytes) -> None:
    response = await client.post(
        "/api/orders/execute", data=raw, headers={"Content-Type": "application/json"}
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
    error_of(await response.json())


async def test_the_engine_keeps_serving_after_bad_input(client: Client) -> None:
    for order, _, _ in [(o, n, f) for n, o, f in INVALID_ORDERS]:
        await client.post("/api/orders/execute", json=order)
    await client.post("/api/orders/execute", data=b"{nope")

    events = await stream(client, await submit(client))

    assert statuses(events)[-1] == "confirmed"


async def test_reasons_name_the_problem(client: Client) -> None:
    response = await client.post(
        "/api/orders/execute", json={**MARKET, "type": "limit", "tokenIn": "DOGE"}
    )

    reasons = {r["field"]: r["message"] for r in error_of(await response.json())["details"]}
    assert "limit orders are not supported yet" in reasons["type"]
    assert reasons["tokenIn"].startswith("unknown token 'DOGE'")
