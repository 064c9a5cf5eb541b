"""Venues for tests: wrappers around the simulated ones that fail, stall or count on cue."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from decimal import Decimal
from uuid import UUID

from solders.keypair import Keypair

from orderengine.errors import SwapRejected, VenueError
from orderengine.settings import Settings
from orderengine.transaction import Transaction
from orderengine.venues.factory import simulated_venues
from orderengine.venues.values import (
    Dex,
    Execution,
    Listing,
    Quote,
    TransactionStatus,
)
from orderengine.venues.venue import Listable, Venue, VenueFactory, Venues


def wrapping(wrap: Callable[[Venue], Venue]) -> VenueFactory:
    """The simulated venues, each wrapped by `wrap`."""

    @contextlib.asynccontextmanager
    async def venues(settings: Settings) -> AsyncIterator[Venues]:
        async with simulated_venues(settings) as simulated:
            yield {name: wrap(venue) for name, venue in simulated.items()}

    return venues


class Delegated:
    """Delegates every call of the `Venue` protocol to a real venue, and lists no pools.

    Alone, it is a venue that takes no listings, as a live one would be.
    """

    def __init__(self, inner: Venue) -> None:
        self.inner = inner

    @property
    def name(self) -> Dex:
        return self.inner.name

    async def quote(self, token_in: str, token_out: str, amount_in: Decimal) -> Quote:
        return await self.inner.quote(token_in, token_out, amount_in)

    async def build(
        self, order_id: UUID, quote: Quote, min_amount_out: Decimal, signer: Keypair
    ) -> Transaction:
        return await self.inner.build(order_id, quote, min_amount_out, signer)

    async def execute(self, transaction: Transaction) -> Execution:
        return await self.inner.execute(transaction)

    async def transaction_status(
        self,
        signature: str,
        expires_at: datetime,
        last_valid_block_height: int | None = None,
        blockhash: str | None = None,
    ) -> TransactionStatus:
        return await self.inner.transaction_status(
            signature, expires_at, last_valid_block_height, blockhash
        )

    async def pairs(self) -> frozenset[frozenset[str]]:
        return await self.inner.pairs()


class Wrapped(Delegated):
    """Delegates to a real simulated venue; subclasses change one behaviour.

    It lists pools when the venue it wraps does (every simulated venue does).
    """

    async def list_pool(
        self, token: str, quote_token: str, price: Decimal, liquidity: Decimal
    ) -> Listing:
        if not isinstance(self.inner, Listable):
            raise NotImplementedError(f"{self.name} does not list pools")
        return await self.inner.list_pool(token, quote_token, price, liquidity)


class Down(Wrapped):
    """A venue whose quotes fail outright."""

    async def quote(self, token_in: str, token_out: str, amount_in: Decimal) -> Quote:
        raise VenueError(f"{self.name} is down")


class Stalled(Wrapped):
    """A venue whose quotes never come back."""

    async def quote(self, token_in: str, token_out: str, amount_in: Decimal) -> Quote:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


class Nonsense(Wrapped):
    """A venue that quotes a token nobody knows: building its swap is a bug to survive."""

    async def quote(self, token_in: str, token_out: str, amount_in: Decimal) -> Quote:
        quote = await super().quote(token_in, token_out, amount_in)
        return quote.model_copy(update={"token_out": "???"})


class Rejections:
    """The first `count` swaps, on whichever venue, are rejected; the rest run for real."""

    def __init__(self, count: int, reason: str = "blockhash not found") -> None:
        self.left = count
        self.reason = reason

    @property
    def venues(self) -> VenueFactory:
        return wrapping(lambda venue: Rejecting(venue, self))


class Rejecting(Wrapped):
    def __init__(self, inner: Venue, plan: Rejections) -> None:
        super().__init__(inner)
        self.plan = plan

    async def execute(self, transaction: Transaction) -> Execution:
        if self.plan.left > 0:
            self.plan.left -= 1
            raise SwapRejected(self.plan.reason)
        return await super().execute(transaction)


class ConcurrencyProbe:
    """Counts swaps in flight across all venues and keeps the highest count seen.

    The first swaps wait (up to a few seconds) until `expected` are in flight together, so
    a test sees the engine's full concurrency however slowly the orders arrive; after that
    every swap is held `hold_s`, leaving room for any excess concurrency to show.
    """

    def __init__(self, expected: int, hold_s: float = 0.01, patience_s: float = 5) -> None:
        self.expected = expected
        self.hold_s = hold_s
        self.patience_s = patience_s
        self.all_in = asyncio.Event()
        self.in_flight = 0
        self.peak = 0
        self.executed = 0

    async def hold(self) -> None:
        if self.in_flight >= self.expected:
            self.all_in.set()
        if not self.all_in.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.all_in.wait(), self.patience_s)
        await asyncio.sleep(self.hold_s)

    @property
    def venues(self) -> VenueFactory:
        return wrapping(lambda venue: Probed(venue, self))


class Probed(Wrapped):
    def __init__(self, inner: Venue, probe: ConcurrencyProbe) -> None:
        super().__init__(inner)
        self.probe = probe

    async def execute(self, transaction: Transaction) -> Execution:
        self.probe.in_flight += 1
        self.probe.peak = max(self.probe.peak, self.probe.in_flight)
        try:
            await self.probe.hold()
            execution = await super().execute(transaction)
            self.probe.executed += 1
            return execution
        finally:
            self.probe.in_flight -= 1


class Gate:
    """Holds every swap until opened; tells when the first one is waiting."""

    def __init__(self) -> None:
        self.opened = asyncio.Event()
        self.waiting = asyncio.Event()

    @property
    def venues(self) -> VenueFactory:
        return wrapping(lambda venue: Gated(venue, self))


class Gated(Wrapped):
    def __init__(self, inner: Venue, gate: Gate) -> None:
        super().__init__(inner)
        self.gate = gate

    async def execute(self, transaction: Transaction) -> Execution:
        self.gate.waiting.set()
        await self.gate.opened.wait()
        return await super().execute(transaction)
