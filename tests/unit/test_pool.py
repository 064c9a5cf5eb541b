"""The simulated pools and venues' prices, and how pools recover, without a database."""

from __future__ import annotations

import asyncio
import contextlib
import math
import uuid
from decimal import Decimal

import pytest
from solders.keypair import Keypair
from structlog.testing import capture_logs

from orderengine.errors import DatabaseUnavailable, SlippageExceeded, SwapRejected
from orderengine.tokens import TOKENS
from orderengine.transaction import Transaction, build, min_amount_out
from orderengine.venues.market import STEP_S, Market
from orderengine.venues.meteora import Meteora
from orderengine.venues.pool import Pool, PoolState
from orderengine.venues.raydium import Raydium
from orderengine.venues.values import Dex, Execution, RecentBlockhash, Reserves
from tests.ledger import MemoryLedger

SIGNER = Keypair.from_seed(bytes(32))


def pool(market: Market | None = None) -> Pool:
    market = market or Market(0, volatility_bps=0)
    return Pool("raydium", TOKENS["SOL"], TOKENS["USDC"], Decimal(150), Decimal(1_500_000), market)


def still(pool: Pool) -> PoolState:
    """The pool with no drift and no swap: at its initial reserves."""
    return pool.at(now=0.0, half_life_s=0)


def test_constant_product_output_after_fee() -> None:
    result = still(pool()).swap("SOL", Decimal(100), Decimal("0.0025"))

    # 10,000 SOL against 1,500,000 USDC; 99.75 SOL in after the fee.
    expected = Decimal(1_500_000) * Decimal("99.75") / Decimal("10099.75")
    assert result.amount_out == expected.quantize(Decimal("0.000001"), rounding="ROUND_DOWN")
    assert result.fee == Decimal("0.25")
    assert result.price_impact_pct == (Decimal("99.75") / Decimal("10099.75") * 100).quantize(
        Decimal("0.0001")
    )


def test_bigger_swaps_move_the_price_more() -> None:
    small = still(pool()).swap("USDC", Decimal(100), Decimal("0.0025"))
    large = still(pool()).swap("USDC", Decimal(1_000_000), Decimal("0.0025"))

    assert large.price_impact_pct > small.price_impact_pct
    assert large.price < small.price


def test_drift_moves_the_price_but_keeps_it_near_its_anchor() -> None:
    moving = pool(Market(3, volatility_bps=20))
    prices = [moving.at(now=STEP_S * step, half_life_s=0).price for step in range(2_000)]

    assert len(set(prices)) > 1_000
    assert all(Decimal(140) < price < Decimal(160) for price in prices)


def test_the_drift_is_a_function_of_the_seed_and_the_moment_alone() -> None:
    """However each market was asked before, as engines ask theirs at their own moments."""
    stepping, jumping, other = (Market(seed, volatility_bps=20) for seed in (7, 7, 8))
    stepped = [stepping.deviation("pool", second / 4) for second in range(4 * 600)]
    moments = (0.0, 599.9, 12.3, 300.0, 1e9)

    assert [jumping.deviation("pool", moment) for moment in moments] == [
        stepping.deviation("pool", moment) for moment in moments
    ]
    assert stepped[4 * 300] == jumping.deviation("pool", 300.0)
    assert stepping.deviation("pool", 1.0) != stepping.deviation("pool", 2.0), "steps move"
    assert stepping.deviation("pool", 1.0) == stepping.deviation("pool", 1.9), "one a second"
    assert other.deviation("pool", 300.0) != jumping.deviation("pool", 300.0)
    assert jumping.deviation("another", 300.0) != jumping.deviation("pool", 300.0)


def test_the_moves_are_the_moment_s_however_each_market_was_asked_before() -> None:
    """A market keeps each pool's last moves for their step.

    Never past it, nor for another count or another pool.
    """
    asking = Market(7, volatility_bps=20)
    moments = (100.2, 100.9, 101.0, 99.5, 100.3, 5000.0)

    for moment in moments:
        for count in (32, 3):
            for key in ("pool", "another"):
                fresh = Market(7, volatility_bps=20)
                assert asking.moves(key, moment, count) == fresh.moves(key, moment, count)
    assert asking.moves("pool", 100.2, 32) != asking.moves("pool", 101.0, 32), "steps move"
    assert len(asking.moves("pool", 101.0, 3)) == 3


def test_venues_sit_two_to_five_percent_apart() -> None:
    for seed in range(20):
        unused_ledger = MemoryLedger(seed=seed)
        raydium = Raydium(
            unused_ledger, latency_scale=0, failure_rate=0, volatility_bps=0, seed=seed
        )
        meteora = Meteora(
            unused_ledger, latency_scale=0, failure_rate=0, volatility_bps=0, seed=seed
        )
        gap = abs(meteora.anchor_price(TOKENS["SOL"], TOKENS["USDC"]) / Decimal(150) - 1)
        assert raydium.anchor_price(TOKENS["SOL"], TOKENS["USDC"]) == Decimal(150)
        assert Decimal("0.02") <= gap <= Decimal("0.05")


# ---- recovery over time -------------------------------------------------------------------


class Clock:
    """A monotonic clock that moves only when the test says."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def drained(half_life_s: float, at: float = 0.0) -> Pool:
    """The pool right after a swap at `at` that took most of its SOL."""
    drained = pool()
    state = drained.at(at, half_life_s)
    result = state.swap("USDC", Decimal(3_000_000), Decimal("0.0025"))
    drained.adopt(state.settle("USDC", Decimal(3_000_000), result.amount_out, at))
    return drained


def gaps(moved: Pool, now: float, half_life_s: float) -> tuple[float, float]:
    """How far the pool is from its reference state at `now`: (log of price, log of depth)."""
    state = moved.at(now, half_life_s)
    base, quote = moved.reference(state.market)
    return (
        math.log(state.price / (quote / base)),
        math.log(state.base_reserve * state.quote_reserve / (base * quote)),
    )


def test_a_drained_pool_closes_half_its_gap_each_half_life() -> None:
    moved = drained(half_life_s=10)
    price_gap, depth_gap = gaps(moved, 0.0, half_life_s=10)

    halfway = gaps(moved, 10.0, half_life_s=10)
    nearly_back = gaps(moved, 100.0, half_life_s=10)

    assert price_gap > 1
    assert depth_gap > 0.001, "the fee stays in the pool"
    assert halfway == pytest.approx((price_gap / 2, depth_gap / 2), rel=1e-9)
    assert nearly_back == pytest.approx((price_gap / 1024, depth_gap / 1024), rel=1e-9)


def test_no_time_no_recovery_and_no_half_life_a_full_one() -> None:
    moved = drained(half_life_s=10, at=5.0)
    assert moved.settled is not None

    right_after = moved.at(5.0, half_life_s=10)
    assert (right_after.base_reserve, right_after.quote_reserve) == (
        moved.settled.base,
        moved.settled.quote,
    )

    at_once = moved.at(5.0, half_life_s=0)
    assert (at_once.base_reserve, at_once.quote_reserve) == (
        still(pool()).base_reserve,
        Decimal(1_500_000),
    )


def test_recovery_returns_to_the_market_price_as_it_drifts() -> None:
    market = Market(5, volatility_bps=20)
    moved = pool(market)
    state = moved.at(0.0, half_life_s=1)
    result = state.swap("USDC", Decimal(3_000_000), Decimal("0.0025"))
    moved.adopt(state.settle("USDC", Decimal(3_000_000), result.amount_out, 0.0))

    later = moved.at(50.0, half_life_s=1)

    assert later.market != moved.anchor
    assert float(later.price / later.market) == pytest.approx(1, abs=1e-9)


def whale_venue(
    clock: Clock,
    half_life_s: float,
    ledger: MemoryLedger | None = None,
    pool_sync_s: float = 0.0,
) -> Raydium:
    """Raydium with no drift, latency or failures, on `ledger` (a new one by default)."""
    return Raydium(
        ledger or MemoryLedger(),
        latency_scale=0,
        failure_rate=0,
        volatility_bps=0,
        seed=1,
        recovery_half_life_s=half_life_s,
        clock=clock,
        pool_sync_s=pool_sync_s,
    )


async def swap(venue: Raydium, amount: Decimal, slippage_bps: int = 50) -> Execution:
    quote = await venue.quote("USDC", "SOL", amount)
    blockhash = await venue.recent_blockhash()
    minimum = min_amount_out(quote, slippage_bps)
    return await venue.execute(build(uuid.uuid4(), quote, minimum, SIGNER, blockhash))


async def test_after_a_huge_swap_the_pool_recovers_over_time_not_at_once() -> None:
    clock = Clock()
    venue = whale_venue(clock, half_life_s=30)
    small = Decimal(1_000)
    before = await venue.quote("USDC", "SOL", small)

    await swap(venue, Decimal(2_000_000), slippage_bps=100)
    right_after = await venue.quote("USDC", "SOL", small)
    clock.now += 30
    one_half_life = await venue.quote("USDC", "SOL", small)
    clock.now += 600
    twenty_half_lives = await venue.quote("USDC", "SOL", small)

    assert right_after.amount_out < before.amount_out * Decimal("0.6")
    assert right_after.amount_out < one_half_life.amount_out < before.amount_out
    assert twenty_half_lives.amount_out == pytest.approx(before.amount_out, rel=Decimal("1e-5"))


async def test_a_later_order_at_the_old_price_fails_until_the_pool_recovers() -> None:
    clock = Clock()
    venue = whale_venue(clock, half_life_s=30)
    stale = await venue.quote("USDC", "SOL", Decimal(1_000))
    await swap(venue, Decimal(2_000_000), slippage_bps=100)

    def stale_order(blockhash: RecentBlockhash) -> Transaction:
        return build(uuid.uuid4(), stale, min_amount_out(stale, 50), SIGNER, blockhash)

    with pytest.raises(SlippageExceeded):
        await venue.execute(stale_order(await venue.recent_blockhash()))
    clock.now += 600
    execution = await venue.execute(stale_order(await venue.recent_blockhash()))

    assert execution.amount_out >= min_amount_out(stale, 50)


async def test_without_a_half_life_the_pool_is_back_at_once_and_deterministic() -> None:
    clock = Clock()
    venue = whale_venue(clock, half_life_s=0)
    before = await venue.quote("USDC", "SOL", Decimal(1_000))

    await swap(venue, Decimal(2_000_000), slippage_bps=100)

    assert await venue.quote("USDC", "SOL", Decimal(1_000)) == before


async def test_the_same_seed_and_clock_give_the_same_prices() -> None:
    async def run() -> list[Decimal]:
        clock = Clock()
        venue = Raydium(
            MemoryLedger(),
            latency_scale=0,
            failure_rate=0.3,
            volatility_bps=30,
            seed=11,
            recovery_half_life_s=20,
            clock=clock,
        )
        seen = []
        for step in range(1, 20):
            clock.now += step
            with contextlib.suppress(SwapRejected):
                seen.append((await swap(venue, Decimal(50_000) * step, 300)).amount_out)
            seen.append((await venue.quote("SOL", "USDC", Decimal(3))).amount_out)
        return seen

    assert await run() == await run()


class SilentLedger(MemoryLedger):
    """A chain whose pools cannot be read until `readable`: the database is down, or silent."""

    def __init__(self, failure: type[BaseException] | None) -> None:
        super().__init__()
        self.failure = failure
        self.readable = False

    async def pool_reserves(self, dex: Dex) -> dict[str, Reserves]:
        if self.readable:
            return await super().pool_reserves(dex)
        if self.failure is not None:
            raise self.failure("the database does not answer")
        await asyncio.Event().wait()
        raise AssertionError("never reached")


@pytest.mark.parametrize("failure", [DatabaseUnavailable, None], ids=["refused", "silent"])
async def test_a_quote_goes_on_with_the_pools_last_read_when_the_chain_cannot_be_read(
    failure: type[BaseException] | None,
) -> None:
    venue = whale_venue(Clock(), half_life_s=0, ledger=SilentLedger(failure))

    async with asyncio.timeout(5):
        quote = await venue.quote("USDC", "SOL", Decimal(1_000))

    assert quote.amount_out > 0


async def test_a_chain_that_cannot_be_read_is_logged_once_until_it_can_again() -> None:
    ledger = SilentLedger(DatabaseUnavailable)
    venue = whale_venue(Clock(), half_life_s=0, ledger=ledger)

    with capture_logs() as logs:
        for _ in range(3):
            await venue.quote("USDC", "SOL", Decimal(1_000))
        ledger.readable = True
        for _ in range(2):
            await venue.quote("USDC", "SOL", Decimal(1_000))

    assert [log["event"] for log in logs if log["event"].startswith("pool_sync")] == [
        "pool_sync_failed",
        "pool_sync_recovered",
    ]


class LateLedger(MemoryLedger):
    """A chain whose reading of the pools answers only when let, with what it held when asked."""

    def __init__(self) -> None:
        super().__init__()
        self.answer = asyncio.Event()

    async def pool_reserves(self, dex: Dex) -> dict[str, Reserves]:
        held = await super().pool_reserves(dex)
        await self.answer.wait()
        return held


async def test_a_reading_of_the_chain_older_than_the_engines_own_swap_is_not_taken() -> None:
    ledger = LateLedger()
    venue = whale_venue(Clock(), half_life_s=3600, ledger=ledger, pool_sync_s=3600)
    ledger.answer.set()
    await swap(venue, Decimal(100_000), slippage_bps=100)
    ledger.answer.clear()

    reading = asyncio.create_task(venue.sync_pools())
    await asyncio.sleep(0)
    await swap(venue, Decimal(300_000), slippage_bps=500)
    after_swap = await venue.quote("USDC", "SOL", Decimal(1_000))
    ledger.answer.set()
    await reading
    after_reading = await venue.quote("USDC", "SOL", Decimal(1_000))

    assert after_reading.amount_out == after_swap.amount_out
