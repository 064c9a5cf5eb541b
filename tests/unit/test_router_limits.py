"""The router's limits: a quote that would move the pool too far is no quote.

A constant-product pool fills any order, at a price: past `max_price_impact_pct` the router
lists the venue as unavailable, with the reason, and with no venue left there is no route.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from orderengine.errors import NoRoute
from orderengine.router import DEFAULT_MAX_PRICE_IMPACT_PCT, Router
from orderengine.venues.meteora import Meteora
from orderengine.venues.raydium import Raydium
from orderengine.venues.values import Quote
from tests.ledger import MemoryLedger
from tests.venues import Wrapped


def venue(kind: type[Raydium] | type[Meteora]) -> Raydium | Meteora:
    return kind(MemoryLedger(), latency_scale=0, failure_rate=0, volatility_bps=0, seed=1)


class Crashing(Wrapped):
    """A venue whose quote fails with an error that is not the venue's answer: a bug."""

    async def quote(self, token_in: str, token_out: str, amount_in: Decimal) -> Quote:
        raise RuntimeError("connection to 10.0.0.7:5432 refused: password authentication failed")


def test_the_default_cap_is_five_percent() -> None:
    assert DEFAULT_MAX_PRICE_IMPACT_PCT == 5


async def test_a_quote_over_the_price_impact_cap_is_no_quote() -> None:
    router = Router([venue(Raydium), venue(Meteora)], deadline_s=1)

    with pytest.raises(NoRoute) as raised:
        await router.route("SOL", "USDC", Decimal("9000"))

    reasons = raised.value.details
    assert set(reasons) == {"raydium", "meteora"}
    for why in reasons.values():
        assert why.startswith("price impact of ")
        assert why.endswith("% is over the 5% limit")


async def test_the_deeper_pool_serves_an_order_the_shallower_cannot() -> None:
    # Raydium's pools are deeper: 1500 SOL moves them less than 5%, Meteora's more.
    router = Router([venue(Raydium), venue(Meteora)], deadline_s=1)

    decision = await router.route("SOL", "USDC", Decimal("1500"))

    assert decision.best.dex == "raydium"
    assert decision.best.price_impact_pct <= 5
    assert decision.unavailable["meteora"].startswith("price impact of ")
    assert "only venue" in decision.reason


async def test_the_cap_is_the_routers_to_set() -> None:
    router = Router([venue(Raydium)], deadline_s=1, max_price_impact_pct=Decimal(50))

    decision = await router.route("SOL", "USDC", Decimal("9000"))

    assert 5 < decision.best.price_impact_pct <= 50


async def test_a_crashing_venue_is_unavailable_without_its_internals() -> None:
    router = Router([Crashing(venue(Meteora)), venue(Raydium)], deadline_s=1)

    decision = await router.route("SOL", "USDC", Decimal("1"))

    assert decision.unavailable == {"meteora": "quote failed: internal error"}


async def test_a_tiny_amount_is_named_without_an_exponent() -> None:
    router = Router([venue(Raydium)], deadline_s=1)

    with pytest.raises(NoRoute) as raised:
        await router.route("BONK", "SOL", Decimal("0.00001"))

    assert raised.value.details["raydium"].startswith("0.00001 BONK buys less than")
