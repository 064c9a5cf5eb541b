"""Simulated Raydium: constant-product AMM pools with a flat 0.25% fee."""

from __future__ import annotations

from decimal import Decimal

from orderengine.venues.pool import Pool
from orderengine.venues.simulated import SimulatedVenue
from orderengine.venues.values import Dex

FEE_RATE = Decimal("0.0025")


class Raydium(SimulatedVenue):
    """Deep pools priced at the reference price, with Raydium's standard AMM fee."""

    name: Dex = "raydium"
    depth_usd = Decimal(5_000_000)

    def fee_rate(self, pool: Pool, now: float) -> Decimal:
        return FEE_RATE
