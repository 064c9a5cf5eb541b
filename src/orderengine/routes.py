"""The route table: every route the engine serves, what it takes and what it answers.

`app.py` registers the routes from `ROUTES`, and `openapi.py` describes them from it, so no
route is served undocumented. Each route names its handler, the models its request is read
as (body, query, path, headers) and every status it answers with: its own, those every route
may give (`COMMON`: the server refusing what is not valid HTTP or a WebSocket handshake, a
full connection cap, an internal error), and a 401 on every `/api/...` route but the API's
own description. The answers' models are the ones the handlers build them from
(`answers.py`). The sockets' GETs (an order's stream, the feed of every order) are in the
table too, as they are registered from it, but the AsyncAPI document (`asyncapi.py`)
describes them, not the OpenAPI one.

Part of the HTTP layer, as the composition root's table: only `app.py` imports it.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from uuid import UUID

from aiohttp import hdrs, web
from pydantic import ConfigDict, Field, JsonValue

from orderengine import api, asyncapi, console, docs, feed, listings, openapi, security, stream
from orderengine.answers import (
    AcceptedOrder,
    FieldReason,
    Health,
    HealthWithoutDatabase,
    OrdersPage,
    OrderWithEvents,
    StreamToken,
)
from orderengine.domain import OrderRequest, OrderStatus, QuoteRequest
from orderengine.errors import (
    AlreadyListed,
    BadRequest,
    BodyTooLarge,
    DatabaseUnavailable,
    Forbidden,
    ForeignHost,
    ForeignOrigin,
    IdempotencyConflict,
    InvalidListing,
    InvalidOrder,
    InvalidQuote,
    NotCancellable,
    OrderNotFound,
    QueueFull,
    RequestTimeout,
    ShuttingDown,
    TooManyRequests,
    TooManySockets,
    Unauthorized,
    UnknownParameter,
    UnsupportedMediaType,
)
from orderengine.listings import Catalog, ListingRequest
from orderengine.model import Model
from orderengine.server import MAX_HEADER_BYTES, MAX_HEADERS, MAX_URL_BYTES
from orderengine.venues.values import Listing
from orderengine.wire import (
    EXECUTE,
    FEED,
    INT64_MAX,
    LISTINGS_PATH,
    MAX_JSON_DEPTH,
    QuotePreview,
    deferred_continue,
    refuse_unknown_parameters,
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Method = Literal["GET", "POST", "DELETE", "OPTIONS"]

TOO_MANY_CONNECTIONS = "too_many_connections"
"""The code of the server's 503 at its connection cap (`server.py`)."""
INTERNAL_ERROR = "internal_error"
"""The code of every 500."""
METHOD_NOT_ALLOWED = "method_not_allowed"
"""The code of a 405 for a method a path does not take."""
NOT_FOUND = "not_found"
"""The code of a 404 for a path the engine does not serve (aiohttp's, in the error shape)."""


@dataclass(frozen=True)
class Reply:
    """One status a route answers with: its body (a model), or an error and its codes.

    `body` is what the answer's body is read as (a model, or any type pydantic describes), in
    each of `media_types`. `errors` are the error codes the answer may carry, in the one error
    shape; `details`, when given, is the type of their `details`. `headers` names answer
    headers (`openapi.HEADERS`).
    """

    status: int
    description: str
    body: Any = None
    media_types: tuple[str, ...] = ("application/json",)
    errors: tuple[str, ...] = ()
    details: Any = None
    headers: tuple[str, ...] = ()


def refused(
    status: int,
    description: str,
    *codes: str,
    details: Any = None,
    headers: tuple[str, ...] = (),
) -> Reply:
    """An error answer with `codes`, in the one error shape."""
    return Reply(status, description, errors=codes, details=details, headers=headers)


class OrderPath(Model):
    """The order a path names."""

    model_config = ConfigDict(alias_generator=None)

    order_id: UUID = Field(description="The order's id; a malformed one names no order (404).")


class OrdersQuery(Model):
    """A page of orders: which status, how many, and after which cursor."""

    status: OrderStatus | None = Field(None, description="Only orders in this status.")
    limit: int = Field(50, ge=1, le=api.MAX_PAGE, description="How many orders, newest first.")
    cursor: str | None = Field(
        None,
        pattern=r"^[0-9]{1,19}$",
        description=f"The `nextCursor` of the page before: ASCII digits, at most {INT64_MAX}.",
    )


class IdempotencyHeader(Model):
    """What makes a retried POST safe."""

    idempotency_key: str | None = Field(
        None,
        alias="Idempotency-Key",
        pattern=r"^[!-~]([ -~]{0,253}[!-~])?$",
        description=(
            "1 to 255 printable ASCII characters. The same key with the same body answers the "
            "same order (200); with another body, 409. Kept with the order, across restarts."
        ),
    )


FILE_NAMES: list[JsonValue] = [*sorted(docs.FILE_TYPES)]


class DocsQuery(Model):
    """The page, or a file it loads."""

    file: str | None = Field(
        None,
        json_schema_extra={"enum": FILE_NAMES},
        description="A file the page loads; without it, the page.",
    )


CONSOLE_FILE_NAMES: list[JsonValue] = [*sorted(console.FILES)]


class ConsoleFile(Model):
    """A file the console's page loads."""

    model_config = ConfigDict(alias_generator=None)

    file: str = Field(
        json_schema_extra={"enum": CONSOLE_FILE_NAMES},
        description="The file's name, as the page names it.",
    )


ORDER_ID_SEGMENT = "{order_id:(?!execute$)[^/]+}"
"""What an order's id matches in a path: any segment but `execute`, braces included. So
`/api/orders/execute` is only `POST`'s path, and another method on it is a 405 naming its
methods, not a look-up of an order called `execute`; and any other id that is no UUID
(`{…}` too, which aiohttp's default pattern leaves out) is `order_not_found`."""


@dataclass(frozen=True)
class Route:
    """A route: what `app.py` registers, and what `openapi.py` says of it.

    `examples` are bodies a client could send, by name; `query_example` the parameters of
    one request. The documents show them, Swagger UI fills them in, the Postman collection
    sends them, and schemathesis tries them first. `public` routes need no API key even
    while keys are in force. `socket` marks a WebSocket's GET, which the AsyncAPI document
    describes instead. `allow` is what the `Allow` of the route's 405 names.
    """

    method: Method
    path: str
    handler: Handler
    operation_id: str
    summary: str
    description: str
    tag: str
    replies: tuple[Reply, ...] = ()
    body: type[Model] | None = None
    query: type[Model] | None = None
    path_parameters: type[Model] | None = None
    headers: type[Model] | None = None
    examples: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    query_example: Mapping[str, str | int] = field(default_factory=dict)
    public: bool = False
    socket: bool = False
    allow: frozenset[str] = frozenset()

    def add_to(self, router: web.UrlDispatcher) -> None:
        """Register the route; a GET also answers HEAD, as aiohttp's `add_get` does.

        A socket's GET does not: a HEAD cannot upgrade, so it is refused with the path's
        other methods. A body is asked for (`Expect: 100-continue`) only as it is read
        (`wire.deferred_continue`).
        """
        handler = self.handler if self.socket else _known_parameters_only(self)
        expect = deferred_continue
        if self.method == "GET" and not self.socket:
            router.add_get(_pattern(self.path), handler, expect_handler=expect)
        else:
            router.add_route(self.method, _pattern(self.path), handler, expect_handler=expect)

    @property
    def parameters(self) -> frozenset[str]:
        """The query parameters the route takes, by their wire names."""
        if self.query is None:
            return frozenset()
        return frozenset(field.alias or name for name, field in self.query.model_fields.items())

    def answers(self) -> tuple[Reply, ...]:
        """Every status the route may answer with, its own and the shared ones, by status."""
        shared = (
            (*COMMON, UNKNOWN_PARAMETER)
            if self.public
            else (*COMMON, UNKNOWN_PARAMETER, UNAUTHORIZED)
        )
        by_status: dict[int, list[Reply]] = {}
        for reply in (*self.replies, *shared):
            by_status.setdefault(reply.status, []).append(reply)
        return tuple(_merged(by_status[status]) for status in sorted(by_status))


def _known_parameters_only(route: Route) -> Handler:
    """The route's handler, behind the refusal of any query parameter it does not take.

    Not a socket's: its handshake ignores other parameters, as a page or a proxy may add one.
    """
    handler, known = route.handler, route.parameters

    @functools.wraps(handler)
    async def checked(request: web.Request) -> web.StreamResponse:
        refuse_unknown_parameters(request, known)
        return await handler(request)

    return checked


def _pattern(path: str) -> str:
    """The path as aiohttp matches it."""
    return path.replace("{order_id}", ORDER_ID_SEGMENT)


def allowed_methods(routes: Iterable[Route]) -> frozenset[str]:
    """The methods a path takes, by its routes: a GET's path also takes HEAD.

    Not a socket's GET's path: a HEAD cannot open a socket. Not OPTIONS: only a CORS
    preflight is answered, and any other OPTIONS is refused.
    """
    taken = list(routes)
    methods: set[str] = {route.method for route in taken if route.method != "OPTIONS"}
    if any(route.method == "GET" and not route.socket for route in taken):
        methods.add("HEAD")
    return frozenset(methods)


def add_routes(router: web.UrlDispatcher) -> None:
    """Register every route, then the refusals of what no route takes.

    aiohttp's own refusals (a 405 for another method, a 404 for another path) come with its
    default expect handler, which asks for the body before refusing it. Registered here,
    after the routes so that they match only what no route does, they refuse from the
    headers alone (`wire.deferred_continue`).
    """
    for route in ROUTES:
        route.add_to(router)
    by_path: dict[str, list[Route]] = {}
    for route in ROUTES:
        by_path.setdefault(route.path, []).append(route)
    for path, routes in by_path.items():
        refuse = api.method_not_allowed(allowed_methods(routes))
        router.add_route(hdrs.METH_ANY, _pattern(path), refuse, expect_handler=deferred_continue)
    router.add_route(hdrs.METH_ANY, ANY_PATH, api.not_found, expect_handler=deferred_continue)


ANY_PATH = "/{path:.*}"
"""What the refusal of every path the engine does not serve matches."""


def _merged(replies: list[Reply]) -> Reply:
    """The replies of one status as one: every body and code, each description."""
    first = replies[0]
    if len(replies) == 1:
        return first
    return Reply(
        status=first.status,
        description=" ".join(reply.description for reply in replies),
        body=next((reply.body for reply in replies if reply.body is not None), None),
        media_types=tuple(dict.fromkeys(t for reply in replies for t in reply.media_types)),
        errors=tuple(dict.fromkeys(code for reply in replies for code in reply.errors)),
        details=next((reply.details for reply in replies if reply.details is not None), None),
        headers=tuple(dict.fromkeys(name for reply in replies for name in reply.headers)),
    )


FIELD_REASONS = tuple[FieldReason, ...]

COMMON = (
    refused(
        400,
        "The request is not valid HTTP/1.1, gives a query parameter, `Authorization` or "
        "`Idempotency-Key` more than once, or asks for a WebSocket with an invalid handshake.",
        BadRequest.code,
    ),
    refused(
        403,
        "A WebSocket asked for by a web page of another site: an `Origin` that is neither the "
        "engine's own nor allowed (`ORDERENGINE_ALLOWED_ORIGINS` or "
        "`ORDERENGINE_CORS_ORIGINS`). A program sends no `Origin`.",
        ForeignOrigin.code,
    ),
    refused(
        403,
        "No API key is in force and the engine listens on loopback, but the request's `Host` "
        "names another machine (a page reaching it through DNS rebinding, say): only "
        "`localhost`, a name under `.localhost` or a loopback address is answered.",
        ForeignHost.code,
    ),
    refused(414, f"The URL is longer than {MAX_URL_BYTES} bytes.", "uri_too_long"),
    refused(
        431,
        f"A header is longer than {MAX_HEADER_BYTES} bytes, or there are more than {MAX_HEADERS}.",
        "request_header_fields_too_large",
    ),
    refused(
        500,
        "An internal error: logged, never shown. A POST's answer may name in `details` the "
        "`orderId` of an order whose commit the engine could not confirm: look it up, or resend "
        "with the same `Idempotency-Key`.",
        INTERNAL_ERROR,
    ),
    refused(
        503,
        "Every connection the engine takes is busy; try again after `Retry-After`.",
        TOO_MANY_CONNECTIONS,
        headers=("Retry-After",),
    ),
)
"""What any route may answer: the server's own refusals and an internal error."""

UNKNOWN_PARAMETER = refused(
    422,
    "A query parameter the route does not take (a misspelled one, say): `details` names each "
    "(the first 20, by name), "
    "with the type `extra_forbidden`.",
    UnknownParameter.code,
    details=FIELD_REASONS,
)
"""What every HTTP route answers to a query parameter it does not take (`wire.py`)."""

UNAUTHORIZED = refused(
    401,
    "Keys are in force and the request has no key, or a wrong or revoked one.",
    Unauthorized.code,
    headers=("WWW-Authenticate",),
)

DATABASE_UNAVAILABLE = refused(
    503,
    "The database is out of reach; nothing was done. Try again after `Retry-After`.",
    DatabaseUnavailable.code,
    headers=("Retry-After",),
)

BODY_REFUSED = (
    refused(
        400,
        f"Unreadable JSON (`NaN`, a key given twice, nesting deeper than {MAX_JSON_DEPTH}; "
        "`details` says where), or a body not valid for its `Content-Encoding`.",
        BadRequest.code,
    ),
    refused(408, "The body did not arrive in time; the connection is closed.", RequestTimeout.code),
    refused(413, "The body is too large, compressed or once decompressed.", BodyTooLarge.code),
    refused(
        415,
        "The body is not `application/json` in UTF-8, or in a `Content-Encoding` other than "
        "gzip or deflate.",
        UnsupportedMediaType.code,
    ),
)
"""How a POST's body is refused before it is read as an order or a listing."""

ORDER_EXAMPLES: dict[str, dict[str, Any]] = {
    "market": {
        "type": "market",
        "tokenIn": "SOL",
        "tokenOut": "USDC",
        "amountIn": "1.5",
        "slippageBps": 50,
    },
    "limit": {
        "type": "limit",
        "tokenIn": "SOL",
        "tokenOut": "USDC",
        "amountIn": "1.5",
        "limitPrice": "149.5",
    },
    "sniper": {
        "type": "sniper",
        "tokenIn": "SOL",
        "tokenOut": "MOONCAT",
        "amountIn": "0.5",
        "slippageBps": 500,
    },
}
"""The README's orders: one of each type."""
LISTING_EXAMPLE: dict[str, Any] = {
    "dex": "meteora",
    "token": "MOONCAT",
    "quoteToken": "SOL",
    "price": "0.0001",
    "liquidity": "5000",
}
"""The README's listing: the token the sniper example waits for."""

SUBMIT = Route(
    "POST",
    EXECUTE,
    api.execute,
    "submitOrder",
    "Submit an order",
    "Commit a market, limit or sniper order; the answer comes once it is committed. Follow it "
    "on its WebSocket (`ws`). Sent with `Upgrade: websocket`, the request becomes that socket "
    "once the order is committed. The WebSocket side of this path (`GET` upgrading, the "
    "order as a socket's first message, this upgrade) is described in `/api/asyncapi.json`.",
    "orders",
    replies=(
        Reply(101, "Asked with `Upgrade: websocket`: the socket streams the order.", None),
        Reply(201, "Committed.", AcceptedOrder, headers=("Location",)),
        Reply(
            200,
            "Already committed under this `Idempotency-Key`, with this body: the same answer "
            "(while keys are in force, its `ws` URL carries a new stream token), even while a "
            "new order would be refused (429, 503 `queue_full` or `shutting_down`).",
            AcceptedOrder,
            headers=("Location",),
        ),
        *BODY_REFUSED,
        refused(
            400,
            "A bad `Idempotency-Key`, or a value the database refuses to store.",
            BadRequest.code,
        ),
        refused(409, "The `Idempotency-Key` was used with another body.", IdempotencyConflict.code),
        refused(
            422,
            "An invalid order, or a body that is not a JSON object: each bad field and why.",
            InvalidOrder.code,
            details=FIELD_REASONS,
        ),
        refused(
            429,
            "The key submitted more orders than its limit per minute allows (a resend of an "
            "order that exists is answered 200; `Retry-After` says when to try again), or, "
            "asked with `Upgrade: websocket`, it holds as many sockets open on this engine as "
            "a key may (`ORDERENGINE_KEY_MAX_SOCKETS`), and no order was made.",
            TooManyRequests.code,
            TooManySockets.code,
            headers=("Retry-After",),
        ),
        refused(
            503,
            "Nothing was created: the queue is full, the engine is stopping, or the database is "
            "out of reach. Try again after `Retry-After`.",
            QueueFull.code,
            ShuttingDown.code,
            DatabaseUnavailable.code,
            headers=("Retry-After",),
        ),
    ),
    body=OrderRequest,
    headers=IdempotencyHeader,
    examples=ORDER_EXAMPLES,
)

FOLLOW = Route(
    "GET",
    EXECUTE,
    stream.watch,
    "followOrder",
    "Follow an order over a WebSocket",
    "Described in `/api/asyncapi.json`; a GET that does not upgrade is a 405.",
    "orders",
    socket=True,
)

API_ROUTES = (
    SUBMIT,
    FOLLOW,
    Route(
        "GET",
        "/api/orders",
        api.list_orders,
        "listOrders",
        "List orders",
        "The caller's orders, newest first, a page at a time; `nextCursor` asks for the next.",
        "orders",
        replies=(
            Reply(200, "A page of orders.", OrdersPage),
            refused(400, "A bad `status`, `limit` or `cursor`.", BadRequest.code),
            DATABASE_UNAVAILABLE,
        ),
        query=OrdersQuery,
        query_example={"status": "confirmed", "limit": 20},
    ),
    Route(
        "GET",
        "/api/orders/{order_id}",
        api.get_order,
        "getOrder",
        "Read an order",
        "The order with every event it has had, as its stream sent them.",
        "orders",
        replies=(
            Reply(200, "The order and its events.", OrderWithEvents),
            refused(404, "No order of the caller's has this id.", OrderNotFound.code),
            DATABASE_UNAVAILABLE,
        ),
        path_parameters=OrderPath,
    ),
    Route(
        "DELETE",
        "/api/orders/{order_id}",
        api.cancel_order,
        "cancelOrder",
        "Cancel an order",
        "Cancel an order whose swap has not been sent (`pending`, `routing` or `building`): it "
        "ends `failed` with a last event `cancelled: true`, and its socket closes with 1000.",
        "orders",
        replies=(
            Reply(200, "Cancelled: the order as `GET` shows it.", OrderWithEvents),
            refused(404, "No order of the caller's has this id.", OrderNotFound.code),
            refused(
                409,
                "Too late: the order is `submitted`, `confirmed` or `failed` (`details` has "
                "`orderId` and `status`).",
                NotCancellable.code,
            ),
            DATABASE_UNAVAILABLE,
        ),
        path_parameters=OrderPath,
    ),
    Route(
        "GET",
        "/api/quotes",
        api.quotes,
        "previewQuote",
        "Preview a quote",
        "Every venue's quote for a swap now, and the one routing would pick. Creates nothing "
        "and takes no rate token; when no venue quotes, `dex` is null and `unavailable` says "
        "why each did not.",
        "quotes",
        replies=(
            Reply(200, "What routing would decide now.", QuotePreview),
            refused(400, "A parameter given twice.", BadRequest.code),
            refused(
                422,
                "Invalid parameters, for an order's reasons.",
                InvalidQuote.code,
                details=FIELD_REASONS,
            ),
        ),
        query=QuoteRequest,
        query_example={"tokenIn": "SOL", "tokenOut": "USDC", "amountIn": "1.5"},
    ),
    Route(
        "POST",
        LISTINGS_PATH,
        listings.create_listing,
        "createListing",
        "List a pool for a new pair (simulation)",
        "A simulated venue opens a pool for a new pair; the sniper orders waiting for it are "
        "due by the time the answer comes, on every engine sharing the database.",
        "simulation",
        replies=(
            Reply(201, "Listed.", Listing),
            *BODY_REFUSED,
            refused(403, "Keys are in force and the key is not an admin's.", Forbidden.code),
            refused(
                409,
                "The venue has a pool for the pair already, either way round (`details` has "
                "`dex` and `tokens`).",
                AlreadyListed.code,
            ),
            refused(
                422,
                "An invalid listing, or a body that is not a JSON object: each bad field and why.",
                InvalidListing.code,
                details=FIELD_REASONS,
            ),
            DATABASE_UNAVAILABLE,
        ),
        body=ListingRequest,
        examples={"listing": LISTING_EXAMPLE},
    ),
    Route(
        "GET",
        listings.TOKENS_PATH,
        listings.tokens,
        "listTokens",
        "List tokens and pairs",
        "Every token the engine knows, and every pair some venue has a pool for, with its "
        "venues; all sorted.",
        "tokens",
        replies=(Reply(200, "The catalog.", Catalog), DATABASE_UNAVAILABLE),
    ),
    Route(
        "POST",
        security.STREAM_TOKENS_PATH,
        security.stream_token,
        "createStreamToken",
        "Mint a stream token",
        "A token for a browser's socket to act as the caller's key (a browser cannot send a "
        "header on a socket): open `ws` and send the order as the first message.",
        "orders",
        replies=(Reply(201, "The token, its expiry and the socket's URL.", StreamToken),),
    ),
    Route(
        "GET",
        FEED,
        feed.follow_all,
        "followAllOrders",
        "Follow every order over a WebSocket",
        "Described in `/api/asyncapi.json`; a GET that does not upgrade is a 426.",
        "orders",
        socket=True,
    ),
)
"""The API's routes, in the order they are registered."""

OPERATION_ROUTES = (
    Route(
        "GET",
        "/health",
        api.health,
        "health",
        "Health",
        "Whether the database answers and every worker runs, and how far behind the engine is.",
        "operations",
        replies=(
            Reply(200, "Healthy.", Health),
            Reply(
                503,
                "Degraded: a worker is down, or the database is out of reach; or `stopping`: "
                "the engine refuses orders while its swaps in flight finish.",
                Health | HealthWithoutDatabase,
            ),
        ),
        public=True,
    ),
    Route(
        "GET",
        "/metrics",
        api.metrics,
        "metrics",
        "Metrics",
        "Prometheus's text format: this engine's counters since it started.",
        "operations",
        replies=(Reply(200, "The metrics.", str, media_types=("text/plain",)),),
        public=True,
    ),
)
"""The routes an operator's tools read; never behind a key."""

DOCS_ROUTES = (
    Route(
        "GET",
        "/api/openapi.json",
        docs.json_document(lambda: openapi.document(ROUTES)),
        "openapiDocument",
        "This document",
        "The HTTP API as OpenAPI 3.1, generated from the route table and its models.",
        "documentation",
        replies=(Reply(200, "The OpenAPI document.", dict[str, Any]),),
        public=True,
    ),
    Route(
        "GET",
        "/api/asyncapi.json",
        docs.json_document(asyncapi.document),
        "asyncapiDocument",
        "The WebSocket API",
        "The order streams as AsyncAPI 3.0: the three ways in, every message, the close codes.",
        "documentation",
        replies=(Reply(200, "The AsyncAPI document.", dict[str, Any]),),
        public=True,
    ),
    Route(
        "GET",
        docs.DOCS_PATH,
        docs.page,
        "docsPage",
        "Swagger UI",
        "This document in Swagger UI, served by the engine, with the files the page loads.",
        "documentation",
        replies=(
            Reply(
                200,
                "The page, or the file asked for.",
                str,
                media_types=("text/html", *sorted(set(docs.FILE_TYPES.values()))),
            ),
            refused(404, "The page loads no file of that name.", NOT_FOUND),
        ),
        query=DocsQuery,
        public=True,
    ),
)
"""The API's own description: open to all."""

CONSOLE_ROUTES = (
    Route(
        "GET",
        console.CONSOLE_PATH,
        console.page,
        "consolePage",
        "The console",
        "The browser console: place, follow and cancel orders, list tokens on the simulated "
        "venues, and watch each pair's price on each venue. It asks for a key while keys are "
        "in force, and calls the API with it.",
        "console",
        replies=(Reply(200, "The page.", str, media_types=("text/html",)),),
        public=True,
    ),
    Route(
        "GET",
        console.FILES_PATH,
        console.file,
        "consoleFile",
        "A file of the console",
        "A stylesheet, script or icon the console's page loads, uPlot's among them.",
        "console",
        replies=(
            Reply(
                200,
                "The file.",
                str,
                media_types=tuple(sorted({media for _, media in console.FILES.values()})),
            ),
            refused(404, "The page loads no file of that name.", NOT_FOUND),
        ),
        path_parameters=ConsoleFile,
        public=True,
    ),
)
"""The browser console and its files: open to all, as the page holds no data."""


class PreflightHeaders(Model):
    """What a browser's CORS preflight asks: whether its page may send a request."""

    model_config = ConfigDict(alias_generator=None)

    origin: str | None = Field(None, alias="Origin", description="The page's origin.")
    method: str | None = Field(
        None,
        alias="Access-Control-Request-Method",
        pattern=r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$",
        description="The method the page would send; with it, the OPTIONS is a preflight.",
    )
    headers: str | None = Field(
        None,
        alias="Access-Control-Request-Headers",
        description="The headers the page would send.",
    )


def preflight(routes: tuple[Route, ...]) -> Route:
    """The OPTIONS of the path of `routes`: a CORS preflight, answered by `security.py`.

    An OPTIONS that is no preflight is a 405, as every method the path does not take.
    """
    first, allow = routes[0], allowed_methods(routes)
    return Route(
        "OPTIONS",
        first.path,
        api.method_not_allowed(allow),
        f"{first.operation_id}Preflight",
        "CORS preflight",
        "A browser asks whether a page of another origin may send a request here. Answered "
        "before any key is asked for: a preflight carries none.",
        first.tag,
        replies=(
            Reply(
                204,
                "A preflight from an origin in `ORDERENGINE_CORS_ORIGINS`: what its pages may "
                "send, for how long.",
                headers=(
                    "Access-Control-Allow-Origin",
                    "Access-Control-Allow-Methods",
                    "Access-Control-Allow-Headers",
                    "Access-Control-Max-Age",
                ),
            ),
            refused(403, "A preflight from any other origin.", ForeignOrigin.code),
            refused(
                405,
                "An OPTIONS that is no preflight, as any method this path does not take: "
                "`Allow` names those it takes.",
                METHOD_NOT_ALLOWED,
                headers=("Allow",),
            ),
        ),
        path_parameters=first.path_parameters,
        headers=PreflightHeaders,
        public=first.public,
        allow=allow,
    )


def _preflights(routes: tuple[Route, ...]) -> tuple[Route, ...]:
    """The preflight of each path with a route a client calls over HTTP (not a socket's)."""
    by_path: dict[str, list[Route]] = {}
    for route in routes:
        by_path.setdefault(route.path, []).append(route)
    return tuple(
        preflight(tuple(served))
        for served in by_path.values()
        if any(not route.socket for route in served)
    )


SERVED = (*API_ROUTES, *OPERATION_ROUTES, *DOCS_ROUTES, *CONSOLE_ROUTES)
ROUTES: tuple[Route, ...] = (*SERVED, *_preflights(SERVED))
"""Every route the engine serves, in the order `app.py` registers them: each path's
preflight last."""
