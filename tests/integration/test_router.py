"""Routing: the largest output net of fees and impact wins; a bad venue never blocks."""

from __future__ import annotations

from decimal import Decimal

import pytest

from orderengine.errors import NoRoute
from orderengine.repository import Repository
from orderengine.router import Router
from orderengine.tokens import Token
from orderengine.venues.pool import Pool
from orderengine.venues.raydium import Raydium
from tests.venues import Down, Stalled

AMOUNT = Decimal("10")


class BetterPriceHigherFee(Raydium):
    """Pays 1% more before fees than plain Raydium, but charges a 3% fee."""

    name = "pricey"

    def anchor_price(self, base: Token, quote: Token) -> Decimal:
        return super().anchor_price(base, quote) * Decimal("1.01")

    def fee_rate(self, pool: Pool, move: float) -> Decimal:
        return Decimal("0.03")


def venue(kind: type[Raydium], ledger: Repository) -> Raydium:
    return kind(ledger, latency_scale=0, failure_rate=0, volatility_bps=0, seed=1)


async def test_fees_are_counted_before_choosing(repository: Repository) -> None:
    plain, pricey = venue(Raydium, repository), venue(BetterPriceHigherFee, repository)

    decision = await Router([pricey, plain], deadline_s=1).route("SOL", "USDC", AMOUNT)

    assert decision.best.dex == "raydium"
    assert [quote.dex for quote in decision.quotes] == ["raydium", "pricey"]
    assert decision.quotes[0].amount_out > decision.quotes[1].amount_out
    assert decision.quotes[1].fee == AMOUNT * Decimal("0.03")
    assert decision.reason.startswith("Raydium ")
    assert "better than Pricey" in decision.reason


async def test_a_venue_that_is_down_is_routed_around(repository: Repository) -> None:
    healthy = venue(Raydium, repository)
    broken = Down(venue(BetterPriceHigherFee, repository))

    decision = await Router([broken, healthy], deadline_s=1).route("SOL", "USDC", AMOUNT)

    assert decision.best.dex == "raydium"
    assert set(decision.unavailable) == {"pricey"}
    assert "pricey is down" in decision.unavailable["pricey"]
    assert "only venue" in decision.reason


async def test_a_slow_venue_is_cut_off_at_the_deadline(repository: Repository) -> None:
    healthy = venue(Raydium, repository)
    stalled = Stalled(venue(BetterPriceHigherFee, repository))

    decision = await Router([stalled, healthy], deadline_s=0.05).route("SOL", "USDC", AMOUNT)

    assert decision.best.dex == "raydium"
    assert decision.unavailable == {"pricey": "no quote within 0.05s"}


async def test_no_venue_quoting_is_no_route(repository: Repository) -> None:
    router = Router([Down(venue(Raydium, repository))], deadline_s=1)

    with pytest.raises(NoRoute) as raised:
        await router.route("SOL", "USDC", AMOUNT)

    assert raised.value.details == {"raydium": "quote failed: raydium is down"}


async def test_a_quote_that_buys_nothing_is_no_quote(repository: Repository) -> None:
    router = Router([venue(Raydium, repository)], deadline_s=1)

    with pytest.raises(NoRoute) as raised:
        await router.route("BONK", "SOL", Decimal("0.00001"))

    assert "buys less than the smallest unit of SOL" in raised.value.details["raydium"]
