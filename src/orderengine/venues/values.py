"""What venues and the engine exchange: quotes, executions and the fate of a signature."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from orderengine.model import Amount, Model

Dex = Literal["raydium", "meteora"]
"""The venues the router compares."""


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
    fee: Amount


class TransactionState(StrEnum):
    """What a venue knows of a signature.

    Only `landed`, `rejected` and `dropped` are definite; `pending` means ask again later.
    A dropped signature never landed and never will (its blockhash has expired).
    """

    LANDED = "landed"
    REJECTED = "rejected"
    DROPPED = "dropped"
    PENDING = "pending"


class TransactionStatus(Model):
    """A venue's answer about one signature; `execution` is set when it landed."""

    signature: str
    state: TransactionState
    execution: Execution | None = None
    error: str | None = None
