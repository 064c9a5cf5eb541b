"""The engine's vocabulary: orders, their statuses and transitions, and every kind of event.

Values are frozen pydantic models (see `model.py`): amounts are exact decimals, field names
camelCase on the wire. Each event kind has its own model, so a misspelt or renamed wire field
is a type error, not a silent change of the contract.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from functools import cached_property
from typing import Any, Literal, TypedDict
from uuid import UUID

import orjson
from pydantic import (
    AwareDatetime,
    Field,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from orderengine.model import Amount, Given, Model
from orderengine.tokens import SYMBOL, TOKENS, token_named
from orderengine.transaction import Instruction
from orderengine.venues.values import Dex, Execution, Quote

MAX_SLIPPAGE_BPS = 5_000
OrderType = Literal["market", "limit", "sniper"]
"""The order types the engine executes, on one lifecycle."""
ORDER_TYPES: tuple[OrderType, ...] = ("market", "limit", "sniper")
Awaited = Literal["price", "listing"]
"""What a `pending` order waits for before it is routed: its limit price, or a listing."""
DEFAULT_MAX_ORDER_TTL_S = 7 * 86_400


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
    OrderStatus.PENDING: frozenset({OrderStatus.PENDING, OrderStatus.ROUTING, OrderStatus.FAILED}),
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
"""Every allowed status change; the repository refuses any other.

`pending` to `pending` is a waiting order's news: the price it waits for moved, or it went
back to waiting.
"""


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


DECIMAL_TEXT = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
"""An amount sent as a string: a JSON number's grammar (no leading zero), ASCII only."""
SHOWN = 40
"""The most characters of a value, a field's or a parameter's name a client gave that a
reason quotes back."""
MAX_AMOUNTS = "max_amounts"
"""The validation context's key for each token's largest order (`Settings.max_amounts`)."""
MAX_ORDER_TTL_S = "max_order_ttl_s"
"""The validation context's key for how far ahead `expiresAt` may be (`Settings`)."""


def _known(symbol: str) -> str:
    token = token_named(symbol)
    if token is None:
        raise ValueError(f"unknown token {symbol!r}; known: {', '.join(TOKENS)}")
    return token.symbol


def plain_decimal_text(value: object, name: str) -> object:
    """A number, or a string of ASCII digits as JSON writes a number; `name` is refused.

    `Decimal` alone would also read "1_000", " 1 ", full-width or Arabic-Indic digits.
    """
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a decimal string or number")
    if isinstance(value, str) and not DECIMAL_TEXT.fullmatch(value):
        raise PydanticCustomError(
            "decimal_parsing",
            '{name} must be a decimal number in ASCII digits, like "1.5"',
            {"name": name},
        )
    return value


class QuoteRequest(Model):
    """What a quote needs: the token sold, the token bought, how much; what makes a 422.

    Every order is one, plus its type and slippage (`OrderRequest`), so a quote's parameters
    and an order's fields are refused for the same reasons. Validated with a context
    `{MAX_AMOUNTS: {symbol: amount}}`, those limits replace the tokens' own.
    """

    token_in: str = Field(min_length=1, max_length=16)
    token_out: str = Field(min_length=1, max_length=16)
    amount_in: Given

    @field_validator("token_in")
    @classmethod
    def known_token(cls, symbol: str) -> str:
        return _known(symbol)

    @field_validator("token_out")
    @classmethod
    def known_or_awaited_token(cls, symbol: str, info: ValidationInfo) -> str:
        """A token a venue lists; for a sniper order, also one it may list later."""
        if info.data.get("type") != "sniper":
            return _known(symbol)
        token = token_named(symbol)
        if token is not None:
            return token.symbol
        if not symbol.isascii() or not SYMBOL.fullmatch(symbol.upper()):
            raise ValueError("a sniper's tokenOut is 2 to 12 ASCII letters or digits")
        return symbol.upper()

    @field_validator("amount_in", mode="before")
    @classmethod
    def plain_decimal_text(cls, value: object) -> object:
        return plain_decimal_text(value, "amountIn")

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


class OrderKind(Model):
    """An order's first field: its type decides how the others are read."""

    type: OrderType = Field(description="market, limit or sniper")

    @field_validator("type", mode="before")
    @classmethod
    def supported_type(cls, value: object) -> object:
        if value not in ORDER_TYPES:
            shown = repr(value) if len(repr(value)) <= SHOWN else repr(value)[:SHOWN] + "…"
            raise ValueError(f"unknown order type {shown}; the types are {', '.join(ORDER_TYPES)}")
        return value


_BEYOND_MICROSECONDS = re.compile(r"(?<=:[0-9]{2}[.,][0-9]{6})[0-9]+")
"""The digits of a time's seconds past the sixth after the point."""


def _is_number(text: str) -> bool:
    try:
        Decimal(text)
    except InvalidOperation:
        return False
    return True


class OrderRequest(QuoteRequest, OrderKind):
    """A client's order as submitted: a quote's fields (validated as one), type, slippage.

    Validation here is what makes a 422. `type` validates first (`OrderKind` comes last among
    the bases, so its field comes first), so that a sniper's `tokenOut` may name a token no
    venue lists yet; then `tokenIn`, `tokenOut`, `amountIn`, `slippageBps`, `limitPrice` and
    `expiresAt`. A limit order needs `limitPrice`; a sniper may give one; a market order
    takes neither it nor `expiresAt`. Validated with a context `{MAX_ORDER_TTL_S: seconds}`,
    that bounds `expiresAt` instead of the default week.
    """

    slippage_bps: int = Field(default=50, ge=1, le=MAX_SLIPPAGE_BPS, strict=True)
    limit_price: Given | None = None
    expires_at: AwareDatetime | None = Field(
        None,
        description=(
            "When a limit or sniper order stops waiting: ISO 8601 with its time zone. A time "
            "finer than a microsecond is rounded up to the next one, so that the order never "
            "expires before the time given."
        ),
    )

    @model_validator(mode="before")
    @classmethod
    def limit_given(cls, data: object) -> object:
        """An order without `limitPrice` gives it as null, so that its type's rule checks it.

        (A default is validated under the field's Python name; a given value under its wire
        name, which a 422 shows.)
        """
        if isinstance(data, dict) and not {"limitPrice", "limit_price"} & data.keys():
            return {**data, "limitPrice": None}
        return data

    @field_validator("limit_price", mode="before")
    @classmethod
    def plain_limit_text(cls, value: object) -> object:
        return None if value is None else plain_decimal_text(value, "limitPrice")

    @field_validator("limit_price")
    @classmethod
    def limit_of_its_type(cls, limit: Decimal | None, info: ValidationInfo) -> Decimal | None:
        """A limit order needs one; a sniper may give one; a market order takes none."""
        kind = info.data.get("type")
        if kind == "limit" and limit is None:
            raise PydanticCustomError("missing_limit_price", "a limit order needs limitPrice")
        if kind == "market" and limit is not None:
            raise PydanticCustomError(
                "not_for_market", "a market order executes at once: it takes no limitPrice"
            )
        return limit

    @field_validator("expires_at", mode="wrap")
    @classmethod
    def iso_time(cls, value: object, handler: ValidatorFunctionWrapHandler) -> object:
        """An ISO 8601 string, as the API says: pydantic alone takes seconds since 1970 too.

        Finer than a microsecond, it is rounded up to the next one: a datetime holds no finer,
        and pydantic would cut the rest off, so that the order could expire before its time.
        """
        if value is None:
            return handler(value)
        if not isinstance(value, str) or _is_number(value):
            raise PydanticCustomError(
                "datetime_type", "expiresAt must be an ISO 8601 time with its time zone, as text"
            )
        finer = _BEYOND_MICROSECONDS.search(value)
        if finer is None:
            return handler(value)
        at: datetime = handler(value[: finer.start()] + value[finer.end() :])
        if not finer.group().strip("0"):
            return at
        try:
            return at + timedelta(microseconds=1)
        except OverflowError:
            raise PydanticCustomError(
                "too_far_ahead", "expiresAt is beyond the last time a date can hold"
            ) from None

    @field_validator("expires_at")
    @classmethod
    def within_order_ttl(cls, expires_at: datetime | None, info: ValidationInfo) -> datetime | None:
        """Ahead of now, and no further than the longest an order may wait; not for market.

        In UTC: the moment is the order's, whatever offset the client wrote it in, so that a
        resend written in another (`Idempotency-Key`) is the same order.
        """
        if expires_at is None:
            return None
        if info.data.get("type") == "market":
            raise PydanticCustomError(
                "not_for_market", "a market order executes at once: it takes no expiresAt"
            )
        now = datetime.now(UTC)
        if expires_at <= now:
            raise PydanticCustomError("expired", "expiresAt is in the past")
        max_ttl_s = (info.context or {}).get(MAX_ORDER_TTL_S) or DEFAULT_MAX_ORDER_TTL_S
        if expires_at > now + timedelta(seconds=max_ttl_s):
            raise PydanticCustomError(
                "too_far_ahead",
                "expiresAt is more than {seconds} seconds ahead, the longest an order may wait",
                {"seconds": int(max_ttl_s)},
            )
        return expires_at.astimezone(UTC)

    @property
    def waits(self) -> bool:
        """Whether the order may wait before it is routed, and so can expire."""
        return self.type != "market"


class NewOrder(Model):
    """An order to commit: the request, and its idempotency key with the body's digest."""

    request: OrderRequest
    idempotency_key: str | None = None
    digest: str | None = None
    awaits: Awaited | None = None
    """What it waits for before it is routed; None to be routed at once."""
    expires_at: datetime | None = None
    """When it ends `failed` if it has not been sent by then (the request's, or the default)."""
    owner: str | None = None
    """The name of the API key submitting it; None when no key is in force."""


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
    tx_last_valid_block_height: int | None = Field(default=None, exclude=True)
    """On a live cluster, the block height after which its swap can land no more."""
    tx_blockhash: str | None = Field(default=None, exclude=True)
    """On a live cluster, the blockhash its swap was signed on."""
    executed_price: Amount | None = None
    amount_out: Amount | None = None
    error: str | None = None
    next_attempt_at: datetime | None = None
    limit_price: Amount | None = None
    expires_at: datetime | None = None
    awaits: Awaited | None = Field(default=None, alias="waiting")
    """What the order waits for in `pending` (`waiting` on the wire): None when it is due."""
    best_price: Amount | None = None
    """The best net price its waiting events last reported (tokenOut per tokenIn)."""
    owner: str | None = Field(default=None, exclude=True)
    """The name of the API key that created it; None when no key was in force."""
    created_at: datetime
    updated_at: datetime

    def expired(self, now: datetime) -> bool:
        """Whether it may no longer be sent: its expiry has come, and nothing was sent."""
        return (
            self.expires_at is not None
            and self.expires_at <= now
            and self.status in (OrderStatus.PENDING, OrderStatus.ROUTING, OrderStatus.BUILDING)
        )


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

    @cached_property
    def message(self) -> str:
        """`wire()` as JSON text, written once however many sockets send it."""
        return orjson.dumps(self.wire()).decode()


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

    Until `expires_at` the swap may still land; after it, never. On a live cluster the
    expiry is the block height `last_valid_block_height`, and `expires_at` an estimate of
    when the chain reaches it.
    """

    tx_hash: str
    dex: Dex
    expires_at: datetime
    last_valid_block_height: int | None = None


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


class Waiting(EventDetails):
    """`pending` while the order waits: for its price, or for a venue to list its pair.

    The first event of a limit or sniper order, then news: the best net price moved, or the
    order went back to waiting (`reason` says why).
    """

    waiting: Awaited
    limit_price: Amount | None = None
    best_price: Amount | None = None
    token: str | None = None
    reason: str | None = None

    def stored(self) -> dict[str, Any]:
        """As every kind's, but a wait for the price always says the best one (null: unknown)."""
        stored = super().stored()
        if self.waiting == "price":
            stored.setdefault("bestPrice", None)
        return stored

    @classmethod
    def first(cls, order: Order) -> Waiting | None:
        """The first event's details of an order that waits; None for one that does not."""
        if order.awaits == "price":
            return cls(waiting="price", limit_price=order.limit_price, best_price=order.best_price)
        if order.awaits == "listing":
            return cls(waiting="listing", token=order.token_out)
        return None


EXPIRED_ERROR = "expired at {expires_at} before it could execute"
EXPIRY_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
"""How an expired order's error writes its expiry: UTC, microseconds, always."""


class Expired(EventDetails):
    """`failed` because the order's expiry came before its swap was sent."""

    error: str
    expired: Literal[True] = True

    @classmethod
    def of(cls, order: Order) -> Expired:
        assert order.expires_at is not None
        expires_at = order.expires_at.astimezone(UTC).strftime(EXPIRY_FORMAT)
        return cls(error=EXPIRED_ERROR.format(expires_at=expires_at))


class Recovered(EventDetails):
    """`pending` again: the attempt was put back before its swap was sent.

    Either a run was interrupted (a crash, a database outage) and the order is found in
    `routing` or `building`, or the engine stopped, or lost the order's lease, before sending.
    """

    recovered: str


class TransitionFields(TypedDict, total=False):
    """What a status change may set on the order's row besides its status.

    `retry_after_s` sets when the next attempt is due; every other change clears it.
    `awaits` puts the order back to waiting (every other change clears it), with the
    `best_price` its event reports.
    `release` gives up the engine's lease on the order with the change.
    """

    attempt: int
    error: str
    dex: Dex
    tx_hash: str
    tx_expires_at: datetime
    tx_last_valid_block_height: int | None
    tx_blockhash: str | None
    execution: Execution
    retry_after_s: float
    awaits: Awaited
    best_price: Decimal
    release: bool
