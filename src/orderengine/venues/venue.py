"""What the engine needs of a venue, real or simulated."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from decimal import Decimal
from typing import Protocol, TypeAlias, runtime_checkable
from uuid import UUID

from solders.keypair import Keypair

from orderengine.settings import Settings
from orderengine.transaction import Transaction
from orderengine.venues.values import (
    Dex,
    Execution,
    Listing,
    Quote,
    TransactionStatus,
)


class Venue(Protocol):
    """A DEX the router can ask for quotes and the engine can send swaps to."""

    @property
    def name(self) -> Dex:
        """The venue's name, as routing decisions and orders show it."""
        ...

    async def quote(self, token_in: str, token_out: str, amount_in: Decimal) -> Quote:
        """The output this venue offers now, net of its fee and the price impact."""
        ...

    async def build(
        self, order_id: UUID, quote: Quote, min_amount_out: Decimal, signer: Keypair
    ) -> Transaction:
        """The signed swap that executes `quote` once, accepting no less than `min_amount_out`.

        Nothing is sent. Every call gives a transaction of its own, with a signature no
        other call gave, on a recent blockhash. Raises `SwapRejected` when this venue
        cannot build it (the quote is not one it gave, or is gone): the attempt ends unsent.
        """
        ...

    async def execute(self, transaction: Transaction) -> Execution:
        """Send a signed swap once; returns once it landed and is confirmed.

        Raises `SwapRejected` only when the swap definitely did not land and never will.
        Anything else it raises (a timeout, a lost connection, a cancellation) leaves the
        outcome unknown: the swap may still land, until its blockhash expires.
        """
        ...

    async def transaction_status(
        self,
        signature: str,
        expires_at: datetime,
        last_valid_block_height: int | None = None,
        blockhash: str | None = None,
    ) -> TransactionStatus:
        """What became of a signature: how an unknown outcome is resolved, never by resending.

        `landed` (with the execution) or `rejected` (with the reason) once its landing time
        has come; `pending` while it may still land; `expired` when the chain never took it
        and its blockhash has expired: `expires_at` has passed, or on a live cluster the
        block height has passed `last_valid_block_height` and the cluster no longer takes
        `blockhash` (the height is the word of whoever built the swap; the cluster's own
        answer is what makes it safe to send another).
        """
        ...

    async def pairs(self) -> frozenset[frozenset[str]]:
        """Every pair (two symbols) this venue has a pool for now, listed ones included."""
        ...


@runtime_checkable
class Listable(Venue, Protocol):
    """A venue that lists pools for new pairs on request, as the simulated ones do."""

    async def list_pool(
        self, token: str, quote_token: str, price: Decimal, liquidity: Decimal
    ) -> Listing:
        """Open a pool of `token` priced in `quote_token`, and register `token` if it is new.

        `token` is a symbol as `tokens.SYMBOL` allows, `quote_token` a known token's symbol
        (both uppercase and different); `price` (quote_token per token) and `liquidity` (the
        pool's quote_token side) are positive. Raises `AlreadyListed` when this venue has a
        pool for the pair already, either way round.
        """
        ...


Venues: TypeAlias = Mapping[Dex, Venue]
"""The venues an engine routes between, by name."""

VenueFactory: TypeAlias = Callable[[Settings], AbstractAsyncContextManager[Venues]]
"""Opens the venues for an engine with these settings: usable inside the block, closed
(with whatever they hold open) when it ends."""
