"""What the engine needs of a venue, real or simulated."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from decimal import Decimal
from typing import Protocol, TypeAlias

from orderengine.settings import Settings
from orderengine.transaction import Transaction
from orderengine.venues.values import Dex, Execution, Quote, TransactionStatus


class Venue(Protocol):
    """A DEX the router can ask for quotes and the engine can send swaps to."""

    @property
    def name(self) -> Dex:
        """The venue's name, as routing decisions and orders show it."""
        ...

    async def quote(self, token_in: str, token_out: str, amount_in: Decimal) -> Quote:
        """The output this venue offers now, net of its fee and the price impact."""
        ...

    async def execute(self, transaction: Transaction) -> Execution:
        """Send a signed swap; returns once it landed, raises `SwapRejected` if it did not."""
        ...

    async def transaction_status(self, signature: str) -> TransactionStatus:
        """What became of a signature: how an unknown outcome is resolved, never by resending."""
        ...


Venues: TypeAlias = Mapping[Dex, Venue]
"""The venues an engine routes between, by name."""

VenueFactory: TypeAlias = Callable[[Settings], AbstractAsyncContextManager[Venues]]
"""Opens the venues for an engine with these settings: usable inside the block, closed
(with whatever they hold open) when it ends."""
