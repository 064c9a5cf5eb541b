"""The WebSocket API as an AsyncAPI 3.0 document, its message schemas generated from models.

Three channels share the execute route, one for each way in (see `stream.py`): following a
known order, sending the order as a socket's first message, and a POST that upgrades. Each
message is the model it is built from: the order as `OrderRequest` reads it, the accepted
order and the error object as `answers.py` builds them, and one message per event kind as
`OrderEvent.wire()` sends it (`answers.EVENT_MESSAGES`). A fourth channel is the feed of
every order (`feed.py`): the same events, each with its global `position`. The document
describes the engine: it receives the order and sends everything else.
"""

from __future__ import annotations

from importlib.metadata import version
from typing import Any
from uuid import UUID

from pydantic import ConfigDict, Field, create_model
from pydantic.json_schema import JsonSchemaValue

from orderengine.answers import EVENT_MESSAGES, AcceptedOrder, ErrorAnswer, EventCore
from orderengine.domain import OrderRequest
from orderengine.model import Model
from orderengine.openapi import REF, SchemaKey, parameter_schema, schemas
from orderengine.wire import EXECUTE, FEED, INT32_MAX, INT64_MAX

CLOSE_CODES = {
    1000: "After the order's terminal event (at once for a finished order resumed past its "
    "last event).",
    1001: "The server is shutting down; reconnect, to another engine if need be.",
    1002: "The client sent a frame not masked, or a close code no endpoint may send (RFC 6455).",
    1007: "The client sent a text message, or a close reason, that is not UTF-8 (RFC 6455).",
    1008: "The first message was refused (not a valid order, none within "
    "`ORDERENGINE_WS_FIRST_MESSAGE_TIMEOUT_S`, or not allowed), or the key the socket was "
    "opened with (or its stream token was made for) was revoked; the error object is sent "
    "first. Also a client that sent more than 100 frames a second after a burst of 600, or "
    "took longer than `ORDERENGINE_WS_HEARTBEAT_S` to send a frame it had begun.",
    1009: "A message larger than `ORDERENGINE_MAX_BODY_BYTES`.",
    1013: "The engine cannot serve now: the database is out of reach (for a first message, "
    "also a full queue, a key over its rate, or a shutdown). The error object is sent first; "
    "try again later.",
    4000: "The client stopped reading and more than `ORDERENGINE_WS_BUFFER` events waited for "
    "it. The close reason names the `since=` to resume from.",
}
"""How a socket on the execute route ends, and when."""
FEED_CLOSE_CODES = {
    1001: CLOSE_CODES[1001],
    1002: CLOSE_CODES[1002],
    1007: CLOSE_CODES[1007],
    1008: "The key the feed was opened with (or its stream token was made for) was revoked; "
    "the error object is sent first. Also a client that sent more than 100 frames a second "
    "after a burst of 600, or took longer than `ORDERENGINE_WS_HEARTBEAT_S` to send a frame "
    "it had begun.",
    1009: "A message larger than `ORDERENGINE_MAX_BODY_BYTES`; what the client sends is "
    "otherwise ignored.",
    1013: "The store could not be read. The error object is sent first; reconnect with "
    "`after=` the last position received.",
}
"""How the feed ends: it runs until the client leaves, or one of these."""


class SocketQuery(Model):
    """A socket's query parameters; any other is ignored, as a proxy or a page may add some."""

    model_config = ConfigDict(extra="ignore")


class FollowQuery(SocketQuery):
    """The order to follow, and where to resume."""

    order_id: UUID = Field(description="The order's id.")
    since: int = Field(
        0, ge=0, le=INT32_MAX, description="Send only the events after this seq (ASCII digits)."
    )
    token: str | None = Field(
        None,
        description="A stream token, for a browser, which cannot send `Authorization` on a "
        "socket: the accepted order's `ws` URL carries one for its order while keys are in "
        "force.",
    )


class SubmitQuery(SocketQuery):
    """How a browser's socket authenticates."""

    token: str | None = Field(
        None, description="A stream token from `POST /api/stream-tokens`, while keys are in force."
    )


class FeedQuery(SocketQuery):
    """Where the feed resumes."""

    after: int | None = Field(
        None,
        ge=0,
        le=INT64_MAX,
        description="Send the events after this position (ASCII digits), at most the newest "
        "one given; without it, those committed from the moment the socket opens.",
    )
    token: str | None = Field(
        None, description="A stream token from `POST /api/stream-tokens`, while keys are in force."
    )


def _positioned(model: type[EventCore]) -> type[EventCore]:
    """`model`'s event as the feed sends it: with its position among every event."""
    return create_model(
        f"Feed{model.__name__}",
        __base__=model,
        __doc__=model.__doc__,
        position=(int, Field(description="Global and increasing: resume with `after=`.")),
    )


FEED_MESSAGES = tuple(_positioned(model) for model in EVENT_MESSAGES)
"""Every event as the feed sends it."""

ORDER = "order"
ACCEPTED = "acceptedOrder"
ERROR = "error"


def _event_key(model: type[Model]) -> str:
    kind = model.__name__.removesuffix("Event")
    return kind[:1].lower() + kind[1:]


EVENTS = {_event_key(model): model for model in EVENT_MESSAGES}
"""Each event message's key, by the kind it describes: `routingDecided`, `confirmed` …"""
FEED_EVENTS = {_event_key(model): model for model in FEED_MESSAGES}
"""Each feed message's key: `feedRoutingDecided`, `feedConfirmed` …"""


def _message(key: str, payload: JsonSchemaValue, summary: str) -> dict[str, Any]:
    name = key[:1].upper() + key[1:]
    return {"name": name, "title": name, "summary": summary, "payload": payload}


def document() -> dict[str, Any]:
    """The AsyncAPI document of the order streams and the feed of every order."""
    found, definitions = schemas(_schema_keys())
    queries: dict[type[Model], JsonSchemaValue] = {
        model: _inline(found[model, "validation"], definitions)
        for model in (FollowQuery, SubmitQuery, FeedQuery)
    }
    messages = _messages(found)
    described: dict[str, Any] = _without_openapi_discriminators(
        {
            "asyncapi": "3.0.0",
            "info": _info(),
            "defaultContentType": "application/json",
            "servers": {
                "engine": {
                    "host": "127.0.0.1:8080",
                    "protocol": "ws",
                    "description": "An engine as `make run` starts it; use the address you "
                    "reach yours at (`wss` behind TLS).",
                }
            },
            "channels": _channels(queries),
            "operations": _operations(),
            "components": {
                "schemas": definitions,
                "messages": messages,
                "securitySchemes": SECURITY_SCHEMES,
            },
        }
    )
    return described


def _schema_keys() -> list[SchemaKey]:
    return [
        (OrderRequest, "validation"),
        (AcceptedOrder, "serialization"),
        (ErrorAnswer, "serialization"),
        *((model, "serialization") for model in (*EVENT_MESSAGES, *FEED_MESSAGES)),
        *((model, "validation") for model in (FollowQuery, SubmitQuery, FeedQuery)),
    ]


def _inline(schema: JsonSchemaValue, definitions: dict[str, Any]) -> JsonSchemaValue:
    """A query model's schema in place (a binding's `query` is an object with properties)."""
    name = schema["$ref"].removeprefix(REF.format(model=""))
    inline: JsonSchemaValue = definitions.pop(name)
    properties = inline["properties"]
    return {**inline, "properties": {key: _parameter(value) for key, value in properties.items()}}


def _parameter(field: JsonSchemaValue) -> JsonSchemaValue:
    """A query parameter's schema, with its description."""
    described = parameter_schema(field)
    if "description" in field:
        described["description"] = field["description"]
    return described


def _messages(found: dict[SchemaKey, JsonSchemaValue]) -> dict[str, Any]:
    events = {
        key: _message(key, found[model, "serialization"], _summary(model))
        for key, model in {**EVENTS, **FEED_EVENTS}.items()
    }
    return {
        ORDER: _message(
            ORDER,
            found[OrderRequest, "validation"],
            "The order, as the socket's first message: what `POST /api/orders/execute` takes.",
        ),
        ACCEPTED: _message(
            ACCEPTED,
            found[AcceptedOrder, "serialization"],
            "The accepted order: the POST's answer, sent before the order's events.",
        ),
        **events,
        ERROR: _message(
            ERROR,
            found[ErrorAnswer, "serialization"],
            "Why the socket closes: sent before a close with 1008 or 1013.",
        ),
    }


def _summary(model: type[Model]) -> str:
    """The first line of the model's docstring."""
    return (model.__doc__ or "").strip().split("\n")[0]


def _refs(prefix: str, keys: list[str]) -> dict[str, Any]:
    return {key: {"$ref": f"{prefix}/{key}"} for key in keys}


STREAM = [*EVENTS, ERROR]
"""What a stream sends: every event, and the error object before a close with 1013."""
SECURITY_SCHEMES = {
    "bearerAuth": {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key, as `Authorization: Bearer KEY`, while the engine has keys "
        "in force; an engine without keys needs none.",
    },
    "streamToken": {
        "type": "httpApiKey",
        "in": "query",
        "name": "token",
        "description": "A stream token in the socket's URL, for a browser: the accepted "
        "order's `ws` carries one for its order, `POST /api/stream-tokens` mints one for a "
        "socket that submits.",
    },
}


def _close_table(codes: dict[int, str]) -> str:
    """The close codes as a Markdown table, for a channel's description."""
    rows = [f"| {code} | {meaning} |" for code, meaning in codes.items()]
    return "\n".join(["| close code | when |", "|---|---|", *rows])


def _channel(
    title: str, description: str, keys: list[str], method: str, query: JsonSchemaValue | None
) -> dict[str, Any]:
    """A channel on the execute route, which closes as `CLOSE_CODES` says."""
    binding: dict[str, Any] = {"method": method, "bindingVersion": "0.1.0"}
    if query is not None:
        binding["query"] = query
    return {
        "address": EXECUTE,
        "title": title,
        "description": f"{description}\n\n{_close_table(CLOSE_CODES)}",
        "messages": _refs("#/components/messages", keys),
        "bindings": {"ws": binding},
        "x-close-codes": {str(code): meaning for code, meaning in CLOSE_CODES.items()},
    }


def _channels(queries: dict[type[Model], JsonSchemaValue]) -> dict[str, Any]:
    return {
        "followOrder": _channel(
            "Follow an order",
            FOLLOW_DESCRIPTION,
            STREAM,
            "GET",
            queries[FollowQuery],
        ),
        "submitOnSocket": _channel(
            "Submit an order as the first message",
            SUBMIT_DESCRIPTION,
            [ORDER, ACCEPTED, *STREAM],
            "GET",
            queries[SubmitQuery],
        ),
        "submitByPost": _channel(
            "Submit an order with a POST that upgrades",
            POST_DESCRIPTION,
            [ACCEPTED, *STREAM],
            "POST",
            None,
        ),
        "eventFeed": {
            "address": FEED,
            "title": "Follow every order",
            "description": f"{FEED_DESCRIPTION}\n\n{_close_table(FEED_CLOSE_CODES)}",
            "messages": _refs("#/components/messages", [*FEED_EVENTS, ERROR]),
            "bindings": {
                "ws": {"method": "GET", "query": queries[FeedQuery], "bindingVersion": "0.1.0"}
            },
            "x-close-codes": {str(code): meaning for code, meaning in FEED_CLOSE_CODES.items()},
        },
    }


def _operation(
    action: str,
    channel: str,
    keys: list[str],
    summary: str,
    reply: list[str] | None = None,
    schemes: tuple[str, ...] = ("bearerAuth", "streamToken"),
) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "action": action,
        "channel": {"$ref": f"#/channels/{channel}"},
        "summary": summary,
        "messages": list(_refs(f"#/channels/{channel}/messages", keys).values()),
        "security": [{"$ref": f"#/components/securitySchemes/{name}"} for name in schemes],
    }
    if reply is not None:
        operation["reply"] = {
            "channel": {"$ref": f"#/channels/{channel}"},
            "messages": list(_refs(f"#/channels/{channel}/messages", reply).values()),
        }
    return operation


def _operations() -> dict[str, Any]:
    return {
        "sendOrderEvents": _operation(
            "send", "followOrder", STREAM, "Every event of the order after `since`, in order."
        ),
        "receiveOrder": _operation(
            "receive",
            "submitOnSocket",
            [ORDER],
            "The order, as the first message.",
            reply=[ACCEPTED, ERROR],
        ),
        "sendSubmittedOrder": _operation(
            "send",
            "submitOnSocket",
            [ACCEPTED, *STREAM],
            "The accepted order, then every event of it.",
        ),
        "sendPostedOrder": _operation(
            "send",
            "submitByPost",
            [ACCEPTED, *STREAM],
            "The accepted order, then every event of it.",
        ),
        "sendFeed": _operation(
            "send",
            "eventFeed",
            [*FEED_EVENTS, ERROR],
            "Every event the caller may see, in order, each with its position.",
            schemes=("bearerAuth",),
        ),
    }


def _info() -> dict[str, Any]:
    return {
        "title": "orderengine order streams",
        "version": version("orderengine"),
        "description": INFO_DESCRIPTION,
    }


def _without_openapi_discriminators(value: Any) -> Any:
    """`value` without pydantic's OpenAPI-style `discriminator` objects.

    AsyncAPI's schemas take a discriminator only as a property name that the schema itself
    defines; the `oneOf` of `const` types says the same without it.
    """
    if isinstance(value, dict):
        return {
            key: _without_openapi_discriminators(item)
            for key, item in value.items()
            if not (key == "discriminator" and isinstance(item, dict))
        }
    if isinstance(value, list):
        return [_without_openapi_discriminators(item) for item in value]
    return value


INFO_DESCRIPTION = """\
Every order streams its status over a WebSocket on `/api/orders/execute`: `pending`,
`routing`, `building`, `submitted`, then `confirmed` or `failed`, each change an event with
its `seq` (1, 2, 3 … per order), its `attempt`, its time and the details of its kind. There
are three ways in, one channel each; the HTTP side (and every HTTP error) is in the OpenAPI
document, `/api/openapi.json`. A client that stops reading falls behind alone; one that stops
answering pings is dropped. A socket opened from a web page must come from the engine's own
origin or an allowed one.
"""

FOLLOW_DESCRIPTION = """\
`GET /api/orders/execute?orderId=ID[&since=SEQ]`, upgraded to a WebSocket. The server sends
every stored event after `since` (0 by default), then each live one: every `seq` once and in
order, with no gap however late the socket opens. What the client sends is ignored.

Refused before the upgrade, with an HTTP answer in the error shape: 400 (an invalid handshake,
or `since` not ASCII digits), 401 (keys in force, and neither a key nor a stream token for the
order), 403 (a page of another site), 404 (no order of the caller's has this id), 405 (a GET
that does not upgrade), 429 (`too_many_sockets`: the key, or the tokens for that owner's
orders, hold as many sockets open on this engine as may be), 503."""

SUBMIT_DESCRIPTION = """\
`GET /api/orders/execute` (no `orderId`), upgraded to a WebSocket; the client sends the order
as its first message. The server answers with the accepted order (the POST's answer), then
streams its events as `followOrder` does. A refused first message gets the error object, then
a close with 1008 (`bad_request`, `invalid_order`, none in time, `forbidden`) or 1013
(`queue_full`, `rate_limited`, `shutting_down`, `database_unavailable`)."""

POST_DESCRIPTION = """\
`POST /api/orders/execute` with the order as its body and `Upgrade: websocket` (programs can;
browsers cannot). The body is read and validated first: an invalid order gets its HTTP error
(the OpenAPI document's `submitOrder`) and no upgrade. Then the order is committed, the
connection switches protocols, and the server sends the accepted order and streams its
events as `followOrder` does. `Idempotency-Key` works as on any POST. A key that holds as many
sockets open on this engine as a key may is refused `429 too_many_sockets`, and no order is
made; so is the `GET` of `submitOnSocket`, before the upgrade."""

FEED_DESCRIPTION = """\
`GET /api/events`, upgraded to a WebSocket: every event of every order the caller may see (its
own while keys are in force; every order without keys), in the order positions were given,
each with a global `position`. Reconnect with `?after=POSITION`, the last one received, to
resume with nothing missed; without `after`, the feed starts with the events committed from
the moment it opens. What the client sends is ignored.

Refused before the upgrade, with an HTTP answer in the error shape: 400 (`after` not ASCII
digits, or beyond the newest position: not one this feed gave), 401 (keys in force and no
key), 403 (a page of another site, or a stream token for one order), 426 `upgrade_required`
(a GET that does not upgrade; `Upgrade: websocket`), 429 (`too_many_sockets`), 503."""
