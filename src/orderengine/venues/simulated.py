"""Machinery shared by the simulated venues: pools, latency, failures and the chain.

A simulated venue behaves like a real one: a quote takes about 200 ms and a swap 2–3 s (both
scaled by the latency setting), prices drift with time, and what swaps do to a pool fades
with time (pool.py). Its pools are the chain's: every engine's venue of one name quotes the
same pool at the same moment, drifting from the chain's seed (market.py), and moved by the
swaps any engine recorded. A venue reads what swaps left of its pools from the chain at most
every `pool_sync_s` as it quotes (`sync_pools` reads it at once), and learns its own swaps at
once.

A swap sent is first checked as a chain's node would check it: a well-formed Solana
transaction whose signatures verify, whose first signature is the one given, and which swaps
what its quote says on this venue; one that fails is rejected at once and never recorded. Then
its outcome is decided, against the pool its quote came from as the chain holds it now (moved
since the quote, by this engine or another), failing when the price moved past the order's
bound or at the configured failure rate, and recorded on the chain (chain.py) with the moment
it lands, partway through the swap's latency, and the reserves it leaves. The chain refuses
it, and it never lands, if its blockhash has expired.

The venue answers once the swap has landed and is confirmed. The chain does not wait for the
venue: a swap that was recorded lands on schedule even if the engine that sent it dies.

Besides a pool for each two fixed tokens, a venue lists pools for new pairs on request
(`list_pool`), recorded on the chain. Venues of other engines on the same chain learn such a
listing the next time they look for a pair they have no pool for, or are asked for their pairs:
they register its token and open its pool as it was listed.
"""

from __future__ import annotations

import asyncio
import random
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from itertools import combinations
from uuid import UUID

from solders.keypair import Keypair
from solders.transaction import Transaction as SolanaTransaction

from orderengine.errors import (
    AlreadyListed,
    DatabaseUnavailable,
    NoRoute,
    SlippageExceeded,
    SwapRejected,
)
from orderengine.logs import Outage
from orderengine.model import plain_decimal
from orderengine.tokens import FIXED_TOKENS, SYMBOL, TOKENS, Token, listed_token, register
from orderengine.transaction import Swap, Transaction, build, find_swap
from orderengine.venues.chain import Decided, Ledger, Sending, Sent
from orderengine.venues.market import Market
from orderengine.venues.pool import Pool, PoolState, pool_address
from orderengine.venues.values import (
    Dex,
    Execution,
    Listing,
    Quote,
    RecentBlockhash,
    Reserves,
    TransactionStatus,
)

SYNC_LIMIT_S = 0.25
"""The longest a quote waits to read its venue's pools from the chain before it goes without."""
QUOTE_LATENCY_S = (0.15, 0.25)
SWAP_LATENCY_S = (2.0, 3.0)
LANDING_SHARE = (0.3, 0.7)
"""How far into a swap's latency it lands; the rest is waiting for confirmation."""
TRANSIENT_FAILURES = (
    "blockhash not found",
    "transaction simulation failed: account in use",
    "node is behind by 42 slots",
)


class SimulatedVenue(ABC):
    """A venue with one pool per pair of fixed tokens, plus those it listed.

    Subclasses set the name, prices and fee. `recovery_half_life_s` is how fast the pools
    forget what swaps did to them (0: at once), on `clock`, in seconds on a clock every engine
    on the chain shares (the wall clock's; tests may replace it). `seed` seeds this engine's
    latencies and failures; the prices drift from the chain's seed. `pool_sync_s` is how long
    a quote may go on with what this venue last read of its pools from the chain (0: each
    quote reads it).
    """

    name: Dex
    depth_usd = Decimal(2_000_000)

    def __init__(
        self,
        ledger: Ledger,
        *,
        latency_scale: float,
        failure_rate: float,
        volatility_bps: float,
        seed: int | None,
        recovery_half_life_s: float = 0.0,
        clock: Callable[[], float] = time.time,
        pool_sync_s: float = 0.0,
    ) -> None:
        self._ledger = ledger
        self._latency_scale = latency_scale
        self._failure_rate = failure_rate
        self._recovery_half_life_s = recovery_half_life_s
        self._clock = clock
        self._pool_sync_s = pool_sync_s
        self._synced_at: float | None = None
        self._listings_read = 0
        """How many listings the chain held when this venue last read them."""
        self._sync = Outage("pool_sync_failed", "pool_sync_recovered")
        """Whether the last read of the pools for a quote failed: said once, until one works."""
        self._rng = random.Random(f"{seed}:{self.name}" if seed is not None else None)
        self.market = Market(ledger.seed, volatility_bps)
        self._pools = {
            frozenset((base.symbol, quote.symbol)): Pool(
                self.name,
                base,
                quote,
                self.anchor_price(base, quote),
                self.depth_usd,
                self.market,
            )
            for base, quote in combinations(FIXED_TOKENS, 2)
        }

    def anchor_price(self, base: Token, quote: Token) -> Decimal:
        """The price (quote per base) this venue's pool gravitates to."""
        return base.usd_price / quote.usd_price

    @abstractmethod
    def fee_rate(self, pool: Pool, now: float) -> Decimal:
        """The fee on a swap in `pool` at `now`."""

    async def quote(self, token_in: str, token_out: str, amount_in: Decimal) -> Quote:
        await self._pause(self._latency(QUOTE_LATENCY_S))
        pool = await self._pool(token_in, token_out)
        if self._sync_due():
            await self._sync_for_quote()
        now = self._clock()
        fee_rate = self.fee_rate(pool, now)
        result = self._state(pool, now).swap(token_in, amount_in, fee_rate)
        return Quote(
            dex=self.name,
            pool=pool.address,
            token_in=token_in,
            token_out=token_out,
            amount_in=amount_in,
            amount_out=result.amount_out,
            price=result.price,
            price_impact_pct=result.price_impact_pct,
            fee=result.fee,
            fee_bps=(fee_rate * 10_000).quantize(Decimal("0.01")),
        )

    async def recent_blockhash(self) -> RecentBlockhash:
        return await self._ledger.issue_blockhash()

    async def build(
        self, order_id: UUID, quote: Quote, min_amount_out: Decimal, signer: Keypair
    ) -> Transaction:
        """The swap built by the engine's own rules (`transaction.build`), on a recent blockhash."""
        return build(order_id, quote, min_amount_out, signer, await self.recent_blockhash())

    async def execute(self, transaction: Transaction) -> Execution:
        """Check the swap, decide its outcome and record it on the chain, then confirm it.

        Once recorded, the swap lands whatever happens to the caller, so an engine that dies
        while waiting finds it on the chain when it asks about the signature.
        """
        pool = await self._find(transaction.quote.token_in, transaction.quote.token_out)
        blockhash, pool = self._checked(transaction, pool)
        latency = self._latency(SWAP_LATENCY_S)
        landing = self._rng.uniform(*LANDING_SHARE) * latency
        outcomes: list[Execution | SwapRejected] = []

        def decide(settled: Reserves | None) -> Decided:
            """The swap against the pool its last swap left at `settled`, as the chain holds it.

            The chain may decide again when it starts over: the last decision is the one taken.
            """
            now = self._clock()
            state = self._state(pool, now, settled)
            outcome = self._decide(transaction, pool, state, now)
            outcomes.append(outcome)
            sent = Sent(
                signature=transaction.signature,
                blockhash=blockhash,
                expires_at=transaction.expires_at,
                dex=self.name,
                order_id=transaction.order_id,
                outcome=outcome if isinstance(outcome, Execution) else outcome.message,
                lands_in_s=landing,
            )
            if not isinstance(outcome, Execution):
                return Decided(sent)
            token_in = transaction.quote.token_in
            return Decided(sent, state.settle(token_in, outcome.amount_in, outcome.amount_out, now))

        sending = Sending(transaction.signature, self.name, pool.address, decide)
        decided = await self._ledger.record(sending)
        if decided.reserves is not None:
            pool.adopt(decided.reserves)
        await self._pause(latency)
        outcome = outcomes[-1]
        if isinstance(outcome, SwapRejected):
            raise outcome
        return outcome

    async def transaction_status(
        self,
        signature: str,
        expires_at: datetime,
        last_valid_block_height: int | None = None,
        blockhash: str | None = None,
    ) -> TransactionStatus:
        return await self._ledger.status(signature, expires_at)

    def set_price(self, base: str, quote: str, price: Decimal) -> None:
        """Move the pair's pool to `price` (`quote` per `base`) for good (`Pool.reprice`)."""
        pool = self._pools[frozenset((base, quote))]
        pool.reprice(price if pool.base.symbol == base else 1 / price, self._clock())

    async def sync_pools(self) -> None:
        """Adopt now what the swaps recorded on the chain, by any engine, left of the pools."""
        self._synced_at = self._clock()
        moved = await self._ledger.pool_reserves(self.name)
        for pool in self._pools.values():
            reserves = moved.get(pool.address)
            if reserves is not None and reserves != pool.settled:
                pool.adopt(reserves)

    async def _sync_for_quote(self) -> None:
        """Read the pools from the chain for a quote, within `SYNC_LIMIT_S`, or go without.

        A reading that fails is logged once (`pool_sync_failed`) until one works again
        (`pool_sync_recovered`): quotes come many a second, and an outage would otherwise cost
        a warning each.

        A quote needs no database: what it last read is the pools as of a moment ago, and a
        database that does not answer must not cost the quotes too. A swap is always decided
        against the chain as it is (`Ledger.record`).
        """
        try:
            async with asyncio.timeout(SYNC_LIMIT_S):
                await self.sync_pools()
        except (DatabaseUnavailable, TimeoutError) as error:
            self._sync.failed(dex=self.name, error=type(error).__name__)
        else:
            self._sync.worked(dex=self.name)

    def _sync_due(self) -> bool:
        """Whether the pools were last read from the chain `pool_sync_s` ago, or never."""
        last = self._synced_at
        return last is None or not 0 <= self._clock() - last < self._pool_sync_s

    def _state(self, pool: Pool, now: float, settled: Reserves | None = None) -> PoolState:
        return pool.at(now, self._recovery_half_life_s, settled)

    async def pairs(self) -> frozenset[frozenset[str]]:
        await self._refresh()
        return frozenset(self._pools)

    async def list_pool(
        self, token: str, quote_token: str, price: Decimal, liquidity: Decimal
    ) -> Listing:
        """Record the listing on the chain, then register its token and open its pool.

        The chain refuses a pair another engine's venue of this name listed first; a pair of
        fixed tokens never reaches it.
        """
        _check_listable(token, quote_token)
        if frozenset((token, quote_token)) in self._pools:
            raise AlreadyListed(
                f"{self.name} already lists {token}/{quote_token}",
                details={"dex": self.name, "tokens": sorted((token, quote_token))},
            )
        listing = await self._ledger.add_listing(
            self.name,
            token,
            quote_token,
            price,
            liquidity,
            pool_address(self.name, token, quote_token),
        )
        self._learn(listing)
        return listing

    async def _refresh(self) -> None:
        """Learn what was listed on the chain, by any engine, that this venue does not know.

        Every venue's listings, oldest first: a listing's quote token may be a token another
        venue listed before, which must be registered first. They are read only when the
        chain holds more than at the last read: a pair this venue has no pool for (a token
        the other venue listed) is looked for at every quote of it.
        """
        if await self._ledger.listing_count() == self._listings_read:
            return
        listings = await self._ledger.listings()
        for listing in listings:
            self._learn(listing)
        self._listings_read = len(listings)

    def _learn(self, listing: Listing) -> None:
        """Register the listing's token if it is new; open its pool if it is this venue's."""
        if listing.token not in TOKENS:
            usd_price = listing.price * TOKENS[listing.quote_token].usd_price
            register(listed_token(listing.token, usd_price))
        pair = frozenset((listing.token, listing.quote_token))
        if listing.dex == self.name and pair not in self._pools:
            self._pools[pair] = Pool.listed(listing, self.market)

    def _checked(self, transaction: Transaction, pool: Pool | None) -> tuple[str, Pool]:
        """The transaction's blockhash and pool, if it is one this venue may execute.

        `pool` is this venue's pool for the quote's pair, None if it has none. A transaction it
        may not execute is `SwapRejected`: the chain never takes it.
        """
        try:
            signed = SolanaTransaction.from_bytes(transaction.raw)
            signed.sanitize()
        except Exception as error:  # solders raises ValueError and its own types
            raise SwapRejected(f"malformed transaction: {error}") from error
        try:
            signed.verify()
        except Exception as error:
            raise SwapRejected(f"transaction signature verification failure: {error}") from error
        if str(signed.signatures[0]) != transaction.signature:
            raise SwapRejected(f"the transaction's first signature is not {transaction.signature}")
        return str(signed.message.recent_blockhash), self._swapped_pool(transaction, signed, pool)

    def _swapped_pool(
        self, transaction: Transaction, signed: SolanaTransaction, pool: Pool | None
    ) -> Pool:
        """The pool of the transaction's swap, which must be the swap its quote describes."""
        quote = transaction.quote
        if quote.dex != self.name:
            raise SwapRejected(f"a {quote.dex} swap cannot be executed on {self.name}")
        if pool is None or pool.address != quote.pool:
            raise SwapRejected(f"{self.name} has no pool {quote.pool}")
        try:
            described = Swap.of(quote, transaction.min_amount_out)
        except ValueError as error:
            raise SwapRejected(f"the quote cannot be swapped: {error}") from error
        if find_swap(signed, self.name) != described:
            raise SwapRejected(f"the transaction does not hold the {self.name} swap it describes")
        return pool

    def _decide(
        self, transaction: Transaction, pool: Pool, state: PoolState, now: float
    ) -> Execution | SwapRejected:
        """The swap's outcome against `pool`, in `state` at `now`: executed, or why not."""
        quote = transaction.quote
        result = state.swap(quote.token_in, quote.amount_in, self.fee_rate(pool, now))
        rejection = self._rejection(transaction, result.amount_out)
        if rejection is not None:
            return rejection
        return Execution(
            dex=self.name,
            tx_hash=transaction.signature,
            amount_in=quote.amount_in,
            amount_out=result.amount_out,
            executed_price=result.price,
            fee=result.fee,
        )

    def _rejection(self, transaction: Transaction, amount_out: Decimal) -> SwapRejected | None:
        """Why the swap does not land, or None if it does."""
        if amount_out < transaction.min_amount_out:
            return SlippageExceeded(
                f"slippage tolerance exceeded: would receive {plain_decimal(amount_out)},"
                f" minimum {plain_decimal(transaction.min_amount_out)}"
            )
        if self._rng.random() < self._failure_rate:
            return SwapRejected(self._rng.choice(TRANSIENT_FAILURES))
        return None

    async def _pool(self, token_in: str, token_out: str) -> Pool:
        pool = await self._find(token_in, token_out)
        if pool is None:
            raise NoRoute(f"{self.name} has no {token_in}/{token_out} pool")
        return pool

    async def _find(self, token_in: str, token_out: str) -> Pool | None:
        """The pair's pool; a pair this venue has no pool for may have been listed elsewhere."""
        pair = frozenset((token_in, token_out))
        if pair not in self._pools:
            await self._refresh()
        return self._pools.get(pair)

    def _latency(self, bounds: tuple[float, float]) -> float:
        return self._rng.uniform(*bounds) * self._latency_scale

    async def _pause(self, seconds: float) -> None:
        if seconds > 0:
            await asyncio.sleep(seconds)


def _check_listable(token: str, quote_token: str) -> None:
    """Refuse a listing no caller should ask for: the HTTP layer refuses it first, with a 422."""
    if not SYMBOL.fullmatch(token):
        raise ValueError(f"{token!r} is not a symbol a token may be listed under")
    if quote_token not in TOKENS:
        raise ValueError(f"unknown quote token {quote_token!r}")
    if token == quote_token:
        raise ValueError("a token cannot be listed against itself")
