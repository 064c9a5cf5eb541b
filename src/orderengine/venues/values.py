"""What venues and the engine exchange: quotes, blockhashes, executions, a signature's fate."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Context, Decimal
from enum import StrEnum
from typing import Literal

from orderengine.model import Amount, Model

Dex = Literal["raydium", "meteora"]
"""The venues the router compares."""


PRICE = Context(prec=18)
"""A price's significant digits: as many for a token worth a 10^13th of another as for one
worth ten thousand of it, where a fixed number of places would write the first as 0."""


def price_of(amount_in: Decimal, amount_out: Decimal) -> Decimal:
    """`token_out` per `token_in`, to 18 significant digits, as quotes and executions give it.

    Exact when the quotient has no more digits than that (`9925.4965`), else rounded half
    even. Whether an amount meets a limit is decided on amounts, never on a price.
    """
    return PRICE.divide(amount_out, amount_in)


class Quote(Model):
    """What a venue offers for a swap: output net of its fee and of the pool's price impact."""

    dex: Dex
    pool: str
    token_in: str
    token_out: str
    amount_in: Amount
    amount_out: Amount
    price: Amount
    price_impact_pct: Amount
    fee: Amount
    fee_bps: Amount


class Execution(Model):
    """A swap that landed on a venue, as the venue's chain records it."""

    dex: Dex
    tx_hash: str
    amount_in: Amount
    amount_out: Amount
    executed_price: Amount
    fee: Amount | None = None
    """The pool's fee, in `token_in`. A live cluster's transaction does not record it: a live
    swap shows the fee its quote named, and none when it was learnt by asking the chain after
    the engine that sent it was gone."""
    network_fee: Amount | None = None
    """The SOL the transaction paid the network, its priority fee included: on a live cluster
    only (the simulated chain charges none)."""
    priority_fee: Amount | None = None
    """The part of `network_fee` bought for priority (compute-unit price times units)."""


class RecentBlockhash(Model):
    """A blockhash the chain issued, for a transaction to be built on.

    A transaction built on it can land until `expires_at` (tz-aware UTC) and never after, so a
    signature that has not landed by then never will.
    """

    blockhash: str
    """Base58, as `solders.hash.Hash` prints it."""
    expires_at: datetime


class TransactionState(StrEnum):
    """What a venue knows of a signature.

    `landed`, `rejected` and `expired` are definite; `pending` (sent and not landed yet, or
    not known but still able to land) means ask again later. An expired signature never
    landed and never will: its blockhash has expired.
    """

    LANDED = "landed"
    REJECTED = "rejected"
    PENDING = "pending"
    EXPIRED = "expired"


class TransactionStatus(Model):
    """A venue's answer about one signature; `execution` is set when it landed."""

    signature: str
    state: TransactionState
    execution: Execution | None = None
    error: str | None = None
    slipped: bool = False
    """Rejected because the pool paid less than the swap's `min_amount_out`."""


class Listing(Model):
    """A pool a venue opened for a new pair after it started, as its chain records it.

    `price` is in `quote_token` per `token`; `liquidity` is the pool's `quote_token` side
    (its `token` side is `liquidity / price`).
    """

    dex: Dex
    token: str
    quote_token: str
    price: Amount
    liquidity: Amount
    pool: str
    """The pool's address."""
    listed_at: datetime


@dataclass(frozen=True)
class Reserves:
    """A pool's reserves as its last swap left them, as the chain keeps them for every engine.

    `base` and `quote` are in the pool's base and quote tokens; `at` is when the swap settled,
    in seconds on the clock the engines share (the Unix epoch's). `swaps` counts the swaps the
    pool has settled, this one included: of two readings, the one with more is the newer,
    whatever the engines' clocks say.
    """

    base: Decimal
    quote: Decimal
    at: float
    swaps: int = 1
