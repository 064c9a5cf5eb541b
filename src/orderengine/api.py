"""The HTTP API: handlers, and the one place errors become answers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import structlog
from aiohttp import web

from orderengine import stream
from orderengine.domain import OrderStatus
from orderengine.errors import BadRequest, OrderEngineError, Unavailable
from orderengine.keys import ENGINE, METRICS, REPOSITORY
from orderengine.wire import (
    accepted,
    error_body,
    non_negative,
    order_id,
    order_json,
    parse_order,
    submit,
)

log = structlog.get_logger(__name__)

MAX_PAGE = 200

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


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
        message = "request body too large" if error.status == 413 else _message(error)
        return _json(error_body(code, message), status=error.status, headers=_allow(error))
    except Exception:
        log.exception("request_crashed", path=request.path, method=request.method)
        return _json(error_body("internal_error", "internal error"), status=500)


def _message(error: web.HTTPException) -> str:
    """The text a handler gave the error, or its reason when it gave none.

    aiohttp's default text is "STATUS: Reason", which says nothing the reason does not.
    """
    given = error.text or ""
    return error.reason if not given or given.startswith(f"{error.status}:") else given


def _allow(error: web.HTTPException) -> dict[str, str]:
    allow = error.headers.get("Allow")
    return {"Allow": allow} if allow else {}


def _json(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.json_response(body, status=status, headers=headers)


async def execute(request: web.Request) -> web.StreamResponse:
    """POST an order: 201 with its id once it is committed, or upgraded to its stream."""
    order_request = parse_order(await request.read())
    if stream.upgrading(request):
        return await stream.upgrade_after_post(request, order_request)
    order, created = await submit(request, order_request)
    return _json(
        accepted(order),
        status=201 if created else 200,
        headers={"Location": f"/api/orders/{order.order_id}"},
    )


async def get_order(request: web.Request) -> web.Response:
    """The order with every event it has had."""
    wanted = order_id(request.match_info["order_id"])
    repository = request.app[REPOSITORY]
    order = await repository.get_order(wanted)
    events = await repository.events(wanted)
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
    limit = non_negative("limit", query.get("limit"), 50)
    if not 1 <= limit <= MAX_PAGE:
        raise BadRequest(f"limit must be between 1 and {MAX_PAGE}")
    cursor = non_negative("cursor", query.get("cursor"), 0) or None
    orders, next_cursor = await request.app[REPOSITORY].list_orders(status, cursor, limit)
    return _json(
        {
            "orders": [order_json(order) for order in orders],
            "nextCursor": str(next_cursor) if next_cursor is not None else None,
        }
    )


async def health(request: web.Request) -> web.Response:
    """Liveness and whether the database answers."""
    engine = request.app[ENGINE]
    try:
        await request.app[REPOSITORY].ping()
    except Unavailable:
        return _json({"status": "degraded", "database": "unavailable"}, status=503)
    return _json({"status": "ok", "database": "ok", "backlog": engine.backlog})


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text."""
    return web.Response(body=request.app[METRICS].render(), content_type="text/plain")
