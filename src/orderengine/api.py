"""The HTTP API: handlers, and the one place errors become answers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from http import HTTPStatus
from typing import Any

import structlog
from aiohttp import hdrs, web
from structlog.contextvars import bound_contextvars

from orderengine import stream
from orderengine.answers import (
    Answer,
    Health,
    HealthStatus,
    HealthWithoutDatabase,
    OrdersPage,
    OrderWithEvents,
    Workers,
)
from orderengine.domain import Order, OrderStatus
from orderengine.errors import (
    BadRequest,
    NoRoute,
    OrderEngineError,
    RequestTimeout,
    TooManyRequests,
    Unauthorized,
    Unavailable,
    UnsupportedHttp,
)
from orderengine.keys import CALLER, ENGINE, METRICS, REPOSITORY, SETTINGS
from orderengine.server import Http11Answer
from orderengine.wire import (
    INT64_MAX,
    accepted,
    answer_begun,
    close_if_body_unasked,
    error_body,
    non_negative,
    order_id,
    quote_preview,
    read_order,
    read_quote_request,
    refuse_bad_upgrade,
    refuse_repeated,
    refuse_unsupported_http,
    submit,
    visible,
)

log = structlog.get_logger(__name__)

MAX_PAGE = 200

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error leaves in one shape; internal ones are logged, never shown.

    Once an answer has begun (a socket switched protocols, say) no HTTP answer may follow it
    into the stream: the error goes on up, and aiohttp closes the connection. An answer to a
    client still holding back its body closes the connection after it
    (`wire.close_if_body_unasked`).
    """
    response = await _answered(request, handler)
    close_if_body_unasked(request, response)
    return response


async def _answered(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as error:
        if error.status < 400 or answer_begun(request):
            raise
        code = error.reason.lower().replace(" ", "_")
        message = "request body too large" if error.status == 413 else _message(error)
        return _json(error_body(code, message), status=error.status, headers=_kept(error))
    except ConnectionResetError:
        # The client left before its answer (during a socket's handshake, say): not an error
        # of ours, and nothing can reach it.
        log.info("client_left", path=request.path, method=request.method)
        return web.Response(status=HTTPStatus.BAD_REQUEST)
    except Exception as error:
        if answer_begun(request):
            log.warning("request_failed_after_answering", path=request.path, error=repr(error))
            raise
        return _answer(request, error)


def _answer(request: web.Request, error: Exception) -> web.StreamResponse:
    """The error's answer: its own status and words, or a 500 that says nothing more."""
    if isinstance(error, Unavailable):
        request.app[METRICS].rejected.labels(error.code).inc()
        return _json(
            error_body(error.code, error.message, error.details),
            status=error.status,
            headers={"Retry-After": str(error.retry_after_s)},
        )
    if isinstance(error, Unauthorized):
        body = error_body(error.code, error.message, error.details)
        return _json(body, status=error.status, headers={"WWW-Authenticate": error.challenge})
    if isinstance(error, TooManyRequests):
        body = error_body(error.code, error.message, error.details)
        return _json(body, status=error.status, headers={"Retry-After": str(error.retry_after_s)})
    if isinstance(error, OrderEngineError):
        if error.status >= 500:
            log.error("request_failed", path=request.path, error=error.message)
        body = error_body(error.code, error.message, error.details)
        if isinstance(error, UnsupportedHttp):
            # In HTTP/1.1, not the request's version; what follows it cannot be read for sure,
            # and the connection is closed after it.
            return Http11Answer(error.status, body, {})
        response = _json(body, status=error.status)
        if isinstance(error, RequestTimeout):
            # The rest of the body may never come.
            response.force_close()
        return response
    log.error("request_crashed", path=request.path, method=request.method, exc_info=error)
    return _json(error_body("internal_error", "internal error"), status=500)


@web.middleware
async def screening_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A request that is ambiguous, or asks for a WebSocket it may not have, is refused first.

    On every route, before any handler runs: a version of HTTP or a transfer coding the
    engine does not serve (`wire.refuse_unsupported_http`); a parameter or a single-valued
    header given twice (`wire.refuse_repeated`); a bad or foreign handshake, so that neither a
    POST (which would create an order) nor a GET (which would answer 405) is taken for a
    plain request (`wire.refuse_bad_upgrade`).
    """
    refuse_unsupported_http(request)
    refuse_repeated(request)
    refuse_bad_upgrade(request)
    return await handler(request)


def _message(error: web.HTTPException) -> str:
    """The text a handler gave the error, or its reason when it gave none.

    aiohttp's default text is "STATUS: Reason", which says nothing the reason does not.
    """
    given = error.text or ""
    return error.reason if not given or given.startswith(f"{error.status}:") else given


KEPT_HEADERS = (hdrs.ALLOW, hdrs.SEC_WEBSOCKET_VERSION, hdrs.UPGRADE)
"""Headers of aiohttp's HTTP errors that the answer in the error shape keeps: what a 405
allows, the WebSocket version a refused handshake should have asked for, and the protocol a
426 asks for."""


def _kept(error: web.HTTPException) -> dict[str, str]:
    return {name: error.headers[name] for name in KEPT_HEADERS if name in error.headers}


def _json(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.json_response(body, status=status, headers=headers)


def _reply(
    answer: Answer, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    """An answer model as JSON, without the detour through a dict."""
    return web.Response(
        text=answer.json_text(), status=status, headers=headers, content_type="application/json"
    )


def method_not_allowed(allowed: frozenset[str]) -> Handler:
    """The handler of a path's other methods: a 405 whose `Allow` names `allowed`."""

    async def refuse(request: web.Request) -> web.StreamResponse:
        raise web.HTTPMethodNotAllowed(request.method, allowed)

    return refuse


async def not_found(request: web.Request) -> web.StreamResponse:
    """The handler of every path the engine does not serve: a 404."""
    raise web.HTTPNotFound()


async def execute(request: web.Request) -> web.StreamResponse:
    """POST an order: 201 with its id once it is committed, or upgraded to its stream.

    A request asking for a WebSocket it may not have never gets here (`screening_middleware`).
    Nor does a POST that names an order to follow (`orderId`, `since`: the POST takes no
    query parameter), which would make a new order instead.
    """
    order_request = await read_order(request)
    if stream.upgrading(request):
        return await stream.upgrade_after_post(request, order_request)
    order, created = await submit(request, order_request)
    return _reply(
        accepted(request, order),
        status=201 if created else 200,
        headers={"Location": f"/api/orders/{order.order_id}"},
    )


async def get_order(request: web.Request) -> web.Response:
    """The order with every event it has had."""
    wanted = order_id(request.match_info["order_id"])
    order = visible(request, await request.app[REPOSITORY].get_order(wanted))
    return await _with_events(request, order)


async def _with_events(request: web.Request, order: Order) -> web.Response:
    """The answer showing `order` with every event it has had."""
    events = await request.app[REPOSITORY].events(order.order_id)
    return _reply(OrderWithEvents.of(order, events))


async def cancel_order(request: web.Request) -> web.Response:
    """Cancel an order nothing was sent for: 200 with the order, ended `failed`, as GET shows it.

    Only a `pending`, `routing` or `building` order can be cancelled; one already submitted,
    confirmed or failed is a 409 naming its status (see `Repository.cancel` for the race with
    a worker).
    """
    wanted = order_id(request.match_info["order_id"])
    visible(request, await request.app[REPOSITORY].get_order(wanted))
    return await _with_events(request, await request.app[ENGINE].cancel(wanted))


async def quotes(request: web.Request) -> web.Response:
    """Every venue's quote for a swap and the one routing would pick now, and why.

    Creates nothing and takes no rate token. When no venue quotes, the answer is still a 200,
    with `dex` null, the reason, and why each venue did not.
    """
    wanted = read_quote_request(request)
    try:
        # The router's lines (`quote`, `route_decided`) say they were for no order.
        with bound_contextvars(preview=True):
            decision = await request.app[ENGINE].preview(
                wanted.token_in, wanted.token_out, wanted.amount_in
            )
    except NoRoute as error:
        return _json(quote_preview(wanted, error))
    return _json(quote_preview(wanted, decision))


async def list_orders(request: web.Request) -> web.Response:
    """Orders newest first, optionally of one status, a page at a time."""
    query = request.query
    status_text = query.get("status")
    try:
        status = OrderStatus(status_text) if status_text is not None else None
    except ValueError:
        raise BadRequest(
            f"status must be one of {', '.join(s.value for s in OrderStatus)}"
        ) from None
    limit = non_negative("limit", query.get("limit"), 50, minimum=1, maximum=MAX_PAGE)
    given = query.get("cursor")
    cursor = None if given is None else non_negative("cursor", given, 0, maximum=INT64_MAX)
    caller = request[CALLER]
    caller.refuse_token_for_one_order()
    orders, next_cursor = await request.app[REPOSITORY].list_orders(
        status, cursor, limit, caller.owner
    )
    cursor_text = str(next_cursor) if next_cursor is not None else None
    return _reply(OrdersPage(orders=tuple(orders), next_cursor=cursor_text))


async def health(request: web.Request) -> web.Response:
    """Liveness: the database answers and every worker runs; and how far behind we are.

    `oldestUnfinishedAgeS` is how long the order due longest (since its acceptance or its
    waking) has not been confirmed or failed: a number that keeps growing means orders are
    stuck, whatever the workers say. An engine that is stopping answers 503 `stopping`
    from the moment it refuses orders, so that a load balancer sends them elsewhere while
    its swaps in flight finish.
    """
    engine = request.app[ENGINE]
    alive, configured = engine.workers_alive, request.app[SETTINGS].concurrency
    workers = Workers(alive=alive, configured=configured)
    try:
        oldest = await request.app[REPOSITORY].oldest_unfinished_age_s()
    except Unavailable:
        return _reply(HealthWithoutDatabase(workers=workers), status=503)
    healthy = alive == configured and not engine.stopping
    status: HealthStatus = "stopping" if engine.stopping else "ok" if healthy else "degraded"
    body = Health(
        status=status,
        workers=workers,
        backlog=engine.backlog,
        oldest_unfinished_age_s=round(oldest, 3) if oldest is not None else None,
    )
    return _reply(body, status=200 if healthy else 503)


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text."""
    return web.Response(body=request.app[METRICS].render(), content_type="text/plain")
