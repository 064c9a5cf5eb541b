"""Simulated Meteora: pools with a dynamic fee that rises with recent volatility."""

from __future__ import annotations

from decimal import Decimal

from orderengine.tokens import Token
from orderengine.venues.pool import Pool
from orderengine.venues.simulated import SimulatedVenue

BASE_FEE = Decimal("0.0015")
MAX_FEE = Decimal("0.01")
VOLATILITY_DECAY = 0.5
"""How much of the record of moves is left one step of the market later."""
VOLATILITY_STEPS = 32
"""The market's steps the record counts: the oldest weighs `0.5 ** 31`, about 5e-10."""
VOLATILITY_WEIGHTS = tuple(VOLATILITY_DECAY**age for age in range(VOLATILITY_STEPS))
"""What each move of the record weighs, the newest first."""
VOLATILITY_FEE_FACTOR = Decimal(2)
PRICE_GAP = (0.02, 0.05)
"""How far Meteora's prices sit from Raydium's, each pair in either direction."""


class Meteora(SimulatedVenue):
    """Shallower pools than Raydium, 2–5% away from its prices, with a volatility fee.

    Each pair's gap is drawn from the chain's seed, so that it is the same on every engine.
    """

    name = "meteora"
    depth_usd = Decimal(2_000_000)

    def anchor_price(self, base: Token, quote: Token) -> Decimal:
        draw = self.market.draw(self.name, base.symbol, quote.symbol)
        gap = draw.uniform(*PRICE_GAP) * draw.choice((1, -1))
        return super().anchor_price(base, quote) * (1 + Decimal(repr(gap)))

    def fee_rate(self, pool: Pool, now: float) -> Decimal:
        """Base fee plus a variable part from an exponentially decaying record of moves.

        The record is the market's last moves (`Market.moves`), each weighing half the one
        after it, so that it is a function of the moment, as the price is.
        """
        moves = self.market.moves(pool.address, now, VOLATILITY_STEPS)
        accumulated = sum(
            weight * abs(move) for weight, move in zip(VOLATILITY_WEIGHTS, moves, strict=True)
        )
        return min(MAX_FEE, BASE_FEE + VOLATILITY_FEE_FACTOR * Decimal(repr(accumulated)))
