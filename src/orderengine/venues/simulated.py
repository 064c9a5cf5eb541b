"""Machinery shared by the simulated venues: pools, latency, failures and the ledger.

A simulated venue behaves like a real one: a quote takes about 200 ms and a swap 2–3 s (both
scaled by the latency setting), prices drift between calls, a swap runs against the same pool
its quote came from (as it has moved since) and fails when the price moved past the order's
bound or at the configured failure rate. Every processed signature is written to the ledger
of the venues' chain (chain.py), which outlives the engine.
"""

from __future__ import annotations

import asyncio
import random
from abc import ABC, abstractmethod
from decimal import Decimal
from itertools import combinations

from orderengine.errors import NoRoute, SlippageExceeded, SwapRejected
from orderengine.tokens import TOKENS, Token
from orderengine.transaction import Transaction
from orderengine.venues.chain import Ledger
from orderengine.venues.pool import Pool
from orderengine.venues.values import Dex, Execution, Quote, TransactionState, TransactionStatus

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
    """A venue with one pool per token pair; subclasses set the name, prices and fee."""

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
    ) -> None:
        self._ledger = ledger
        self._latency_scale = latency_scale
        self._failure_rate = failure_rate
        self._volatility_bps = volatility_bps
        self._rng = random.Random(f"{seed}:{self.name}" if seed is not None else None)
        self._pools = {
            frozenset((base.symbol, quote.symbol)): Pool(
                self.name, base, quote, self.anchor_price(base, quote), self.depth_usd
            )
            for base, quote in combinations(TOKENS.values(), 2)
        }
        self._in_flight: set[str] = set()

    def anchor_price(self, base: Token, quote: Token) -> Decimal:
        """The price (quote per base) this venue's pool gravitates to."""
        return base.usd_price / quote.usd_price

    @abstractmethod
    def fee_rate(self, pool: Pool, move: float) -> Decimal:
        """The fee on a swap in `pool`, which has just moved by `move` (relative)."""

    async def quote(self, token_in: str, token_out: str, amount_in: Decimal) -> Quote:
        await self._pause(self._latency(QUOTE_LATENCY_S))
        pool = self._pool(token_in, token_out)
        fee_rate = self.fee_rate(pool, pool.drift(self._rng, self._volatility_bps))
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

    async def execute(self, transaction: Transaction) -> Execution:
        """Land the swap partway through its latency, as a chain would, then confirm it.

        Once landed, the outcome is in the ledger whatever happens to the caller, so an
        engine that dies while waiting for confirmation finds it there when it reconciles.
        """
        self._in_flight.add(transaction.signature)
        try:
            latency = self._latency(SWAP_LATENCY_S)
            landing = self._rng.uniform(*LANDING_SHARE) * latency
            await self._pause(landing)
            outcome = await self._land(transaction)
            await self._pause(latency - landing)
        finally:
            self._in_flight.discard(transaction.signature)
        if isinstance(outcome, SwapRejected):
            raise outcome
        return outcome

    async def transaction_status(self, signature: str) -> TransactionStatus:
        found = await self._ledger.find(signature)
        if found is not None:
            return found
        state = (
            TransactionState.PENDING if signature in self._in_flight else TransactionState.DROPPED
        )
        return TransactionStatus(signature=signature, state=state)

    async def _land(self, transaction: Transaction) -> Execution | SwapRejected:
        """Execute against the quote's pool as it is now and write the outcome to the ledger."""
        quote = transaction.quote
        pool = self._pool(quote.token_in, quote.token_out)
        fee_rate = self.fee_rate(pool, pool.drift(self._rng, self._volatility_bps))
        result = pool.swap(quote.token_in, quote.amount_in, fee_rate)
        rejection = self._rejection(transaction, result.amount_out)
        if rejection is not None:
            await self._ledger.record(
                transaction.signature, self.name, transaction.order_id, rejection.message
            )
            return rejection
        execution = Execution(
            dex=self.name,
            tx_hash=transaction.signature,
            amount_in=quote.amount_in,
            amount_out=result.amount_out,
            executed_price=result.price,
            fee=result.fee,
        )
        await self._ledger.record(transaction.signature, self.name, transaction.order_id, execution)
        pool.settle(quote.token_in, quote.amount_in, result.amount_out)
        return execution

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
