"""A simulated constant-product pool: its price drifts, and what swaps do to it fades.

Two forces move a pool besides the swaps it executes, and both are functions of time, so
that every engine on one chain sees the pool alike at the same moment. The market price
drifts (market.py): a mean-reverting random walk around the pool's anchor, one step of
`price_volatility_bps` every `STEP_S` seconds, drawn from the chain's seed. It carries the
pool with it at constant `k`, as arbitrage would. And whatever swaps did to the pool fades
with time, as arbitrageurs and liquidity providers on a real chain would undo it: the
reserves relax toward the pool's reference state, its initial depth at the market price,
closing half the gap every half-life. A pool drained by one huge order is back in service a
few half-lives later.

So a pool at a moment (`Pool.at`) is its reference state at that moment's market price,
moved by the reserves its last swap left (`Reserves`, kept on the chain for every engine)
as far as time has not closed their gap to the reference state since. The drift moves a
pool and its reference state by the same ratio, so that gap, measured in ratios of
reserves, is the drift's to leave alone and time's to close.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal, localcontext

import base58

from orderengine.tokens import TOKENS, Token
from orderengine.venues.market import Market
from orderengine.venues.values import Listing, Reserves, price_of

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


def remaining_share(elapsed_s: float, half_life_s: float) -> float:
    """The share of a swap's gap to the reference state left after `elapsed_s` seconds."""
    if half_life_s <= 0:
        return 0.0
    if elapsed_s <= 0:
        return 1.0
    return math.exp2(-elapsed_s / half_life_s)


@dataclass(frozen=True)
class PoolState:
    """A pool at one moment: its reserves and the market price then, after `swaps` swaps."""

    base: Token
    quote: Token
    base_reserve: Decimal
    quote_reserve: Decimal
    market: Decimal
    swaps: int = 0

    @property
    def price(self) -> Decimal:
        return self.quote_reserve / self.base_reserve

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

    def settle(self, token_in: str, amount_in: Decimal, amount_out: Decimal, at: float) -> Reserves:
        """The reserves an executed swap leaves at `at`: its impact stays until time relaxes it."""
        swaps = self.swaps + 1
        if token_in == self.base.symbol:
            return Reserves(
                self.base_reserve + amount_in, self.quote_reserve - amount_out, at, swaps
            )
        return Reserves(self.base_reserve - amount_out, self.quote_reserve + amount_in, at, swaps)


class Pool:
    """Reserves of two tokens with `x * y = k`; the price is `quote_reserve / base_reserve`.

    A pool of two fixed tokens holds `depth_usd` worth of its base token at the token's
    reference price; a listed one (`Pool.listed`) what its listing says. Its market price
    comes from `market`, under the pool's address.
    """

    def __init__(
        self,
        dex: str,
        base: Token,
        quote: Token,
        price: Decimal,
        depth_usd: Decimal,
        market: Market,
    ) -> None:
        base_reserve = depth_usd / base.usd_price
        self._open(dex, base, quote, price, (base_reserve, base_reserve * price), market)

    @classmethod
    def listed(cls, listing: Listing, market: Market) -> Pool:
        """The pool `listing` opened, whose tokens must both be in `TOKENS`.

        It holds `liquidity` of the quote token and `liquidity / price` of the token, and its
        anchor is the listed price, so it drifts and recovers as any other pool does.
        """
        with localcontext() as context:
            context.prec = PRECISION
            token_side = listing.liquidity / listing.price
        pool = cls.__new__(cls)
        base, quote = TOKENS[listing.token], TOKENS[listing.quote_token]
        reserves = (token_side, listing.liquidity)
        pool._open(listing.dex, base, quote, listing.price, reserves, market)
        return pool

    def _open(
        self,
        dex: str,
        base: Token,
        quote: Token,
        price: Decimal,
        reserves: tuple[Decimal, Decimal],
        market: Market,
    ) -> None:
        """Start the pool at `price` with these (base, quote) reserves, its depth to recover to."""
        self.base, self.quote = base, quote
        self.address = pool_address(dex, base.symbol, quote.symbol)
        self.anchor = price
        self._initial = reserves
        self._market = market
        self.settled: Reserves | None = None
        """The reserves the pool's last swap left; None while no swap moved it."""
        self._repriced_at: float | None = None

    def market(self, now: float) -> Decimal:
        """The market price at `now`, where arbitrage pulls the pool: the anchor, drifted."""
        deviation = self._market.deviation(self.address, now)
        if deviation == 0:
            return self.anchor
        return self.anchor * Decimal(repr(math.exp(deviation)))

    def reference(self, market: Decimal) -> tuple[Decimal, Decimal]:
        """The reserves the pool returns to at `market`: its initial depth, at that price."""
        base, quote = self._initial
        if market == self.anchor:
            return base, quote
        with localcontext() as context:
            context.prec = PRECISION
            ratio = (market / self.anchor).sqrt()
            return base / ratio, quote * ratio

    def at(self, now: float, half_life_s: float, settled: Reserves | None = None) -> PoolState:
        """The pool at `now`, after the swap that left `settled` (by default the last adopted).

        `now` is in seconds on the clock the engines share; a half-life of 0 closes the whole
        gap a swap opened at once.
        """
        if settled is None:
            settled = self.settled
        market = self.market(now)
        base, quote = self.reference(market)
        if settled is not None:
            left = remaining_share(now - settled.at, half_life_s)
            if left > 0:
                base, quote = self._moved(settled, (base, quote), left)
        swaps = settled.swaps if settled is not None else 0
        return PoolState(self.base, self.quote, base, quote, market, swaps)

    def _moved(
        self, settled: Reserves, reference: tuple[Decimal, Decimal], left: float
    ) -> tuple[Decimal, Decimal]:
        """`reference` moved by `left` of the gap `settled` had to its reference state then."""
        base_then, quote_then = self.reference(self.market(settled.at))
        if left == 1 and (base_then, quote_then) == reference:
            return settled.base, settled.quote
        with localcontext() as context:
            context.prec = PRECISION
            base_gap, quote_gap = settled.base / base_then, settled.quote / quote_then
            if left < 1:
                base_gap, quote_gap = _power(base_gap, left), _power(quote_gap, left)
            return reference[0] * base_gap, reference[1] * quote_gap

    def adopt(self, settled: Reserves | None) -> None:
        """Take `settled` as what the last swap left, unless it is older than what was taken.

        Older: fewer swaps than the reserves held (a reading of the chain that began before
        this engine's own swap and answered after it), or settled before a `reprice`.
        """
        if settled is None:
            self.settled = None
            return
        repriced_at = self._repriced_at
        if repriced_at is not None and settled.at < repriced_at:
            return
        if self.settled is not None and settled.swaps < self.settled.swaps:
            return
        self.settled = settled

    def reprice(self, price: Decimal, now: float) -> None:
        """Move the anchor to `price` at `now` for good, as news would, at the same depth.

        What swaps did before is forgotten. How a test or a demonstration sets a price instead
        of waiting for the drift; it moves this engine's pool alone.
        """
        base, _ = self._initial
        self.anchor = price
        self._initial = (base, base * price)
        self.settled = None
        self._repriced_at = now
