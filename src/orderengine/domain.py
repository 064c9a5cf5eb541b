"""The engine's vocabulary: orders, their statuses and transitions, and every kind of event.

Values are frozen pydantic models (see `model.py`): amounts are exact decimals, field names
camelCase on the wire. Each event kind has its own model, so a misspelt or renamed wire field
is a type error, not a silent change of the contract.
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Literal, TypedDict
from uuid import UUID

from pydantic import Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from orderengine.model import Amount, Model
from orderengine.tokens import TOKENS, token_named
from orderengine.transaction import Instruction
from orderengine.venues.values import Dex, Execution, Quote

MAX_SLIPPAGE_BPS = 5_000
OrderType = Literal["market"]
"""The order types the engine executes; limit and sniper orders extend this."""
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
        """The one place that says which statuses end an order."""
        return self in (OrderStatus.CONFIRMED, OrderStatus.FAILED)

    @property
    def cancellable(self) -> bool:
        """Whether a client's cancel may still end the order: nothing has been sent.

        A `submitted` order's swap may land whatever happens next, so it is not.
        """
        return self in (OrderStatus.PENDING, OrderStatus.ROUTING, OrderStatus.BUILDING)


TRANSITIONS: dict[OrderStatus, frozenset[OrderStatus]] = {
    OrderStatus.PENDING: frozenset({OrderStatus.ROUTING, OrderStatus.FAILED}),
    OrderStatus.ROUTING: frozenset({OrderStatus.BUILDING, OrderStatus.PENDING, OrderStatus.FAILED}),
    OrderStatus.BUILDING: frozenset(
        {OrderStatus.SUBMITTED, OrderStatus.PENDING, OrderStatus.FAILED}
    ),
    OrderStatus.SUBMITTED: frozenset(
        {OrderStatus.CONFIRMED, OrderStatus.PENDING, OrderStatus.FAILED}
    ),
    OrderStatus.CONFIRMED: frozenset(),
    OrderStatus.FAILED: frozenset(),
}
"""Every allowed status change; the repository refuses any other."""


def unfinished_statuses() -> list[OrderStatus]:
    """Every status an order can still leave."""
    return [status for status in OrderStatus if not status.terminal]


def cancellable_statuses() -> list[OrderStatus]:
    """Every status a client's cancel may end an order in."""
    return [status for status in OrderStatus if status.cancellable]


def decimal_places(amount: Decimal) -> int:
    """The decimal places `amount` needs, trailing zeros aside, counted exactly.

    `Decimal.normalize` would round to the context's 28 digits first.
    """
    _, digits, exponent = amount.as_tuple()
    assert isinstance(exponent, int), "only finite amounts reach here"
    trailing_zeros = len(digits) - len("".join(map(str, digits)).rstrip("0"))
    return max(0, -(exponent + trailing_zeros))


DECIMAL_TEXT = re.compile(r"-?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
"""An amount sent as a string: a JSON number's digits, ASCII only."""
MAX_AMOUNTS = "max_amounts"
"""The validation context's key for each token's largest order (`Settings.max_amounts`)."""


class QuoteRequest(Model):
    """What a quote needs: the token sold, the token bought, how much; what makes a 422.

    Every order is one, plus its type and slippage (`OrderRequest`), so a quote's parameters
    and an order's fields are refused for the same reasons. Validated with a context
    `{MAX_AMOUNTS: {symbol: amount}}`, those limits replace the tokens' own.
    """

    token_in: str = Field(min_length=1, max_length=16)
    token_out: str = Field(min_length=1, max_length=16)
    amount_in: Annotated[Decimal, Field(gt=0, allow_inf_nan=False, max_digits=30)]

    @field_validator("token_in", "token_out")
    @classmethod
    def known_token(cls, symbol: str) -> str:
        token = token_named(symbol)
        if token is None:
            raise ValueError(f"unknown token {symbol!r}; known: {', '.join(TOKENS)}")
        return token.symbol

    @field_validator("amount_in", mode="before")
    @classmethod
    def plain_decimal_text(cls, value: object) -> object:
        """A number, or a string of ASCII digits as JSON writes a number.

        `Decimal` alone would also read "1_000", " 1 ", full-width or Arabic-Indic digits.
        """
        if isinstance(value, bool):
            raise ValueError("amountIn must be a decimal string or number")
        if isinstance(value, str) and not DECIMAL_TEXT.fullmatch(value):
            raise PydanticCustomError(
                "decimal_parsing", 'amountIn must be a decimal number in ASCII digits, like "1.5"'
            )
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
        if token and decimal_places(amount) > token.decimals:
            raise ValueError(f"more than {token.decimals} decimal places for {token.symbol}")
        return amount

    @field_validator("amount_in")
    @classmethod
    def within_max_amount(cls, amount: Decimal, info: ValidationInfo) -> Decimal:
        """No more than one order may sell: the token's own limit, or the context's."""
        token = TOKENS.get(info.data.get("token_in", ""))
        if token is None:
            return amount
        limits = (info.context or {}).get(MAX_AMOUNTS) or {}
        maximum = limits.get(token.symbol, token.max_amount)
        if amount > maximum:
            raise PydanticCustomError(
                "amount_too_large",
                "more than {maximum} {token}, the most one order may sell",
                {"maximum": format(maximum, "f"), "token": token.symbol},
            )
        return amount


class OrderRequest(QuoteRequest):
    """A client's order as submitted: a quote's fields (validated as one), type, slippage.

    Validation here is what makes a 422. Fields validate in declaration order, the inherited
    ones first (`tokenIn`, `tokenOut`, `amountIn`, then `type`, `slippageBps`).
    """

    type: OrderType = Field(
        description="Only market orders exist so far; limit and sniper orders extend this."
    )
    slippage_bps: int = Field(default=50, ge=1, le=MAX_SLIPPAGE_BPS, strict=True)

    @field_validator("type", mode="before")
    @classmethod
    def supported_type(cls, value: object) -> object:
        if value in FUTURE_ORDER_TYPES:
            raise ValueError(f"{value} orders are not supported yet; only market orders are")
        if value != "market":
            raise ValueError(f"unknown order type {value!r}; the supported type is 'market'")
        return value


class NewOrder(Model):
    """An order to commit: the request, and its idempotency key with the body's digest."""

    request: OrderRequest
    idempotency_key: str | None = None
    digest: str | None = None


class Order(Model):
    """An order as stored: its request, where it stands, and its result once it has one."""

    order_id: UUID
    type: OrderType
    token_in: str
    token_out: str
    amount_in: Amount
    slippage_bps: int
    status: OrderStatus
    attempt: int
    last_seq: int = Field(exclude=True)
    """The seq of the order's latest event: a status change names it (compare-and-set)."""
    dex: Dex | None = None
    tx_hash: str | None = None
    tx_expires_at: datetime | None = None
    executed_price: Amount | None = None
    amount_out: Amount | None = None
    error: str | None = None
    next_attempt_at: datetime | None = None
    created_at: datetime
    updated_at: datetime


class OrderEvent(Model):
    """One status change of one order; `seq` runs 1, 2, 3 … per order without gaps.

    `details` is the stored JSON of the event's kind (one of the models below), read back
    as it was written.
    """

    order_id: UUID
    seq: int
    status: OrderStatus
    attempt: int
    at: datetime
    details: dict[str, Any] = Field(default_factory=dict)

    def wire(self) -> dict[str, Any]:
        """The event as a socket message: its fields with the details of its status beside."""
        return {**self.model_dump(mode="json", by_alias=True, exclude={"details"}), **self.details}


# ---- event kinds: the details each status change carries on the wire ----------------------


class EventDetails(Model):
    """Base of every event kind; unset optional fields are left off the wire."""

    def stored(self) -> dict[str, Any]:
        """The details as they are stored and sent: JSON values, camelCase, no nulls."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class RoutingDecided(EventDetails):
    """`routing`: every venue's quote, the one chosen, and why."""

    dex: Dex
    reason: str
    quotes: tuple[Quote, ...]
    unavailable: dict[str, str]


class RoutingFailed(EventDetails):
    """`routing` with no venue able to quote: the attempt is over."""

    error: str
    unavailable: dict[str, str]


class BuiltTransaction(Model):
    """What a built transaction shows: its signature, its bound and its steps."""

    signature: str
    min_amount_out: Amount
    instructions: tuple[Instruction, ...]


class Building(EventDetails):
    """`building`: the transaction about to be sent."""

    transaction: BuiltTransaction


class Submitted(EventDetails):
    """`submitted`: the signature is committed before the swap is sent.

    Until `expires_at` the swap may still land; after it, never.
    """

    tx_hash: str
    dex: Dex
    expires_at: datetime


class Confirmed(EventDetails, Execution):
    """`confirmed`: the swap landed, with the venue's result (the `Execution`'s fields)."""

    reconciled: bool | None = None

    @classmethod
    def of(cls, execution: Execution, *, reconciled: bool = False) -> Confirmed:
        """The confirmation of `execution`; `reconciled` when learnt by asking the venue."""
        return cls(**execution.model_dump(), reconciled=reconciled or None)


class RetryScheduled(EventDetails):
    """`pending` again after a failed attempt: why, and the delay before the next one."""

    error: str
    retry_in_ms: int
    reconciled: bool | None = None


class Failed(EventDetails):
    """`failed`: terminal, with the reason kept for post-mortems."""

    error: str
    reconciled: bool | None = None


CANCELLED_ERROR = "cancelled by the client before its swap was sent"


class Cancelled(EventDetails):
    """`failed` by the client's cancel, while no swap of the order could land.

    Committed before the attempt's swap was sent; an earlier attempt's swap, if any, was
    rejected or expired.
    """

    error: str = CANCELLED_ERROR
    cancelled: Literal[True] = True


class Recovered(EventDetails):
    """`pending` again for an order a crash interrupted before its swap was sent."""

    recovered: str


class TransitionFields(TypedDict, total=False):
    """What a status change may set on the order's row besides its status.

    `retry_after_s` sets when the next attempt is due; every other change clears it.
    `release` gives up the engine's lease on the order with the change.
    """

    attempt: int
    error: str
    dex: Dex
    tx_hash: str
    tx_expires_at: datetime
    execution: Execution
    retry_after_s: float
    release: bool
