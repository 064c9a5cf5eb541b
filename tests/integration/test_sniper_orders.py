"""Sniper orders: they wait for a venue to list their pair, and buy the moment one does."""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from decimal import Decimal
from typing import Any, cast
from uuid import uuid4

from orderengine.domain import NewOrder, OrderRequest
from orderengine.errors import DatabaseUnavailable
from orderengine.keys import ENGINE
from orderengine.postgres import create_pool
from orderengine.repository import Repository
from orderengine.venues.chain import Chain
from orderengine.venues.pool import pool_address
from orderengine.venues.venue import Venue
from orderengine.watch_store import WatchStore
from orderengine.watchers import ListingWatcher
from tests.harness import Client, StartApp
from tests.polling import eventually, told_while_running
from tests.streams import submit, wait_terminal


def new_symbol() -> str:
    """A symbol no venue lists: tokens are known process-wide, so each test lists its own."""
    return "S" + uuid4().hex[:8].upper()


def sniper(token: str, **fields: Any) -> dict[str, Any]:
    return {
        "type": "sniper",
        "tokenIn": "SOL",
        "tokenOut": token,
        "amountIn": "0.5",
        "slippageBps": 500,
        **fields,
    }


async def list_token(
    client: Client, token: str, dex: str = "meteora", price: str = "0.0001"
) -> None:
    response = await client.post(
        "/api/simulation/listings",
        json={"dex": dex, "token": token, "quoteToken": "SOL", "price": price, "liquidity": "5000"},
    )
    assert response.status == 201, await response.text()


async def order(client: Client, order_id: str) -> dict[str, Any]:
    response = await client.get(f"/api/orders/{order_id}")
    assert response.status == 200
    result: dict[str, Any] = await response.json()
    return result


async def test_a_sniper_waits_for_its_listing_and_buys_only_where_listed(
    client: Client,
) -> None:
    token = new_symbol()
    order_id = await submit(client, sniper(token.lower()))

    waiting = await order(client, order_id)
    assert waiting["status"] == "pending"
    assert waiting["waiting"] == "listing"
    assert waiting["tokenOut"] == token
    assert waiting["events"][0]["waiting"] == "listing"
    assert waiting["events"][0]["token"] == token

    await list_token(client, token, dex="meteora")
    done = await wait_terminal(client, order_id)

    assert done["status"] == "confirmed"
    assert done["dex"] == "meteora"
    routing = next(e for e in done["events"] if e["status"] == "routing")
    assert [quote["dex"] for quote in routing["quotes"]] == ["meteora"]
    assert "raydium" in routing["unavailable"]
    assert Decimal(done["amountOut"]) > 4000


async def test_a_sniper_for_a_listed_pair_buys_at_once(client: Client) -> None:
    token = new_symbol()
    await list_token(client, token, dex="raydium")

    response = await client.post("/api/orders/execute", json=sniper(token))
    body = await response.json()
    done = await wait_terminal(client, body["orderId"])

    assert body["waiting"] is None
    assert done["status"] == "confirmed"
    assert done["dex"] == "raydium"


async def test_a_market_order_for_an_unlisted_token_is_refused(client: Client) -> None:
    token = new_symbol()

    response = await client.post("/api/orders/execute", json={**sniper(token), "type": "market"})

    assert response.status == 422
    details = (await response.json())["error"]["details"]
    assert details[0]["field"] == "tokenOut"
    assert token in details[0]["message"]


async def test_a_listing_on_another_engine_wakes_the_sniper(start_app: StartApp) -> None:
    first = await start_app()
    second = await start_app()
    token = new_symbol()
    order_id = await submit(first, sniper(token))

    await list_token(second, token)
    done = await wait_terminal(first, order_id)

    assert done["status"] == "confirmed"


async def test_a_sniper_is_woken_by_a_check_even_without_the_announcement(
    client: Client,
) -> None:
    token = new_symbol()
    order_id = await submit(client, sniper(token))
    venue = client.app[ENGINE].venues["raydium"]

    await venue.list_pool(token, "SOL", Decimal("0.0001"), Decimal(5000))  # no handler, no news
    client.app[ENGINE].listing_added()
    done = await wait_terminal(client, order_id)

    assert done["status"] == "confirmed"
    assert done["dex"] == "raydium"


async def test_a_sniper_with_a_limit_waits_for_its_price_after_the_listing(
    client: Client,
) -> None:
    token = new_symbol()
    order_id = await submit(client, sniper(token, limitPrice="20000"))

    await list_token(client, token, price="0.0001")  # 10,000 per SOL, under the limit
    await eventually(lambda: _waits_for(client, order_id, "price"), limit_s=10)

    waiting = await order(client, order_id)
    assert waiting["status"] == "pending"
    assert waiting["attempt"] == 1
    assert any("under the limit" in e.get("reason", "") for e in waiting["events"])


async def _waits_for(client: Client, order_id: str, what: str) -> bool:
    waiting: str | None = (await order(client, order_id))["waiting"]
    return waiting == what


async def test_a_waiting_sniper_can_be_cancelled(client: Client) -> None:
    order_id = await submit(client, sniper(new_symbol()))

    response = await client.delete(f"/api/orders/{order_id}")
    body = await response.json()

    assert response.status == 200
    assert body["status"] == "failed"
    assert body["waiting"] is None
    assert body["events"][-1]["cancelled"] is True


async def test_a_sniper_is_due_when_its_listing_is_answered(client: Client) -> None:
    token = new_symbol()
    order_id = await submit(client, sniper(token))

    await list_token(client, token)
    at_once = await order(client, order_id)

    assert at_once["waiting"] is None
    assert (await wait_terminal(client, order_id))["status"] == "confirmed"


async def test_a_listing_made_while_no_engine_ran_fires_the_sniper_at_start(
    start_app: StartApp, chain: Chain
) -> None:
    first = await start_app()
    token = new_symbol()
    order_id = await submit(first, sniper(token))
    await first.close()

    await chain.add_listing(
        "raydium",
        token,
        "SOL",
        Decimal("0.0001"),
        Decimal(5000),
        pool_address("raydium", token, "SOL"),
    )
    restarted = await start_app()
    done = await wait_terminal(restarted, order_id)

    assert done["status"] == "confirmed"
    assert done["dex"] == "raydium"


class ListingsLost(WatchStore):
    """The real store, whose first three reads of the awaited listings meet an outage."""

    outages_left = 3
    checks = 0

    async def awaited_listings(self) -> set[frozenset[str]]:
        self.checks += 1
        if self.outages_left > 0:
            self.outages_left -= 1
            raise DatabaseUnavailable("database unavailable")
        return await super().awaited_listings()


class CountedWakes(WatchStore):
    """The real store, counting the wakes of listed snipers under way at once."""

    under_way = 0
    most = 0

    async def wake_listed(self, pairs: Collection[frozenset[str]]) -> int:
        self.under_way += 1
        self.most = max(self.most, self.under_way)
        try:
            await asyncio.sleep(0.05)
            return await super().wake_listed(pairs)
        finally:
            self.under_way -= 1


class Listed:
    """A venue that lists the pairs it is given, and nothing else."""

    def __init__(self, *pairs: frozenset[str]) -> None:
        self.listed = frozenset(pairs)

    async def pairs(self) -> frozenset[frozenset[str]]:
        return self.listed


async def test_checks_for_listings_run_one_at_a_time(
    repository: Repository, database_url: str
) -> None:
    """Two at once would each lock the woken snipers' rows, and a claim skips locked rows."""
    token = new_symbol()
    request = OrderRequest.model_validate(sniper(token))
    await repository.create_orders([NewOrder(request=request, awaits="listing")])
    pool = await create_pool(database_url, 4, 5.0)
    watches = CountedWakes(pool, 5.0, uuid4())
    venue = cast(Venue, Listed(frozenset((token, "SOL"))))
    watcher = ListingWatcher(watches, [venue], every_s=60, on_woken=lambda: None)

    try:
        await asyncio.gather(*(watcher.check() for _ in range(3)))
    finally:
        await pool.close()

    assert watches.most == 1
    assert (await repository.watches.awaited_listings()) == set()


async def test_an_outage_of_the_listing_check_is_told_once_and_its_end_once(
    database_url: str,
) -> None:
    """Not once per check: each sniper accepted and each listing heard of pokes one."""
    pool = await create_pool(database_url, 2, 5.0)
    watches = ListingsLost(pool, 5.0, uuid4())
    watcher = ListingWatcher(watches, [], every_s=0, on_woken=lambda: None)

    async def checked_after_the_outage() -> bool:
        return watches.checks >= 6

    try:
        told = await told_while_running(watcher.run, checked_after_the_outage, "listing_check")
    finally:
        await pool.close()

    assert told == ["listing_check_failed", "listing_check_recovered"]
