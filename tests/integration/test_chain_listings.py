"""Listings on the simulated chain in PostgreSQL: one per venue and pair, kept for good.

A venue lists a pair once, whichever way round it is named, even when engines list it at the
same moment; every chain opened on the database, later or elsewhere, reads the same listings.
"""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal

import pytest

from orderengine.errors import AlreadyListed
from orderengine.venues.chain import Chain
from orderengine.venues.pool import pool_address
from orderengine.venues.values import Dex, Listing


def fresh_symbol() -> str:
    return "T" + uuid.uuid4().hex[:8].upper()


async def add(chain: Chain, dex: Dex, token: str, quote_token: str = "SOL") -> Listing:
    return await chain.add_listing(
        dex,
        token,
        quote_token,
        Decimal("0.000123456789"),
        Decimal("5000.5"),
        pool_address(dex, token, quote_token),
    )


async def test_a_listing_is_recorded_exactly_as_given(chain: Chain) -> None:
    symbol = fresh_symbol()

    listed = await add(chain, "meteora", symbol)

    assert (listed.dex, listed.token, listed.quote_token) == ("meteora", symbol, "SOL")
    assert listed.price == Decimal("0.000123456789")
    assert listed.liquidity == Decimal("5000.5")
    assert listed.pool == pool_address("meteora", symbol, "SOL")
    assert listed.listed_at.tzinfo is not None
    assert await chain.listings("meteora") == [listed]
    assert await chain.listings("raydium") == []


async def test_a_venue_lists_a_pair_once_whichever_way_round(chain: Chain) -> None:
    symbol = fresh_symbol()
    first = await add(chain, "meteora", symbol)

    with pytest.raises(AlreadyListed) as again:
        await add(chain, "meteora", symbol)
    with pytest.raises(AlreadyListed):
        await add(chain, "meteora", "SOL", symbol)
    elsewhere = await add(chain, "raydium", symbol)

    assert again.value.status == 409
    assert again.value.details == {"dex": "meteora", "tokens": sorted(("SOL", symbol))}
    assert await chain.listings("meteora") == [first]
    assert await chain.listings() == [first, elsewhere]
    assert await chain.listing_count() == 2, "the refused listings are not counted"


async def test_of_engines_listing_one_pair_at_once_exactly_one_succeeds(
    chain: Chain, database_url: str
) -> None:
    symbol = fresh_symbol()
    others = [await Chain.open(database_url, 2, 5.0) for _ in range(3)]
    try:
        outcomes = await asyncio.gather(
            *(add(each, "raydium", symbol) for each in [chain, *others]), return_exceptions=True
        )
    finally:
        for other in others:
            await other.close()

    listed = [outcome for outcome in outcomes if isinstance(outcome, Listing)]
    refused = [outcome for outcome in outcomes if isinstance(outcome, AlreadyListed)]
    assert (len(listed), len(refused)) == (1, 3)
    assert await chain.listings("raydium") == listed


async def test_listings_outlive_the_chain_that_recorded_them(database_url: str) -> None:
    symbol, priced_in_it = fresh_symbol(), fresh_symbol()
    first = await Chain.open(database_url, 2, 5.0)
    try:
        listed = [await add(first, "meteora", symbol), await add(first, "raydium", priced_in_it)]
    finally:
        await first.close()

    reopened = await Chain.open(database_url, 2, 5.0)
    try:
        assert await reopened.listings() == listed
        with pytest.raises(AlreadyListed):
            await add(reopened, "meteora", symbol)
    finally:
        await reopened.close()
