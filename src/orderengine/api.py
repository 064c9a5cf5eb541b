"""The HTTP and WebSocket API: routes, handlers, and the one place errors become answers."""

from __future__ import annotations

import asyncio
import hashlib
import json
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from decimal import Decimal
from typing import Any
from uuid import UUID

import structlog
from aiohttp import WSCloseCode, WSMsgType, web
from pydantic import ValidationError

from orderengine.domain import Order, OrderEvent, OrderRequest, OrderStatus
from orderengine.engine import Engine
from orderengine.errors import (
    BadRequest,
    InvalidOrder,
    OrderEngineError,
    OrderNotFound,
    Unavailable,
)
from orderengine.events import EventHub, FellBehind, Subscription
from orderengine.metrics import Metrics
from orderengine.repository import Repository
from orderengine.settings import Settings
from orderengine.venues import VenueFactory, simulated_venues

log = structlog.get_logger(__name__)

SETTINGS = web.AppKey("settings", Settings)
REPOSITORY = web.AppKey("repository", Repository)
ENGINE = web.AppKey("engine", Engine)
HUB = web.AppKey("hub", EventHub)
METRICS = web.AppKey("metrics", Metrics)
SOCKETS: web.AppKey[weakref.WeakSet[web.WebSocketResponse]] = web.AppKey("sockets")
"""Open sockets, closed with 1001 when the server shuts down."""

EXECUTE = "/api/orders/execute"
MAX_PAGE = 200
FELL_BEHIND = 4000
"""Close code for a client that stopped reading; it may reconnect with `since=`."""


def create_app(settings: Settings, venues: VenueFactory = simulated_venues) -> web.Application:
    """The application: every resource it owns opens and closes in its cleanup context."""
    app = web.Application(middlewares=[error_middleware], client_max_size=settings.max_body_bytes)
    app[SETTINGS] = settings
    app[HUB] = EventHub(settings.ws_buffer)
    app[METRICS] = Metrics()
    app[SOCKETS] = weakref.WeakSet()
    app.cleanup_ctx.append(_resources(venues))
    app.on_shutdown.append(_close_sockets)
    app.router.add_post(EXECUTE, execute)
    app.router.add_get(EXECUTE, watch)
    app.router.add_get("/api/orders", list_orders)
    app.router.add_get("/api/orders/{order_id}", get_order)
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics)
    return app


def _resources(
    venues: VenueFactory,
) -> Callable[[web.Application], AsyncIterator[None]]:
    async def resources(app: web.Application) -> AsyncIterator[None]:
        settings = app[SETTINGS]
        assert settings.database_url, "the database URL is resolved before the app is created"
        repository = await Repository.connect(
            settings.database_url, settings.db_pool_size, settings.db_timeout_s
        )
        engine = Engine(settings, repository, venues(repository, settings), app[HUB], app[METRICS])
        app[REPOSITORY] = repository
        app[ENGINE] = engine
        await engine.start()
        try:
            yield
        finally:
            await engine.stop()
            await repository.close()

    return resources


async def _close_sockets(app: web.Application) -> None:
    sockets = app[SOCKETS]
    await asyncio.gather(
        *(
            ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutting down")
            for ws in list(sockets)
        ),
        return_exceptions=True,
    )


# ---- errors -------------------------------------------------------------------------------

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details}}


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error leaves in one shape; internal ones are logged, never shown."""
    try:
        return await handler(request)
    except Unavailable as error:
        request.app[METRICS].rejected.labels(error.code).inc()
        return _json(
            error_body(error.code, error.message, error.details),
            status=error.status,
            headers={"Retry-After": str(error.retry_after_s)},
        )
    except OrderEngineError as error:
        if error.status >= 500:
            log.error("request_failed", path=request.path, error=error.message)
        return _json(error_body(error.code, error.message, error.details), status=error.status)
    except web.HTTPException as error:
        if error.status < 400:
            raise
        code = error.reason.lower().replace(" ", "_")
        message = "request body too large" if error.status == 413 else error.reason
        return _json(error_body(code, message), status=error.status, headers=_allow(error))
    except Exception:
        log.exception("request_crashed", path=request.path, method=request.method)
        return _json(error_body("internal_error", "internal error"), status=500)


def _allow(error: web.HTTPException) -> dict[str, str]:
    allow = error.headers.get("Allow")
    return {"Allow": allow} if allow else {}


def _json(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.json_response(body, status=status, headers=headers)


# ---- reading requests ---------------------------------------------------------------------


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def parse_order(raw: bytes | str) -> OrderRequest:
    """Unreadable JSON is a 400; a readable but invalid order is a 422 with every reason.

    Numbers are read as `Decimal`, so an amount sent as a JSON number stays exact.
    """
    try:
        body = json.loads(raw, parse_float=Decimal, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError) as error:
        raise BadRequest(f"request body is not valid JSON: {error}") from error
    if not isinstance(body, dict):
        raise InvalidOrder("an order must be a JSON object", details=[])
    try:
        return OrderRequest.model_validate(body)
    except ValidationError as error:
        raise InvalidOrder(
            "invalid order",
            details=[
                {
                    "field": ".".join(str(part) for part in e["loc"]) or None,
                    "message": e["msg"].removeprefix("Value error, "),
                    "type": e["type"],
                }
                for e in error.errors(include_url=False, include_input=False)
            ],
        ) from error


def _order_id(text: str | None) -> UUID:
    try:
        return UUID(text or "")
    except ValueError:
        raise OrderNotFound(f"no order {text!r}") from None


def _non_negative(name: str, text: str | None, default: int) -> int:
    if text is None:
        return default
    if not text.isdigit():
        raise BadRequest(f"{name} must be a non-negative integer")
    return int(text)


def _digest(request: OrderRequest) -> str:
    canonical = json.dumps(request.model_dump(mode="json"), sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _idempotency_key(request: web.Request) -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is not None and not 1 <= len(key) <= 255:
        raise BadRequest("Idempotency-Key must be 1 to 255 characters")
    return key


# ---- answers ------------------------------------------------------------------------------


def order_json(order: Order) -> dict[str, Any]:
    return order.model_dump(mode="json", by_alias=True)


def accepted(order: Order) -> dict[str, Any]:
    """The answer to an accepted order; the same every time it is asked for again."""
    body = order_json(order)
    return {
        "orderId": body["orderId"],
        "status": OrderStatus.PENDING.value,
        "ws": f"{EXECUTE}?orderId={order.order_id}",
        **{k: body[k] for k in ("type", "tokenIn", "tokenOut", "amountIn", "slippageBps")},
        "createdAt": body["createdAt"],
    }


async def _submit(request: web.Request, order: OrderRequest) -> tuple[Order, bool]:
    key = _idempotency_key(request)
    return await request.app[ENGINE].submit(order, key, _digest(order) if key else None)


# ---- handlers -----------------------------------------------------------------------------


async def execute(request: web.Request) -> web.StreamResponse:
    """POST an order: 201 with its id once it is committed, or upgraded to its stream."""
    order_request = parse_order(await request.read())
    ws = _websocket(request)
    if ws.can_prepare(request).ok:
        order, _ = await _submit(request, order_request)
        await ws.prepare(request)
        await ws.send_json(accepted(order))
        return await _stream(request, ws, order.order_id, since=0)
    order, created = await _submit(request, order_request)
    return _json(
        accepted(order),
        status=201 if created else 200,
        headers={"Location": f"/api/orders/{order.order_id}"},
    )


async def watch(request: web.Request) -> web.StreamResponse:
    """The WebSocket on the execute route: stream a known order, or take one as first message."""
    ws = _websocket(request)
    if not ws.can_prepare(request).ok:
        raise web.HTTPMethodNotAllowed(
            request.method, ["POST"], text="GET here must upgrade to a WebSocket"
        )
    if "orderId" in request.query:
        order_id = _order_id(request.query["orderId"])
        since = _non_negative("since", request.query.get("since"), 0)
        await request.app[REPOSITORY].get_order(order_id)
        await ws.prepare(request)
        return await _stream(request, ws, order_id, since)
    await ws.prepare(request)
    order = await _order_from_first_message(request, ws)
    if order is None:
        return ws
    await ws.send_json(accepted(order))
    return await _stream(request, ws, order.order_id, since=0)


async def _order_from_first_message(
    request: web.Request, ws: web.WebSocketResponse
) -> Order | None:
    """Accept the order sent as the socket's first message; on error, say why and close 1008."""
    settings = request.app[SETTINGS]
    try:
        message = await ws.receive(timeout=settings.ws_first_message_timeout_s)
        if message.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
            return None
        order, _ = await _submit(request, parse_order(message.data))
    except TimeoutError:
        await _refuse(ws, BadRequest("no order arrived on the socket in time"))
        return None
    except OrderEngineError as error:
        await _refuse(ws, error)
        return None
    return order


async def _refuse(ws: web.WebSocketResponse, error: OrderEngineError) -> None:
    await ws.send_json(error_body(error.code, error.message, error.details))
    code = (
        WSCloseCode.TRY_AGAIN_LATER
        if isinstance(error, Unavailable)
        else WSCloseCode.POLICY_VIOLATION
    )
    await ws.close(code=code, message=error.code.encode())


def _websocket(request: web.Request) -> web.WebSocketResponse:
    """A socket that pings its client (dropping one that stops answering) and refuses
    messages larger than an HTTP body may be."""
    settings = request.app[SETTINGS]
    return web.WebSocketResponse(
        heartbeat=settings.ws_heartbeat_s, max_msg_size=settings.max_body_bytes
    )


async def _stream(
    request: web.Request, ws: web.WebSocketResponse, order_id: UUID, since: int
) -> web.WebSocketResponse:
    """Send the order's events after `since` until its terminal one, then close 1000.

    This handler task is the socket's only reader: it notices the client leaving while a
    separate task sends.
    """
    sockets = request.app[SOCKETS]
    sockets.add(ws)
    sender = asyncio.create_task(_send_events(request.app, ws, order_id, since))
    try:
        async for _ in ws:
            pass
    finally:
        sockets.discard(ws)
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)
    return ws


async def _send_events(
    app: web.Application, ws: web.WebSocketResponse, order_id: UUID, since: int
) -> None:
    """Send every event after `since`, stored then live, each once; close after the last."""
    last = since
    with app[HUB].subscribe(order_id) as subscription:
        try:
            async for event in _stored_then_live(app[REPOSITORY], order_id, subscription):
                if event.seq > last:
                    await ws.send_json(event.wire())
                    last = event.seq
                if event.status.terminal:
                    await ws.close()
                    return
        except FellBehind:
            await ws.close(
                code=FELL_BEHIND, message=f"fell behind; resume with since={last}".encode()
            )
        except OrderEngineError as error:
            await ws.send_json(error_body(error.code, error.message))
            await ws.close(code=WSCloseCode.TRY_AGAIN_LATER, message=error.code.encode())


async def _stored_then_live(
    repository: Repository, order_id: UUID, subscription: Subscription
) -> AsyncIterator[OrderEvent]:
    """The order's stored events, then its live ones. The subscription was registered
    before the store is read, so nothing falls between; what both hold comes twice, and
    the caller drops repeats by seq."""
    for event in await repository.events(order_id):
        yield event
    while True:
        yield await subscription.next()


async def get_order(request: web.Request) -> web.Response:
    order_id = _order_id(request.match_info["order_id"])
    repository = request.app[REPOSITORY]
    order = await repository.get_order(order_id)
    events = await repository.events(order_id)
    return _json({**order_json(order), "events": [event.wire() for event in events]})


async def list_orders(request: web.Request) -> web.Response:
    """Orders newest first, optionally of one status, a page at a time."""
    query = request.query
    status_text = query.get("status")
    try:
        status = OrderStatus(status_text) if status_text else None
    except ValueError:
        raise BadRequest(
            f"status must be one of {', '.join(s.value for s in OrderStatus)}"
        ) from None
    limit = _non_negative("limit", query.get("limit"), 50)
    if not 1 <= limit <= MAX_PAGE:
        raise BadRequest(f"limit must be between 1 and {MAX_PAGE}")
    cursor = _non_negative("cursor", query.get("cursor"), 0) or None
    orders, next_cursor = await request.app[REPOSITORY].list_orders(status, cursor, limit)
    return _json(
        {
            "orders": [order_json(order) for order in orders],
            "nextCursor": str(next_cursor) if next_cursor is not None else None,
        }
    )


async def health(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    try:
        await request.app[REPOSITORY].ping()
    except Unavailable:
        return _json({"status": "degraded", "database": "unavailable"}, status=503)
    return _json({"status": "ok", "database": "ok", "backlog": engine.backlog})


async def metrics(request: web.Request) -> web.Response:
    return web.Response(body=request.app[METRICS].render(), content_type="text/plain")
