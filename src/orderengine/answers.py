"""What the API answers, as models: the documents' schemas are generated from them.

The HTTP handlers and the streams build these and dump them (`wire()`), so what is sent and
what `/api/openapi.json` and `/api/asyncapi.json` describe are the same models. Models the
answers share with the rest of the engine stay where they are: `Order` (`domain.py`),
`QuotePreview` (`wire.py`), `Catalog` (`listings.py`), `Listing` (`venues/values.py`).

An event is sent as `OrderEvent.wire()` builds it: its core fields with its kind's details
beside them. One model per kind (`EVENT_MESSAGES`) describes that message; an event answered
over HTTP is passed through as it is, and only described as one of them (`EventMessage`).
"""

from __future__ import annotations

import operator
from collections.abc import Iterable
from datetime import datetime
from functools import reduce
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import Field, GetJsonSchemaHandler, JsonValue, TypeAdapter
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from orderengine.domain import (
    Awaited,
    Building,
    Cancelled,
    Confirmed,
    Expired,
    Failed,
    Order,
    OrderEvent,
    OrderStatus,
    Recovered,
    RetryScheduled,
    RoutingDecided,
    RoutingFailed,
    Submitted,
    Waiting,
)
from orderengine.model import Amount, Model


class Answer(Model):
    """An answer's body: `wire()` is the JSON the client receives."""

    def wire(self) -> dict[str, Any]:
        """JSON values, camelCase."""
        return self.model_dump(mode="json", by_alias=True)

    def json_text(self) -> str:
        """`wire()` as JSON text, written by pydantic's serializer in one step."""
        return self.model_dump_json(by_alias=True)


class ErrorDetail(Model):
    """What went wrong: a stable `code`, a sentence, and what more there is to say."""

    code: str = Field(description="Stable, snake_case: what a client branches on.")
    message: str = Field(description="For people; it may change between versions.")
    details: JsonValue = Field(
        description=(
            "null, or more about the error: for a 422, each bad field, why, and a `type`; "
            "for a 409 or a 500, the order or the venue concerned."
        )
    )


class ErrorAnswer(Answer):
    """The one shape every error takes, over HTTP and over a socket."""

    error: ErrorDetail


class FieldReason(Model):
    """One reason a 422 gives: the field (by its wire name), why, and the kind of error."""

    field: str | None
    message: str
    type: str


class _AcceptedOrder(Answer):
    """What every accepted order's answer starts with."""

    order_id: UUID
    status: Literal[OrderStatus.PENDING]
    ws: str = Field(description="The order's stream: open it as a WebSocket.")
    type: str
    token_in: str
    token_out: str
    amount_in: Amount
    slippage_bps: int


class AcceptedMarketOrder(_AcceptedOrder):
    """The answer to an accepted market order; the same each time it is asked for again."""

    type: Literal["market"]
    created_at: datetime


class AcceptedWaitingOrder(_AcceptedOrder):
    """The answer to an accepted limit or sniper order: also its limit, expiry and wait."""

    type: Literal["limit", "sniper"]
    limit_price: Amount | None
    expires_at: datetime | None
    waiting: Awaited | None = Field(
        description="What it waits for; null for a sniper whose pair is listed already: it "
        "is due (one with a limit goes back to waiting for its price if the first quote is "
        "under it)."
    )
    created_at: datetime


AcceptedOrder = Annotated[AcceptedMarketOrder | AcceptedWaitingOrder, Field(discriminator="type")]
"""The answer to an accepted order (also the socket's first message when the order came on
it): which fields it has depends on the order's `type`."""


class EventCore(Model):
    """The fields every event has; its kind's details come beside them."""

    order_id: UUID
    seq: int = Field(description="1, 2, 3 … per order, without gaps: resume with `since=`.")
    status: OrderStatus
    attempt: int
    at: datetime


class PlainEvent(EventCore):
    """An event with nothing beyond the core fields: the first of an order due at once.

    The engine writes every later event with its kind's details; the store takes an event
    without them for any status, and sends it as it was written.
    """


class WaitingEvent(Waiting, EventCore):
    """`pending` while the order waits: for its price (then with `bestPrice`), or a listing."""

    status: Literal[OrderStatus.PENDING]


class RetryScheduledEvent(RetryScheduled, EventCore):
    """`pending` again after a failed attempt, with the delay before the next one."""

    status: Literal[OrderStatus.PENDING]


class RecoveredEvent(Recovered, EventCore):
    """`pending` again: the attempt was put back before its swap was sent (`Recovered`)."""

    status: Literal[OrderStatus.PENDING]


class RoutingDecidedEvent(RoutingDecided, EventCore):
    """`routing`: every venue's quote, the one chosen, and why."""

    status: Literal[OrderStatus.ROUTING]


class RoutingFailedEvent(RoutingFailed, EventCore):
    """`routing` with no venue able to quote: the attempt is over."""

    status: Literal[OrderStatus.ROUTING]


class BuildingEvent(Building, EventCore):
    """`building`: the signed transaction about to be sent."""

    status: Literal[OrderStatus.BUILDING]


class SubmittedEvent(Submitted, EventCore):
    """`submitted`: committed before the swap is sent; it may land until `expiresAt`."""

    status: Literal[OrderStatus.SUBMITTED]


class ConfirmedEvent(Confirmed, EventCore):
    """`confirmed`: the swap landed. Terminal."""

    status: Literal[OrderStatus.CONFIRMED]


class FailedEvent(Failed, EventCore):
    """`failed`, with the reason. Terminal."""

    status: Literal[OrderStatus.FAILED]


class CancelledEvent(Cancelled, EventCore):
    """`failed` by the client's cancel, before any swap of the order was sent. Terminal."""

    status: Literal[OrderStatus.FAILED]


class ExpiredEvent(Expired, EventCore):
    """`failed` because the order's expiry came before its swap was sent. Terminal."""

    status: Literal[OrderStatus.FAILED]


EVENT_MESSAGES: tuple[type[EventCore], ...] = (
    PlainEvent,
    WaitingEvent,
    RetryScheduledEvent,
    RecoveredEvent,
    RoutingDecidedEvent,
    RoutingFailedEvent,
    BuildingEvent,
    SubmittedEvent,
    ConfirmedEvent,
    FailedEvent,
    CancelledEvent,
    ExpiredEvent,
)
"""Every event as it is sent: one model per kind (`domain.py`), and the plain event."""

ANY_EVENT: TypeAdapter[Any] = TypeAdapter(reduce(operator.or_, EVENT_MESSAGES))
"""One of `EVENT_MESSAGES`: which one, each message's own fields say."""


class _DescribedAsAnEvent:
    """An event passed through as `OrderEvent.wire()` built it, described as `ANY_EVENT`.

    Checking an event already stored against every kind on each answer would cost a
    validation per event, and a 500 for an event of a kind added later but not here; the
    documents' tests check the events the suite receives instead.
    """

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return handler(ANY_EVENT.core_schema)


EventMessage = Annotated[dict[str, Any], _DescribedAsAnEvent()]
"""An event as `OrderEvent.wire()` builds it."""


class OrderWithEvents(Order, Answer):
    """An order, as `GET /api/orders/{order_id}` shows it, with every event it has had."""

    events: tuple[EventMessage, ...]

    @classmethod
    def of(cls, order: Order, events: Iterable[OrderEvent]) -> OrderWithEvents:
        return cls(**dict(order), events=tuple(event.wire() for event in events))


class OrdersPage(Answer):
    """A page of orders, newest first; `nextCursor` asks for the next one (null: none)."""

    orders: tuple[Order, ...]
    next_cursor: str | None = Field(
        description="The `cursor` of the next page, as a decimal string; null on the last."
    )


class Workers(Model):
    """The engine's workers: how many run, of how many it was started with."""

    alive: int
    configured: int


HealthStatus = Literal["ok", "degraded", "stopping"]


class Health(Answer):
    """The engine's health: 200 `ok`, or 503 `degraded` (a worker is down) or `stopping`.

    `stopping` from the moment the engine refuses orders to stop (SIGTERM or SIGINT).
    """

    status: HealthStatus
    database: Literal["ok"] = "ok"
    workers: Workers
    backlog: int = Field(
        description=(
            "Accepted orders waiting for a worker or a retry; not those a worker holds, "
            "waiting for a rate token or executing."
        )
    )
    oldest_unfinished_age_s: float | None = Field(
        description="Seconds since the order due longest, not yet confirmed or failed, became "
        "due: its acceptance, or for an order that waited for its price or a listing, its "
        "waking (orders still waiting aside); null when there is none. One that keeps growing "
        "means orders are stuck, whatever the workers say."
    )


class StreamToken(Answer):
    """A token for a socket to act as the caller's key (`POST /api/stream-tokens`).

    A browser cannot send a header on a socket: it opens `ws`, which carries the token.
    """

    token: str
    expires_at: datetime
    ws: str


class HealthWithoutDatabase(Answer):
    """The engine's health when the database is out of reach: 503."""

    status: Literal["degraded"] = "degraded"
    database: Literal["unavailable"] = "unavailable"
    workers: Workers
