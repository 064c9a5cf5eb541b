"""Routing, without a database.

The largest output net of fees and impact wins, a bad venue never blocks, and the reason
says why in words.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from structlog.testing import capture_logs

from orderengine.errors import NoRoute
from orderengine.router import Router, reason
from orderengine.tokens import Token
from orderengine.venues.pool import Pool
from orderengine.venues.raydium import Raydium
from orderengine.venues.values import Dex, Quote
from tests.ledger import MemoryLedger
from tests.venues import Down, Stalled, Wrapped

AMOUNT = Decimal("10")


class BetterPriceHigherFee(Raydium):
    """Pays 1% more before fees than plain Raydium, but charges a 3% fee."""

    name = "meteora"

    def anchor_price(self, base: Token, quote: Token) -> Decimal:
        return super().anchor_price(base, quote) * Decimal("1.01")

    def fee_rate(self, pool: Pool, move: float) -> Decimal:
        return Decimal("0.03")


def venue(kind: type[Raydium]) -> Raydium:
    return kind(MemoryLedger(), latency_scale=0, failure_rate=0, volatility_bps=0, seed=1)


async def test_fees_are_counted_before_choosing() -> None:
    plain, pricey = venue(Raydium), venue(BetterPriceHigherFee)

    decision = await Router([pricey, plain], deadline_s=1).route("SOL", "USDC", AMOUNT)

    assert decision.best.dex == "raydium"
    assert [quote.dex for quote in decision.quotes] == ["raydium", "meteora"]
    assert decision.quotes[0].amount_out > decision.quotes[1].amount_out
    assert decision.quotes[1].fee == AMOUNT * Decimal("0.03")
    assert decision.reason.startswith("Raydium ")
    assert "better than Meteora" in decision.reason


async def test_a_venue_that_is_down_is_routed_around() -> None:
    healthy = venue(Raydium)
    broken = Down(venue(BetterPriceHigherFee))

    decision = await Router([broken, healthy], deadline_s=1).route("SOL", "USDC", AMOUNT)

    assert decision.best.dex == "raydium"
    assert set(decision.unavailable) == {"meteora"}
    assert "meteora is down" in decision.unavailable["meteora"]
    assert "only venue" in decision.reason


class WithoutThePair(Wrapped):
    """A venue that lists no pool for the pair asked."""

    async def quote(self, token_in: str, token_out: str, amount_in: Decimal) -> Quote:
        raise NoRoute(f"{self.name} has no {token_in}/{token_out} pool")


async def test_a_venue_without_the_pair_is_an_answer_not_a_warning() -> None:
    """A client asking for such a pair again and again must not fill the log."""
    router = Router([WithoutThePair(venue(BetterPriceHigherFee)), venue(Raydium)], deadline_s=1)

    with capture_logs() as logs:
        decision = await router.route("SOL", "USDC", AMOUNT)

    assert decision.unavailable == {"meteora": "quote failed: meteora has no SOL/USDC pool"}
    assert [entry["event"] for entry in logs if entry["log_level"] == "warning"] == []


async def test_a_slow_venue_is_cut_off_at_the_deadline() -> None:
    healthy = venue(Raydium)
    stalled = Stalled(venue(BetterPriceHigherFee))

    decision = await Router([stalled, healthy], deadline_s=0.05).route("SOL", "USDC", AMOUNT)

    assert decision.best.dex == "raydium"
    assert decision.unavailable == {"meteora": "no quote within 0.05s"}


async def test_no_venue_quoting_is_no_route() -> None:
    router = Router([Down(venue(Raydium))], deadline_s=1)

    with pytest.raises(NoRoute) as raised:
        await router.route("SOL", "USDC", AMOUNT)

    assert raised.value.details == {"raydium": "quote failed: raydium is down"}


async def test_a_quote_that_buys_nothing_is_no_quote() -> None:
    router = Router([venue(Raydium)], deadline_s=1)

    with pytest.raises(NoRoute) as raised:
        await router.route("BONK", "SOL", Decimal("0.00001"))

    assert "buys less than the smallest unit of SOL" in raised.value.details["raydium"]


def quote(dex: Dex, amount_out: str) -> Quote:
    return Quote(
        dex=dex,
        pool="pool",
        token_in="SOL",
        token_out="USDC",
        amount_in=Decimal(1),
        amount_out=Decimal(amount_out),
        price=Decimal(amount_out),
        price_impact_pct=Decimal(0),
        fee=Decimal(0),
        fee_bps=Decimal(25),
    )


def test_the_reason_gives_the_edge_over_the_runner_up_to_the_hundredth() -> None:
    text = reason([quote("meteora", "150.465"), quote("raydium", "150")], {})

    assert text == "Meteora 0.31% better than Raydium after fees and price impact"


def test_the_reason_names_a_sole_quote_and_why_the_others_are_missing() -> None:
    text = reason([quote("raydium", "150")], {"meteora": "no quote within 1.0s"})

    assert text == "Raydium is the only venue that quoted (meteora: no quote within 1.0s)"
