"""Simulated Meteora: pools with a dynamic fee that rises with recent volatility."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from orderengine.tokens import Token
from orderengine.venues.pool import Pool
from orderengine.venues.simulated import SimulatedVenue

BASE_FEE = Decimal("0.0015")
MAX_FEE = Decimal("0.01")
VOLATILITY_DECAY = 0.5
VOLATILITY_FEE_FACTOR = Decimal(2)
PRICE_GAP = (0.02, 0.05)
"""How far Meteora's prices sit from Raydium's, each pair in either direction."""


class Meteora(SimulatedVenue):
    """Shallower pools than Raydium, 2–5% away from its prices, with a volatility fee."""

    name = "meteora"
    depth_usd = Decimal(2_000_000)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._volatility: dict[str, float] = {}
        super().__init__(*args, **kwargs)

    def anchor_price(self, base: Token, quote: Token) -> Decimal:
        gap = self._rng.uniform(*PRICE_GAP) * self._rng.choice((1, -1))
        return super().anchor_price(base, quote) * (1 + Decimal(repr(gap)))

    def fee_rate(self, pool: Pool, move: float) -> Decimal:
        """Base fee plus a variable part from an exponentially decaying record of moves."""
        accumulated = self._volatility.get(pool.address, 0.0) * VOLATILITY_DECAY + abs(move)
        self._volatility[pool.address] = accumulated
        return min(MAX_FEE, BASE_FEE + VOLATILITY_FEE_FACTOR * Decimal(repr(accumulated)))
