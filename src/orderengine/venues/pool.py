"""A simulated constant-product pool: its price drifts, and what swaps do to it fades.

Two forces move a pool besides the swaps it executes. The market price drifts, a
mean-reverting random walk around the pool's anchor price, one step per call, and carries the
pool with it. And whatever swaps did to the pool fades with time, as arbitrageurs and liquidity
providers on a real chain would undo it: the reserves relax toward the pool's reference state,
its initial depth at the market price, closing half the gap every half-life. A pool drained by
one huge order is back in service a few half-lives later.
"""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal, localcontext

import base58

from orderengine.tokens import TOKENS, Token
from orderengine.venues.values import Listing, price_of

MEAN_REVERSION = 0.05
"""Share of the distance to its anchor the market price closes per step."""
PRECISION = 40


@dataclass(frozen=True)
class SwapResult:
    """The outcome of a swap against the pool at its current state."""

    amount_out: Decimal
    fee: Decimal
    price_impact_pct: Decimal
    price: Decimal


def _power(ratio: Decimal, exponent: float) -> Decimal:
    """`ratio ** exponent` for the pool's recovery, computed in binary floating point.

    A Decimal raised to a fractional power at 40 digits took 38 µs, twice per quote and per
    swap; this takes a few. It moves reserves, the simulation's own state, by a factor exact
    to about 16 digits, as the drift's step is: amounts are still computed from the reserves
    in Decimal, and rounded to the token's unit.
    """
    return Decimal(repr(float(ratio) ** exponent))


def pool_address(dex: str, base: str, quote: str) -> str:
    """The address of `dex`'s pool of `base` priced in `quote` (32 bytes, in base58)."""
    return base58.b58encode(hashlib.sha256(f"{dex}:{base}:{quote}".encode()).digest()).decode()


class Pool:
    """Reserves of two tokens with `x * y = k`; the price is `quote_reserve / base_reserve`.

    A pool of two fixed tokens holds `depth_usd` worth of its base token at the token's
    reference price; a listed one (`Pool.listed`) what its listing says.
    """

    def __init__(
        self, dex: str, base: Token, quote: Token, price: Decimal, depth_usd: Decimal
    ) -> None:
        base_reserve = depth_usd / base.usd_price
        self._open(dex, base, quote, price, (base_reserve, base_reserve * price))

    @classmethod
    def listed(cls, listing: Listing) -> Pool:
        """The pool `listing` opened, whose tokens must both be in `TOKENS`.

        It holds `liquidity` of the quote token and `liquidity / price` of the token, and its
        anchor is the listed price, so it drifts and recovers as any other pool does.
        """
        with localcontext() as context:
            context.prec = PRECISION
            token_side = listing.liquidity / listing.price
        pool = cls.__new__(cls)
        base, quote = TOKENS[listing.token], TOKENS[listing.quote_token]
        pool._open(listing.dex, base, quote, listing.price, (token_side, listing.liquidity))
        return pool

    def _open(
        self, dex: str, base: Token, quote: Token, price: Decimal, reserves: tuple[Decimal, Decimal]
    ) -> None:
        """Start the pool at `price` with these (base, quote) reserves, its depth to recover to."""
        self.base, self.quote = base, quote
        self.address = pool_address(dex, base.symbol, quote.symbol)
        self.anchor = price
        self.market = price
        """The market price, where arbitrage pulls the pool: the anchor, drifted."""
        self.base_reserve, self.quote_reserve = reserves
        self._initial = reserves
        self._relaxed_at: float | None = None

    @property
    def price(self) -> Decimal:
        return self.quote_reserve / self.base_reserve

    def reprice(self, price: Decimal) -> None:
        """Move the market to `price` for good, as news would: the anchor too, at the same depth.

        How a test or a demonstration sets a price instead of waiting for the drift.
        """
        base, _ = self._initial
        self.anchor = self.market = price
        self._initial = (base, base * price)
        self.base_reserve, self.quote_reserve = self._initial

    def reference(self) -> tuple[Decimal, Decimal]:
        """The reserves the pool returns to: its initial depth, at the market price."""
        base, quote = self._initial
        if self.market == self.anchor:
            return base, quote
        with localcontext() as context:
            context.prec = PRECISION
            ratio = (self.market / self.anchor).sqrt()
            return base / ratio, quote * ratio

    def drift(self, rng: random.Random, volatility_bps: float) -> float:
        """Move the market one random, mean-reverting step, and the pool with it at constant k.

        Returns the relative move.
        """
        deviation = math.log(self.market / self.anchor)
        step = (1 - MEAN_REVERSION) * deviation + rng.gauss(0, volatility_bps / 10_000)
        market = self.anchor * Decimal(repr(math.exp(step)))
        with localcontext() as context:
            context.prec = PRECISION
            ratio = market / self.market
            self.market = market
            if ratio != 1:
                k = self.base_reserve * self.quote_reserve
                price = self.price * ratio
                self.base_reserve = (k / price).sqrt()
                self.quote_reserve = (k * price).sqrt()
        return float(ratio) - 1

    def relax(self, now: float, half_life_s: float) -> None:
        """Close the share of the gap to the reference state that time `now` has closed.

        `now` is in seconds on any clock that only moves forward (the same for every call);
        a half-life of 0 closes the whole gap at once.
        """
        last, self._relaxed_at = self._relaxed_at, now
        if half_life_s <= 0:
            share = 1.0
        elif last is None or now <= last:
            return
        else:
            share = 1 - 0.5 ** ((now - last) / half_life_s)
        base, quote = self.reference()
        if share >= 1:
            self.base_reserve, self.quote_reserve = base, quote
            return
        with localcontext() as context:
            context.prec = PRECISION
            self.base_reserve *= _power(base / self.base_reserve, share)
            self.quote_reserve *= _power(quote / self.quote_reserve, share)

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
            context.prec = PRECISION
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
            price=price_of(amount_in, amount_out),
        )

    def settle(self, token_in: str, amount_in: Decimal, amount_out: Decimal) -> None:
        """Apply an executed swap to the reserves: its impact stays until time relaxes it."""
        if token_in == self.base.symbol:
            self.base_reserve += amount_in
            self.quote_reserve -= amount_out
        else:
            self.quote_reserve += amount_in
            self.base_reserve -= amount_out
