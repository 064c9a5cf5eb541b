"""The simulated pools and venues' prices, without a database."""

from __future__ import annotations

import random
from decimal import Decimal

from orderengine.tokens import TOKENS
from orderengine.venues.meteora import Meteora
from orderengine.venues.pool import Pool
from orderengine.venues.raydium import Raydium
from tests.ledger import MemoryLedger


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
        unused_ledger = MemoryLedger()
        raydium = Raydium(
            unused_ledger, latency_scale=0, failure_rate=0, volatility_bps=0, seed=seed
        )
        meteora = Meteora(
            unused_ledger, latency_scale=0, failure_rate=0, volatility_bps=0, seed=seed
        )
        gap = abs(meteora.anchor_price(TOKENS["SOL"], TOKENS["USDC"]) / Decimal(150) - 1)
        assert raydium.anchor_price(TOKENS["SOL"], TOKENS["USDC"]) == Decimal(150)
        assert Decimal("0.02") <= gap <= Decimal("0.05")
