"""A simulated constant-product pool whose price drifts between calls, as a real one does."""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal, localcontext

import base58

from orderengine.tokens import TOKENS, Token

MEAN_REVERSION = 0.05
"""Share of the distance to its anchor price a pool closes per move (arbitrageurs at work)."""


@dataclass(frozen=True)
class SwapResult:
    """The outcome of a swap against the pool at its current state."""

    amount_out: Decimal
    fee: Decimal
    price_impact_pct: Decimal
    price: Decimal


class Pool:
    """Reserves of two tokens with `x * y = k`; the price is `quote_reserve / base_reserve`."""

    def __init__(
        self, dex: str, base: Token, quote: Token, price: Decimal, depth_usd: Decimal
    ) -> None:
        self.base, self.quote = base, quote
        self.address = str(
            base58.b58encode(
                hashlib.sha256(f"{dex}:{base.symbol}:{quote.symbol}".encode()).digest()
            ).decode()
        )
        self.anchor = price
        self.base_reserve = depth_usd / base.usd_price
        self.quote_reserve = self.base_reserve * price

    @property
    def price(self) -> Decimal:
        return self.quote_reserve / self.base_reserve

    def drift(self, rng: random.Random, volatility_bps: float) -> float:
        """Move the price one random, mean-reverting step at constant k; the relative move."""
        deviation = math.log(self.price / self.anchor)
        step = (1 - MEAN_REVERSION) * deviation + rng.gauss(0, volatility_bps / 10_000)
        new_price = self.anchor * Decimal(repr(math.exp(step)))
        move = float(new_price / self.price) - 1
        with localcontext() as context:
            context.prec = 40
            k = self.base_reserve * self.quote_reserve
            self.base_reserve = (k / new_price).sqrt()
            self.quote_reserve = (k * new_price).sqrt()
        return move

    def reserves(self, token_in: str) -> tuple[Decimal, Decimal]:
        """(reserve of the token going in, reserve of the token coming out)."""
        if token_in == self.base.symbol:
            return self.base_reserve, self.quote_reserve
        return self.quote_reserve, self.base_reserve

    def swap(self, token_in: str, amount_in: Decimal, fee_rate: Decimal) -> SwapResult:
        """What `amount_in` buys now: the fee is taken from the input, then `x * y = k`."""
        reserve_in, reserve_out = self.reserves(token_in)
        token_out = self.quote if token_in == self.base.symbol else self.base
        with localcontext() as context:
            context.prec = 40
            fee = amount_in * fee_rate
            net_in = amount_in - fee
            gross_out = reserve_out * net_in / (reserve_in + net_in)
            spot_out = net_in * reserve_out / reserve_in
            impact = (1 - gross_out / spot_out) * 100
        amount_out = gross_out.quantize(token_out.unit, rounding=ROUND_DOWN)
        return SwapResult(
            amount_out=amount_out,
            fee=fee.quantize(TOKENS[token_in].unit, rounding=ROUND_DOWN),
            price_impact_pct=impact.quantize(Decimal("0.0001")),
            price=(amount_out / amount_in).quantize(Decimal("1e-12")),
        )

    def settle(self, token_in: str, amount_in: Decimal, amount_out: Decimal) -> None:
        """Apply an executed swap to the reserves: its price impact stays in the pool."""
        if token_in == self.base.symbol:
            self.base_reserve += amount_in
            self.quote_reserve -= amount_out
        else:
            self.quote_reserve += amount_in
            self.base_reserve -= amount_out
