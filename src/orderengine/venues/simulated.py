"""Machinery shared by the simulated venues: pools, latency, failures and the chain.

A simulated venue behaves like a real one: a quote takes about 200 ms and a swap 2–3 s (both
scaled by the latency setting), prices drift between calls, and what swaps do to a pool fades
with time (pool.py). A swap sent is first checked as a chain's node would check it: a
well-formed Solana transaction whose signatures verify, whose first signature is the one given,
and which swaps what its quote says on this venue; one that fails is rejected at once and never
recorded. Then its outcome is decided, against the pool its quote came from as it is now (moved
since the quote), failing when the price moved past the order's bound or at the configured
failure rate, and recorded on the chain (chain.py) with the moment it lands, partway through
the swap's latency. The chain refuses it, and it never lands, if its blockhash has expired.

The venue answers once the swap has landed and is confirmed. The chain does not wait for the
venue: a swap that was recorded lands on schedule even if the engine that sent it dies.
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

from solders.transaction import Transaction as SolanaTransaction

from orderengine.errors import NoRoute, SlippageExceeded, SwapRejected
from orderengine.tokens import TOKENS, Token
from orderengine.transaction import Swap, Transaction, find_swap
from orderengine.venues.chain import Ledger, Sent
from orderengine.venues.pool import Pool
from orderengine.venues.values import (
    Dex,
    Execution,
    Quote,
    RecentBlockhash,
    TransactionStatus,
)

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
    """A venue with one pool per token pair; subclasses set the name, prices and fee.

    `recovery_half_life_s` is how fast the pools forget what swaps did to them (0: at once),
    on `clock`, a monotonic clock in seconds that tests may replace.
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
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ledger = ledger
        self._latency_scale = latency_scale
        self._failure_rate = failure_rate
        self._volatility_bps = volatility_bps
        self._recovery_half_life_s = recovery_half_life_s
        self._clock = clock
        self._rng = random.Random(f"{seed}:{self.name}" if seed is not None else None)
        self._pools = {
            frozenset((base.symbol, quote.symbol)): Pool(
                self.name, base, quote, self.anchor_price(base, quote), self.depth_usd
            )
            for base, quote in combinations(TOKENS.values(), 2)
        }

    def anchor_price(self, base: Token, quote: Token) -> Decimal:
        """The price (quote per base) this venue's pool gravitates to."""
        return base.usd_price / quote.usd_price

    @abstractmethod
    def fee_rate(self, pool: Pool, move: float) -> Decimal:
        """The fee on a swap in `pool`, which has just moved by `move` (relative)."""

    async def quote(self, token_in: str, token_out: str, amount_in: Decimal) -> Quote:
        await self._pause(self._latency(QUOTE_LATENCY_S))
        pool = self._pool(token_in, token_out)
        fee_rate = self.fee_rate(pool, self._move(pool))
        result = pool.swap(token_in, amount_in, fee_rate)
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

    async def execute(self, transaction: Transaction) -> Execution:
        """Check the swap, decide its outcome and record it on the chain, then confirm it.

        Once recorded, the swap lands whatever happens to the caller, so an engine that dies
        while waiting finds it on the chain when it asks about the signature.
        """
        blockhash, pool = self._checked(transaction)
        latency = self._latency(SWAP_LATENCY_S)
        landing = self._rng.uniform(*LANDING_SHARE) * latency
        outcome = self._decide(transaction, pool)
        sent = Sent(
            signature=transaction.signature,
            blockhash=blockhash,
            expires_at=transaction.expires_at,
            dex=self.name,
            order_id=transaction.order_id,
            outcome=outcome if isinstance(outcome, Execution) else outcome.message,
            lands_in_s=landing,
        )
        await self._ledger.record(sent)
        if isinstance(outcome, Execution):
            pool.settle(transaction.quote.token_in, outcome.amount_in, outcome.amount_out)
        await self._pause(latency)
        if isinstance(outcome, SwapRejected):
            raise outcome
        return outcome

    async def transaction_status(self, signature: str, expires_at: datetime) -> TransactionStatus:
        return await self._ledger.status(signature, expires_at)

    def _checked(self, transaction: Transaction) -> tuple[str, Pool]:
        """The transaction's blockhash and pool, if it is one this venue may execute.

        Otherwise `SwapRejected`: the chain never takes it.
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
        pool = self._swapped_pool(transaction, signed)
        return str(signed.message.recent_blockhash), pool

    def _swapped_pool(self, transaction: Transaction, signed: SolanaTransaction) -> Pool:
        """The pool of the transaction's swap, which must be the swap its quote describes."""
        quote = transaction.quote
        if quote.dex != self.name:
            raise SwapRejected(f"a {quote.dex} swap cannot be executed on {self.name}")
        pool = self._pools.get(frozenset((quote.token_in, quote.token_out)))
        if pool is None or pool.address != quote.pool:
            raise SwapRejected(f"{self.name} has no pool {quote.pool}")
        try:
            described = Swap.of(quote, transaction.min_amount_out)
        except ValueError as error:
            raise SwapRejected(f"the quote cannot be swapped: {error}") from error
        if find_swap(signed, self.name) != described:
            raise SwapRejected(f"the transaction does not hold the {self.name} swap it describes")
        return pool

    def _decide(self, transaction: Transaction, pool: Pool) -> Execution | SwapRejected:
        """The swap's outcome against `pool` as it is now: executed, or why not."""
        quote = transaction.quote
        fee_rate = self.fee_rate(pool, self._move(pool))
        result = pool.swap(quote.token_in, quote.amount_in, fee_rate)
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
                f"slippage tolerance exceeded: would receive {amount_out},"
                f" minimum {transaction.min_amount_out}"
            )
        if self._rng.random() < self._failure_rate:
            return SwapRejected(self._rng.choice(TRANSIENT_FAILURES))
        return None

    def _move(self, pool: Pool) -> float:
        """Let time relax the pool, then drift its price one step; the relative move."""
        pool.relax(self._clock(), self._recovery_half_life_s)
        return pool.drift(self._rng, self._volatility_bps)

    def _pool(self, token_in: str, token_out: str) -> Pool:
        pool = self._pools.get(frozenset((token_in, token_out)))
        if pool is None:
            raise NoRoute(f"{self.name} has no {token_in}/{token_out} pool")
        return pool

    def _latency(self, bounds: tuple[float, float]) -> float:
        return self._rng.uniform(*bounds) * self._latency_scale

    async def _pause(self, seconds: float) -> None:
        if seconds > 0:
            await asyncio.sleep(seconds)
