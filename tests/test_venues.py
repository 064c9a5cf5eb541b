"""The simulated venues: pool arithmetic, slippage, and the ledger that outlives the engine."""

from __future__ import annotations

import random
import uuid
from decimal import Decimal
from typing import cast

import pytest

from orderengine.domain import TransactionState
from orderengine.errors import SlippageExceeded
from orderengine.repository import Repository
from orderengine.tokens import TOKENS
from orderengine.transaction import build, min_amount_out
from orderengine.venues.meteora import Meteora
from orderengine.venues.pool import Pool
from orderengine.venues.raydium import Raydium


def pool() -> Pool:
    return Pool("raydium", TOKENS["SOL"], TOKENS["USDC"], Decimal(150), Decimal(1_500_000))


def test_constant_product_output_after_fee() -> None:
    result = pool().swap("SOL", Decimal(100), Decimal("0.0025"))

    # 10,000 SOL against 1,500,000 USDC; 99.75 SOL in after the fee.
    expected = Decimal(1_500_000) * Decimal("99.75") / Decimal("10099.75")
    assert result.amount_out == expected.quantize(Decimal("0.000001"), rounding="ROUND_DOWN")
    assert result.fee == Decimal("0.25")
    assert result.price_impact_pct == (Decimal("99.75") / Decimal("10099.75") * 100).quantize(
        Decimal("0.0001")
    )


def test_bigger_swaps_move_the_price_more() -> None:
    small = pool().swap("USDC", Decimal(100), Decimal("0.0025"))
    large = pool().swap("USDC", Decimal(1_000_000), Decimal("0.0025"))

    assert large.price_impact_pct > small.price_impact_pct
    assert large.price < small.price


def test_drift_moves_the_price_but_keeps_it_near_its_anchor() -> None:
    moving, rng = pool(), random.Random(3)
    prices = []
    for _ in range(2_000):
        moving.drift(rng, volatility_bps=20)
        prices.append(moving.price)

    assert len(set(prices)) > 1_000
    assert all(Decimal(140) < price < Decimal(160) for price in prices)


def test_venues_sit_two_to_five_percent_apart() -> None:
    for seed in range(20):
        unused_ledger = cast(Repository, None)
        raydium = Raydium(
            unused_ledger, latency_scale=0, failure_rate=0, volatility_bps=0, seed=seed
        )
        meteora = Meteora(
            unused_ledger, latency_scale=0, failure_rate=0, volatility_bps=0, seed=seed
        )
        gap = abs(meteora.anchor_price(TOKENS["SOL"], TOKENS["USDC"]) / Decimal(150) - 1)
        assert raydium.anchor_price(TOKENS["SOL"], TOKENS["USDC"]) == Decimal(150)
        assert Decimal("0.02") <= gap <= Decimal("0.05")


async def test_swap_past_the_slippage_bound_is_rejected_and_recorded(
    repository: Repository,
) -> None:
    venue = Raydium(repository, latency_scale=0, failure_rate=0, volatility_bps=0, seed=1)
    quote = await venue.quote("SOL", "USDC", Decimal(1))
    greedy = quote.model_copy(update={"amount_out": quote.amount_out * Decimal("1.1")})
    transaction = build(uuid.uuid4(), 1, greedy, slippage_bps=10)

    with pytest.raises(SlippageExceeded):
        await venue.execute(transaction)

    status = await venue.transaction_status(transaction.signature)
    assert status.state is TransactionState.REJECTED
    assert status.error is not None
    assert "slippage" in status.error


async def test_a_landed_swap_is_in_the_ledger_and_a_never_sent_one_is_dropped(
    repository: Repository,
) -> None:
    venue = Raydium(repository, latency_scale=0, failure_rate=0, volatility_bps=5, seed=1)
    quote = await venue.quote("SOL", "USDC", Decimal(2))
    transaction = build(uuid.uuid4(), 1, quote, slippage_bps=100)

    execution = await venue.execute(transaction)
    landed = await venue.transaction_status(transaction.signature)
    never_sent = await venue.transaction_status(build(uuid.uuid4(), 1, quote, 100).signature)

    assert execution.amount_out >= min_amount_out(quote, 100)
    assert landed.state is TransactionState.LANDED
    assert landed.execution == execution
    assert never_sent.state is TransactionState.DROPPED
