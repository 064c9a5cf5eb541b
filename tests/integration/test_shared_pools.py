"""Simulated venues of several engines on one chain in PostgreSQL: one market, not one each.

Each engine builds its venues on a chain of its own opened on the database, as the factory
does; they drift alike from the chain's seed and move with each other's swaps.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any, TypeVar

import pytest
from solders.keypair import Keypair

from orderengine.transaction import build, min_amount_out
from orderengine.venues.chain import Chain
from orderengine.venues.meteora import Meteora
from orderengine.venues.pool import pool_address
from orderengine.venues.raydium import Raydium
from orderengine.venues.simulated import SimulatedVenue
from orderengine.venues.values import Execution

V = TypeVar("V", bound=SimulatedVenue)
SIGNER = Keypair.from_seed(bytes(range(32)))
NOW = 1_800_000_000.0
"""The moment every venue here reads on its clock, unless a test moves it."""
HALF_LIFE_S = 3_600.0
"""Long enough that no swap's impact fades within a test."""


class Clock:
    """The clock engines share, stopped where the test puts it."""

    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def chains(database_url: str) -> AsyncIterator[tuple[Chain, Chain]]:
    """Two engines' chains on one database, the first opened first."""
    first = await Chain.open(database_url, 2, 5.0, blockhash_ttl_s=60)
    second = await Chain.open(database_url, 2, 5.0, blockhash_ttl_s=60)
    yield first, second
    await first.close()
    await second.close()


def venue(kind: type[V], chain: Chain, clock: Clock, **settings: Any) -> V:
    values: dict[str, Any] = {
        "latency_scale": 0,
        "failure_rate": 0,
        "volatility_bps": 20,
        "seed": None,
        "recovery_half_life_s": HALF_LIFE_S,
        "clock": clock,
        **settings,
    }
    return kind(chain, **values)


async def swap(venue: SimulatedVenue, usdc: Decimal) -> Execution:
    """Buy SOL for `usdc` on `venue`, allowing the pool to move up to 10% meanwhile."""
    quote = await venue.quote("USDC", "SOL", usdc)
    blockhash = await venue.recent_blockhash()
    minimum = min_amount_out(quote, 1_000)
    return await venue.execute(build(uuid.uuid4(), quote, minimum, SIGNER, blockhash))


@pytest.mark.parametrize("kind", [Raydium, Meteora])
async def test_two_engines_quote_one_price_at_one_moment(
    chains: tuple[Chain, Chain], kind: type[SimulatedVenue]
) -> None:
    clock = Clock()
    first, second = (venue(kind, chain, clock) for chain in chains)

    quotes = []
    for moment in (NOW, NOW + 1, NOW + 60):
        clock.now = moment
        quotes.append([await each.quote("SOL", "USDC", Decimal(3)) for each in (first, second)])

    assert all(mine == theirs for mine, theirs in quotes)
    assert len({mine.amount_out for mine, _ in quotes}) == 3, "the price drifts meanwhile"


async def test_the_first_chain_chooses_the_seed_and_the_later_ones_keep_it(
    database_url: str,
) -> None:
    first = await Chain.open(database_url, 1, 5.0, seed=11)
    second = await Chain.open(database_url, 1, 5.0, seed=12)
    try:
        assert (first.seed, second.seed) == (11, 11)
    finally:
        await first.close()
        await second.close()


async def test_a_swap_through_one_engine_moves_the_pool_the_other_quotes(
    chains: tuple[Chain, Chain],
) -> None:
    clock = Clock()
    mine, theirs = venue(Raydium, chains[0], clock), venue(Raydium, chains[1], clock)
    before = await theirs.quote("USDC", "SOL", Decimal(1_000))

    await swap(mine, Decimal(500_000))
    await theirs.sync_pools()
    after = await theirs.quote("USDC", "SOL", Decimal(1_000))

    assert after.amount_out < before.amount_out * Decimal("0.95")
    assert after == await mine.quote("USDC", "SOL", Decimal(1_000))


async def test_a_quote_reads_the_chain_again_once_its_sync_interval_has_passed(
    chains: tuple[Chain, Chain],
) -> None:
    clock = Clock()
    mine = venue(Raydium, chains[0], clock)
    theirs = venue(Raydium, chains[1], clock, pool_sync_s=0.5)
    before = await theirs.quote("USDC", "SOL", Decimal(1_000))

    await swap(mine, Decimal(500_000))
    within = await theirs.quote("USDC", "SOL", Decimal(1_000))
    clock.now += 0.5
    past = await theirs.quote("USDC", "SOL", Decimal(1_000))

    assert within == before, "what it read stands for the interval"
    assert past == await mine.quote("USDC", "SOL", Decimal(1_000))
    assert past.amount_out < before.amount_out


async def test_swaps_of_two_engines_at_once_each_settle_against_the_other(
    chains: tuple[Chain, Chain],
) -> None:
    clock = Clock()
    engines = [venue(Raydium, chain, clock, volatility_bps=0) for chain in chains]
    quotes = [await each.quote("USDC", "SOL", Decimal(200_000)) for each in engines]

    executions = await asyncio.gather(*(swap(each, Decimal(200_000)) for each in engines))
    for each in engines:
        await each.sync_pools()
    after = [await each.quote("USDC", "SOL", Decimal(1_000)) for each in engines]

    assert quotes[0] == quotes[1]
    outs = sorted((execution.amount_out for execution in executions), reverse=True)
    assert outs[0] == quotes[0].amount_out, "the first decided meets the pool as quoted"
    assert outs[1] < outs[0] * Decimal("0.95"), "the second meets what the first left"
    assert after[0] == after[1]
    reserves = (await chains[0].pool_reserves("raydium"))[quotes[0].pool]
    assert quotes[0].pool == pool_address("raydium", "SOL", "USDC"), "SOL is its base"
    # 5,000,000 dollars of SOL at 150, and as many USDC, before the two swaps.
    assert reserves.quote == Decimal(5_000_000) + 2 * Decimal(200_000)
    assert reserves.base == Decimal(5_000_000) / 150 - outs[0] - outs[1]
