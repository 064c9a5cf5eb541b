"""Limit orders: they wait in `pending` for their price, fill when it is reached, expire.

Prices are set on the simulated pools by the test (no volatility), never waited for.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import uuid4

import pytest

from orderengine.errors import SlippageExceeded
from orderengine.keys import ENGINE
from orderengine.transaction import Transaction
from orderengine.venues.simulated import SimulatedVenue
from orderengine.venues.values import Execution, Quote
from orderengine.venues.venue import Venue, VenueFactory
from orderengine.watchers import reference_amount
from tests.harness import Client, StartApp
from tests.polling import eventually
from tests.streams import MARKET, submit, wait_terminal
from tests.venues import Gate, Wrapped, wrapping

WATCHING: dict[str, Any] = {"price_volatility_bps": 0}
"""Fixed prices. With no simulated latency the watchers poll at their fastest, every 50 ms."""


def limit(price: str, **fields: Any) -> dict[str, Any]:
    return {
        "type": "limit",
        "tokenIn": "SOL",
        "tokenOut": "USDC",
        "amountIn": "1.5",
        "slippageBps": 100,
        "limitPrice": price,
        **fields,
    }


def set_sol_price(client: Client, price: Decimal) -> None:
    """Put SOL at `price` USDC on every venue."""
    for venue in client.app[ENGINE].venues.values():
        inner = venue.inner if isinstance(venue, Wrapped) else venue
        assert isinstance(inner, SimulatedVenue)
        inner.set_price("SOL", "USDC", price)


async def best_price(client: Client, amount: Decimal) -> Decimal:
    response = await client.get(
        "/api/quotes", params={"tokenIn": "SOL", "tokenOut": "USDC", "amountIn": str(amount)}
    )
    body = await response.json()
    return max(Decimal(quote["price"]) for quote in body["quotes"])


async def order(client: Client, order_id: str) -> dict[str, Any]:
    response = await client.get(f"/api/orders/{order_id}")
    assert response.status == 200
    result: dict[str, Any] = await response.json()
    return result


@pytest.fixture
async def watching(start_app: StartApp) -> Client:
    return await start_app(**WATCHING)


async def test_a_limit_order_waits_until_the_price_reaches_it(watching: Client) -> None:
    set_sol_price(watching, Decimal(100))
    order_id = await submit(watching, limit("140"))

    first = (await order(watching, order_id))["events"][0]
    assert first["status"] == "pending"
    assert first["waiting"] == "price"
    assert first["limitPrice"] == "140"
    assert "bestPrice" in first  # null until the pair's price is first watched

    await eventually(lambda: _watched(watching, order_id))
    waiting = await order(watching, order_id)
    assert waiting["status"] == "pending"
    assert waiting["waiting"] == "price"
    assert Decimal(waiting["bestPrice"]) < 140
    assert all(e["status"] == "pending" for e in waiting["events"])

    set_sol_price(watching, Decimal(160))
    done = await wait_terminal(watching, order_id)

    assert done["status"] == "confirmed"
    assert Decimal(done["amountOut"]) >= Decimal("1.5") * 140
    building = next(e for e in done["events"] if e["status"] == "building")
    assert Decimal(building["transaction"]["minAmountOut"]) >= Decimal("1.5") * 140
    assert done["waiting"] is None


async def _watched(client: Client, order_id: str) -> bool:
    return (await order(client, order_id)).get("bestPrice") is not None


async def test_a_limit_order_the_price_already_reaches_fills_at_once(watching: Client) -> None:
    set_sol_price(watching, Decimal(150))

    done = await wait_terminal(watching, await submit(watching, limit("120")))

    assert done["status"] == "confirmed"
    assert Decimal(done["executedPrice"]) >= 120


async def test_price_news_is_sent_only_when_the_price_moves_enough(watching: Client) -> None:
    set_sol_price(watching, Decimal(100))
    order_id = await submit(watching, limit("500"))
    await eventually(lambda: _watched(watching, order_id))
    before = len((await order(watching, order_id))["events"])

    set_sol_price(watching, Decimal("100.1"))  # 10 bps: under the 50 bps that make news
    await asyncio.sleep(0.3)
    quiet = (await order(watching, order_id))["events"]
    set_sol_price(watching, Decimal(110))
    await eventually(lambda: _event_count_above(watching, order_id, len(quiet)), limit_s=10)

    assert len(quiet) == before
    news = (await order(watching, order_id))["events"][-1]
    assert news["waiting"] == "price"
    assert Decimal(news["bestPrice"]) > Decimal(105)


async def _event_count_above(client: Client, order_id: str, count: int) -> bool:
    return len((await order(client, order_id))["events"]) > count


async def test_an_order_too_big_for_its_limit_goes_back_to_waiting(watching: Client) -> None:
    set_sol_price(watching, Decimal(150))
    reference = await best_price(watching, reference_amount("SOL"))
    big = Decimal(600)  # a few percent of the pools: its own price is well under the reference
    own = await best_price(watching, big)
    assert own < reference * Decimal("0.99")
    limit_price = (reference * Decimal("0.995")).quantize(Decimal("0.01"))

    order_id = await submit(watching, limit(str(limit_price), amountIn=str(big)))
    await eventually(lambda: _has_reason(watching, order_id), limit_s=10)

    waited = await order(watching, order_id)
    assert waited["status"] == "pending"
    assert waited["waiting"] == "price"
    assert waited["attempt"] == 1
    assert not any(e["status"] == "routing" for e in waited["events"])
    again = next(e for e in waited["events"] if "reason" in e)
    assert "under the limit" in again["reason"]
    assert Decimal(again["bestPrice"]) < limit_price


async def _has_reason(client: Client, order_id: str) -> bool:
    return any("reason" in e for e in (await order(client, order_id))["events"])


async def test_a_limit_order_expires(watching: Client) -> None:
    set_sol_price(watching, Decimal(100))
    expires_at = datetime.now(UTC) + timedelta(seconds=1)

    order_id = await submit(watching, limit("500", expiresAt=expires_at.isoformat()))
    done = await wait_terminal(watching, order_id)

    assert done["status"] == "failed"
    assert "expired" in done["error"]
    assert done["events"][-1]["expired"] is True
    assert datetime.fromisoformat(done["updatedAt"]) >= expires_at


async def test_an_order_waiting_for_a_rate_token_ends_at_its_expiry(start_app: StartApp) -> None:
    """The rate keeps the order's worker waiting a minute; the order may wait one second."""
    client = await start_app(**WATCHING, rate_per_minute=1, rate_burst=1)
    set_sol_price(client, Decimal(100))
    first = await wait_terminal(client, await submit(client, MARKET))
    expires_at = datetime.now(UTC) + timedelta(seconds=1)

    order_id = await submit(client, limit("50", expiresAt=expires_at.isoformat()))
    done = await wait_terminal(client, order_id)

    assert first["status"] == "confirmed", "it took the one token"
    assert done["status"] == "failed"
    assert [event["status"] for event in done["events"]] == ["pending", "failed"]
    assert done["events"][-1]["expired"] is True
    ended = datetime.fromisoformat(done["updatedAt"])
    assert expires_at <= ended < expires_at + timedelta(seconds=5), "not a minute later"


async def test_a_waiting_order_expires_on_time_while_every_worker_is_busy(
    start_app: StartApp,
) -> None:
    """A busy engine counts its backlog at most every second, yet expiries are not a sweep late."""
    gate = Gate()
    client = await start_app(**WATCHING, venues=gate.venues, concurrency=1)
    set_sol_price(client, Decimal(100))
    await submit(client, MARKET)
    await gate.waiting.wait()
    expires_at = datetime.now(UTC) + timedelta(seconds=1)

    order_id = await submit(client, limit("500", expiresAt=expires_at.isoformat()))
    done = await wait_terminal(client, order_id)

    assert done["events"][-1]["expired"] is True
    ended = datetime.fromisoformat(done["updatedAt"])
    assert expires_at <= ended < expires_at + timedelta(seconds=5), "not a 10 s sweep later"
    gate.opened.set()


async def test_an_order_that_expired_while_the_engine_was_down_fails_at_start(
    start_app: StartApp,
) -> None:
    client = await start_app(**WATCHING)
    set_sol_price(client, Decimal(100))
    expires_at = datetime.now(UTC) + timedelta(seconds=1)
    order_id = await submit(client, limit("500", expiresAt=expires_at.isoformat()))
    await client.close()
    await asyncio.sleep(max(0.0, (expires_at - datetime.now(UTC)).total_seconds()) + 0.1)

    restarted = await start_app(**WATCHING)
    done = await wait_terminal(restarted, order_id)

    assert done["status"] == "failed"
    assert "expired" in done["error"]


async def test_the_default_expiry_is_the_order_ttl(start_app: StartApp) -> None:
    client = await start_app(**WATCHING, order_ttl_s=3600)
    before = datetime.now(UTC)

    response = await client.post("/api/orders/execute", json=limit("500"))
    body = await response.json()

    assert response.status == 201
    assert body["waiting"] == "price"
    expires_at = datetime.fromisoformat(body["expiresAt"])
    assert before + timedelta(seconds=3600) <= expires_at <= datetime.now(UTC) + timedelta(hours=1)


async def test_an_expiry_beyond_the_longest_wait_is_refused(start_app: StartApp) -> None:
    client = await start_app(**WATCHING, max_order_ttl_s=60)
    too_far = (datetime.now(UTC) + timedelta(seconds=120)).isoformat()

    response = await client.post("/api/orders/execute", json=limit("500", expiresAt=too_far))

    assert response.status == 422
    details = (await response.json())["error"]["details"]
    assert [d["field"] for d in details] == ["expiresAt"]
    assert "60 seconds" in details[0]["message"]


async def test_waiting_orders_are_not_a_backlog(start_app: StartApp) -> None:
    client = await start_app(**WATCHING, queue_limit=3)
    set_sol_price(client, Decimal(100))
    for _ in range(5):
        await submit(client, limit("500"))

    response = await client.post(
        "/api/orders/execute", json={**limit("1"), "type": "market", "limitPrice": None}
    )
    health = await (await client.get("/health")).json()

    assert response.status == 201
    assert health["backlog"] <= 2  # the market order, counted twice at most while claimed


class SlippageOnce(Wrapped):
    """The first swap sent anywhere is refused for slippage."""

    refused = 0

    async def execute(self, transaction: Transaction) -> Execution:
        if SlippageOnce.refused == 0:
            SlippageOnce.refused += 1
            raise SlippageExceeded("slippage tolerance exceeded: the pool moved")
        return await super().execute(transaction)


async def test_a_slippage_rejection_spends_an_attempt_and_waits_for_the_price(
    start_app: StartApp,
) -> None:
    SlippageOnce.refused = 0
    client = await start_app(wrapping(SlippageOnce), **WATCHING)
    set_sol_price(client, Decimal(150))

    done = await wait_terminal(client, await submit(client, limit("120")))

    assert done["status"] == "confirmed"
    assert done["attempt"] == 2
    waited = [e for e in done["events"] if e.get("waiting") == "price" and "reason" in e]
    assert len(waited) == 1
    assert "slippage" in waited[0]["reason"]
    assert waited[0]["attempt"] == 2


class Counting(Wrapped):
    """Counts the quotes asked of it, by pair, into a counter it shares with its kin."""

    def __init__(self, inner: Venue, quotes: Counter[tuple[str, str]]) -> None:
        super().__init__(inner)
        self.quotes = quotes

    async def quote(self, token_in: str, token_out: str, amount_in: Decimal) -> Quote:
        self.quotes[(token_in, token_out)] += 1
        return await super().quote(token_in, token_out, amount_in)


def counting(quotes: Counter[tuple[str, str]]) -> VenueFactory:
    return wrapping(lambda venue: Counting(venue, quotes))


async def test_a_thousand_waiting_orders_cost_the_quotes_of_one(start_app: StartApp) -> None:
    quotes: Counter[tuple[str, str]] = Counter()
    client = await start_app(counting(quotes), **WATCHING)
    set_sol_price(client, Decimal(100))
    await asyncio.gather(*(submit(client, limit(str(200 + n % 50))) for n in range(1000)))
    lone = await submit(client, {**limit("5"), "tokenIn": "USDC", "tokenOut": "SOL"})

    quotes.clear()
    await asyncio.sleep(1)
    many, one = quotes[("SOL", "USDC")], quotes[("USDC", "SOL")]

    assert one >= 2 * 3  # both venues, a few polls
    assert abs(many - one) <= 2
    assert (await order(client, lone))["status"] == "pending"


async def test_several_engines_watch_each_pair_once(start_app: StartApp) -> None:
    first_quotes: Counter[tuple[str, str]] = Counter()
    second_quotes: Counter[tuple[str, str]] = Counter()
    first = await start_app(counting(first_quotes), **WATCHING)
    second = await start_app(counting(second_quotes), **WATCHING)
    set_sol_price(first, Decimal(100))
    set_sol_price(second, Decimal(100))
    await submit(first, limit("500"))
    await submit(second, limit("400"))
    await asyncio.sleep(0.5)  # both engines have polled several times

    first_quotes.clear()
    second_quotes.clear()
    await asyncio.sleep(0.5)

    watchers = [n for n in (first_quotes, second_quotes) if n[("SOL", "USDC")] > 0]
    assert len(watchers) == 1


async def test_a_waiting_limit_order_can_be_cancelled(watching: Client) -> None:
    set_sol_price(watching, Decimal(100))
    order_id = await submit(watching, limit("500"))

    response = await watching.delete(f"/api/orders/{order_id}")
    body = await response.json()
    set_sol_price(watching, Decimal(600))
    await asyncio.sleep(0.3)  # several polls at a price that reaches the limit

    assert response.status == 200
    assert body["status"] == "failed"
    assert body["events"][-1]["cancelled"] is True
    after = await order(watching, order_id)
    assert after["status"] == "failed"
    assert len(after["events"]) == len(body["events"])


async def test_watching_takes_no_rate_token(start_app: StartApp) -> None:
    client = await start_app(**WATCHING, rate_per_minute=1, rate_burst=1)
    set_sol_price(client, Decimal(100))
    waiting_id = await submit(client, limit("500"))
    await eventually(lambda: _watched(client, waiting_id))
    await asyncio.sleep(0.3)  # several more polls

    market = {**limit("1"), "type": "market"}
    del market["limitPrice"]
    done = await wait_terminal(client, await submit(client, market))

    assert done["status"] == "confirmed"  # the one token was still there to take


async def test_a_limit_order_on_a_pool_too_shallow_for_the_watchers_amount_still_fills(
    client: Client,
) -> None:
    token = "L" + uuid4().hex[:8].upper()
    listed = await client.post(
        "/api/simulation/listings",
        json={
            "dex": "raydium",
            "token": token,
            "quoteToken": "SOL",
            "price": "0.0001",
            "liquidity": "2",
        },
    )
    assert listed.status == 201, await listed.text()
    body = {**MARKET, "tokenOut": token, "amountIn": "0.01", "slippageBps": 100}
    quote = await (
        await client.get(
            "/api/quotes", params={"tokenIn": "SOL", "tokenOut": token, "amountIn": "0.01"}
        )
    ).json()
    own_price = Decimal(quote["quotes"][0]["price"])
    limit = (own_price * Decimal("0.9")).quantize(Decimal(1))

    final = await wait_terminal(
        client, await submit(client, {**body, "type": "limit", "limitPrice": str(limit)})
    )

    assert final["status"] == "confirmed", final
    assert Decimal(final["executedPrice"]) >= limit
