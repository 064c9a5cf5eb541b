"""What the engine needs of a venue, real or simulated."""

from __future__ import annotations

from decimal import Decimal
from typing import Protocol

from orderengine.domain import Execution, Quote, TransactionStatus
from orderengine.transaction import Transaction


class Venue(Protocol):
    """A DEX the router can ask for quotes and the engine can send swaps to."""

    name: str

    async def quote(self, token_in: str, token_out: str, amount_in: Decimal) -> Quote:
        """The output this venue offers now, net of its fee and the price impact."""
        ...

    async def execute(self, transaction: Transaction) -> Execution:
        """Send a signed swap; returns once it landed, raises `SwapRejected` if it did not."""
        ...

    async def transaction_status(self, signature: str) -> TransactionStatus:
        """What became of a signature: how an unknown outcome is resolved, never by resending."""
        ...
