"""The API's wire format, shared by the HTTP handlers and the streams.

Reading requests (orders, ids, query numbers, idempotency keys) and writing answers
(orders, the accepted order, the one error shape).
"""

from __future__ import annotations

import hashlib
import json
from decimal import Decimal
from typing import Any
from uuid import UUID

from aiohttp import web
from pydantic import ValidationError

from orderengine.domain import Order, OrderRequest, OrderStatus
from orderengine.errors import BadRequest, InvalidOrder, OrderNotFound
from orderengine.keys import ENGINE

EXECUTE = "/api/orders/execute"


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    """The one shape every error takes, over HTTP and over a socket."""
    return {"error": {"code": code, "message": message, "details": details}}


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


def order_id(text: str | None) -> UUID:
    """An order id from a path or query; anything that is not one names no order."""
    try:
        return UUID(text or "")
    except ValueError:
        raise OrderNotFound(f"no order {text!r}") from None


def non_negative(name: str, text: str | None, default: int) -> int:
    """A non-negative integer query parameter, or `default` when it is absent."""
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


async def submit(request: web.Request, order: OrderRequest) -> tuple[Order, bool]:
    """Commit `order` under the request's `Idempotency-Key`, if any; `(order, created)`."""
    key = _idempotency_key(request)
    return await request.app[ENGINE].submit(order, key, _digest(order) if key else None)


def order_json(order: Order) -> dict[str, Any]:
    """An order as the API shows it."""
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
