"""GET /api/quotes: every venue's quote and the router's choice, creating nothing.

Its parameters are refused for the reasons an order's fields are, in the same words.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from orderengine.venues.venue import Venue
from tests.harness import Client, StartApp
from tests.streams import MARKET, wait_terminal
from tests.venues import Down, wrapping

QUOTE = {"tokenIn": "SOL", "tokenOut": "USDC", "amountIn": "1.5"}
ANSWER_KEYS = {"tokenIn", "tokenOut", "amountIn", "dex", "reason", "quotes", "unavailable"}


async def quote(client: Client, params: Any) -> tuple[int, dict[str, Any]]:
    response = await client.get("/api/quotes", params=params)
    body: dict[str, Any] = await response.json()
    return response.status, body


async def orders(client: Client) -> list[dict[str, Any]]:
    listing: list[dict[str, Any]] = (await (await client.get("/api/orders")).json())["orders"]
    return listing


async def test_every_venue_quotes_and_the_best_is_chosen_with_its_reason(client: Client) -> None:
    status, body = await quote(client, QUOTE)

    assert status == 200
    assert set(body) == ANSWER_KEYS
    assert (body["tokenIn"], body["tokenOut"], body["amountIn"]) == ("SOL", "USDC", "1.5")
    assert {q["dex"] for q in body["quotes"]} == {"raydium", "meteora"}
    best = max(body["quotes"], key=lambda q: Decimal(q["amountOut"]))
    assert body["quotes"][0] == best
    assert body["dex"] == best["dex"]
    assert f"{best['dex'].capitalize()} " in body["reason"]
    assert "better than" in body["reason"]
    assert body["unavailable"] == {}
    for offered in body["quotes"]:
        assert {"pool", "amountIn", "amountOut", "price", "priceImpactPct", "fee", "feeBps"} <= (
            offered.keys()
        )
        assert all(
            isinstance(offered[key], str) for key in ("amountIn", "amountOut", "price", "fee")
        )
        assert offered["amountIn"] == "1.5"
    assert await orders(client) == []


async def test_symbols_and_amounts_are_read_as_an_order_reads_them(client: Client) -> None:
    status, body = await quote(client, {"tokenIn": "usdc", "tokenOut": "Sol", "amountIn": "15E1"})

    assert status == 200
    assert (body["tokenIn"], body["tokenOut"], body["amountIn"]) == ("USDC", "SOL", "150")


async def test_quotes_take_no_rate_token(start_app: StartApp) -> None:
    """With one token a minute, an order after many quotes still executes at once."""
    client = await start_app(rate_per_minute=1, rate_burst=1)
    for _ in range(5):
        assert (await quote(client, QUOTE))[0] == 200

    response = await client.post("/api/orders/execute", json=MARKET)
    order = await wait_terminal(client, (await response.json())["orderId"])

    assert order["status"] == "confirmed"


def raydium_down(venue: Venue) -> Venue:
    return Down(venue) if venue.name == "raydium" else venue


async def test_a_venue_that_does_not_quote_is_listed_as_unavailable(start_app: StartApp) -> None:
    client = await start_app(venues=wrapping(raydium_down))

    status, body = await quote(client, QUOTE)

    assert status == 200
    assert body["dex"] == "meteora"
    assert [q["dex"] for q in body["quotes"]] == ["meteora"]
    assert body["unavailable"] == {"raydium": "quote failed: raydium is down"}
    assert body["reason"].startswith("Meteora is the only venue that quoted")


async def test_no_venue_quoting_is_an_answer_with_no_choice(start_app: StartApp) -> None:
    client = await start_app(venues=wrapping(Down))

    status, body = await quote(client, QUOTE)

    assert status == 200
    assert set(body) == ANSWER_KEYS
    assert body["dex"] is None
    assert body["quotes"] == []
    assert body["reason"] == (
        "no venue could quote this swap (meteora: "
        f"{body['unavailable']['meteora']}; raydium: {body['unavailable']['raydium']})"
    )
    assert set(body["unavailable"]) == {"raydium", "meteora"}
    assert await orders(client) == []


def without_amount() -> dict[str, str]:
    return {key: value for key, value in QUOTE.items() if key != "amountIn"}


BAD_PARAMETERS = {
    "unknown token": ({**QUOTE, "tokenIn": "DOGE"}, ["tokenIn"]),
    "same token": ({**QUOTE, "tokenOut": "sol"}, ["tokenOut"]),
    "too many decimals": ({**QUOTE, "amountIn": "0.0000000001"}, ["amountIn"]),
    "missing amountIn": (without_amount(), ["amountIn"]),
    "amount not in plain digits": ({**QUOTE, "amountIn": "1_000"}, ["amountIn"]),
    "negative amount": ({**QUOTE, "amountIn": "-1"}, ["amountIn"]),
    "more than one order may sell": ({**QUOTE, "amountIn": "10001"}, ["amountIn"]),
    "several at once": (
        {"tokenIn": "DOGE", "tokenOut": "SOL", "amountIn": "0"},
        ["tokenIn", "amountIn"],
    ),
}


async def test_bad_parameters_are_422_with_the_reasons_an_order_would_get(
    client: Client, subtests: pytest.Subtests
) -> None:
    for name, (params, fields) in BAD_PARAMETERS.items():
        with subtests.test(name):
            status, body = await quote(client, params)

            assert status == 422
            assert set(body) == {"error"}
            error = body["error"]
            assert error["code"] == "invalid_quote"
            assert [reason["field"] for reason in error["details"]] == fields
            as_order = await client.post("/api/orders/execute", json={**params, "type": "market"})
            assert as_order.status == 422
            assert error["details"] == (await as_order.json())["error"]["details"]
            assert await orders(client) == []


async def test_a_parameter_given_twice_is_400(client: Client) -> None:
    status, body = await quote(client, [*QUOTE.items(), ("tokenIn", "USDT")])

    assert status == 400
    assert body["error"]["code"] == "bad_request"
    assert "tokenIn" in body["error"]["message"]


async def test_only_get_is_served(client: Client) -> None:
    response = await client.post("/api/quotes", params=QUOTE)

    assert response.status == 405
