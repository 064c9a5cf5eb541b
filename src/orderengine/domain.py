"""The engine's vocabulary: orders, their statuses and transitions, quotes and executions.

Values are frozen pydantic models. Amounts and prices are `Decimal`, never binary floats, and
serialise to decimal strings; field names are camelCase on the wire.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pydantic.alias_generators import to_camel

from orderengine.tokens import TOKENS

MAX_SLIPPAGE_BPS = 5_000
FUTURE_ORDER_TYPES = ("limit", "sniper")


class OrderStatus(StrEnum):
    """Where an order is in its life; `confirmed` and `failed` are terminal and final."""

    PENDING = "pending"
    ROUTING = "routing"
    BUILDING = "building"
    SUBMITTED = "submitted"
    CONFIRMED = "confirmed"
    FAILED = "failed"

    @property
    def terminal(self) -> bool:
        return self in (OrderStatus.CONFIRMED, OrderStatus.FAILED)


S = OrderStatus

TRANSITIONS: dict[OrderStatus, frozenset[OrderStatus]] = {
    S.PENDING: frozenset({S.ROUTING, S.FAILED}),
    S.ROUTING: frozenset({S.BUILDING, S.PENDING, S.FAILED}),
    S.BUILDING: frozenset({S.SUBMITTED, S.PENDING, S.FAILED}),
    S.SUBMITTED: frozenset({S.CONFIRMED, S.PENDING, S.FAILED}),
    S.CONFIRMED: frozenset(),
    S.FAILED: frozenset(),
}
"""Every allowed status change; the repository refuses any other."""


def sources_of(target: OrderStatus) -> list[OrderStatus]:
    """The statuses from which an order may move to `target`."""
    return [source for source, targets in TRANSITIONS.items() if target in targets]


class Model(BaseModel):
    """Base of every value: immutable, camelCase on the wire, snake_case in Python."""

    model_config = ConfigDict(
        frozen=True, alias_generator=to_camel, populate_by_name=True, extra="forbid"
    )


Amount = Annotated[Decimal, Field(allow_inf_nan=False, max_digits=38)]


class OrderRequest(Model):
    """A client's order as submitted; validation here is what makes a 422."""

    type: Literal["market"] = Field(
        description="Only market orders exist so far; limit and sniper orders extend this."
    )
    token_in: str = Field(min_length=1, max_length=16)
    token_out: str = Field(min_length=1, max_length=16)
    amount_in: Annotated[Decimal, Field(gt=0, allow_inf_nan=False, max_digits=30)]
    slippage_bps: int = Field(default=50, ge=1, le=MAX_SLIPPAGE_BPS, strict=True)

    @field_validator("type", mode="before")
    @classmethod
    def supported_type(cls, value: object) -> object:
        if value in FUTURE_ORDER_TYPES:
            raise ValueError(f"{value} orders are not supported yet; only market orders are")
        if value != "market":
            raise ValueError(f"unknown order type {value!r}; the supported type is 'market'")
        return value

    @field_validator("token_in", "token_out")
    @classmethod
    def known_token(cls, symbol: str) -> str:
        token = symbol.upper()
        if token not in TOKENS:
            raise ValueError(f"unknown token {symbol!r}; known: {', '.join(TOKENS)}")
        return token

    @field_validator("amount_in", mode="before")
    @classmethod
    def no_booleans(cls, value: object) -> object:
        if isinstance(value, bool):
            raise ValueError("amountIn must be a decimal string or number")
        return value

    @field_validator("token_out")
    @classmethod
    def differs_from_token_in(cls, symbol: str, info: ValidationInfo) -> str:
        if symbol == info.data.get("token_in"):
            raise ValueError("tokenOut must differ from tokenIn")
        return symbol

    @field_validator("amount_in")
    @classmethod
    def within_token_decimals(cls, amount: Decimal, info: ValidationInfo) -> Decimal:
        token = TOKENS.get(info.data.get("token_in", ""))
        exponent = amount.normalize().as_tuple().exponent
        if token and isinstance(exponent, int) and -exponent > token.decimals:
            raise ValueError(f"more than {token.decimals} decimal places for {token.symbol}")
        return amount


class NewOrder(Model):
    """An order to commit: the request, and its idempotency key with the body's digest."""

    request: OrderRequest
    idempotency_key: str | None = None
    digest: str | None = None


class Quote(Model):
    """What a venue offers for a swap: output net of its fee and of the pool's price impact."""

    dex: str
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
    """A swap that landed on a venue, as the venue's ledger records it."""

    dex: str
    tx_hash: str
    amount_in: Amount
    amount_out: Amount
    executed_price: Amount
    fee: Amount


class Order(Model):
    """An order as stored: its request, where it stands, and its result once it has one."""

    order_id: UUID
    type: str
    token_in: str
    token_out: str
    amount_in: Amount
    slippage_bps: int
    status: OrderStatus
    attempt: int
    dex: str | None = None
    tx_hash: str | None = None
    executed_price: Amount | None = None
    amount_out: Amount | None = None
    error: str | None = None
    created_at: datetime
    updated_at: datetime


class OrderEvent(Model):
    """One status change of one order; `seq` runs 1, 2, 3 … per order without gaps."""

    order_id: UUID
    seq: int
    status: OrderStatus
    attempt: int
    at: datetime
    details: dict[str, Any] = Field(default_factory=dict)

    def wire(self) -> dict[str, Any]:
        """The event as a socket message: its fields with the details of its status beside."""
        return {**self.model_dump(mode="json", by_alias=True, exclude={"details"}), **self.details}


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
