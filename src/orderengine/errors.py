"""One exception root for the engine; the API maps each subclass to its HTTP answer."""

from __future__ import annotations

from typing import Any


class OrderEngineError(Exception):
    """Root of every error the engine raises on purpose."""

    status = 500
    code = "internal_error"

    def __init__(self, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class BadRequest(OrderEngineError):
    status = 400
    code = "bad_request"


class UnsupportedHttp(BadRequest):
    """A request in HTTP the engine does not serve; its connection is closed after the answer.

    What follows it on the connection cannot be read for sure.
    """


class ForeignOrigin(OrderEngineError):
    """A WebSocket asked for from a web page of another site, which may not act for its user."""

    status = 403
    code = "forbidden_origin"


class ForeignHost(OrderEngineError):
    """A request naming another machine in `Host`, to an engine that serves its own alone.

    With no API key, an engine on loopback trusts every caller, since only this machine can
    reach it. A web page whose name an attacker points at 127.0.0.1 (DNS rebinding) can
    reach it too, from a browser on this machine, and such a request names the page's host.
    """

    status = 403
    code = "forbidden_host"


class RequestTimeout(OrderEngineError):
    """The request's body did not arrive in time; the connection is closed after the answer."""

    status = 408
    code = "request_timeout"


class BodyTooLarge(OrderEngineError):
    """A body larger than allowed once decoded (a compressed body is measured decompressed)."""

    status = 413
    code = "request_entity_too_large"


class UnsupportedMediaType(OrderEngineError):
    """A body not sent as JSON, or in a content coding the engine does not decode."""

    status = 415
    code = "unsupported_media_type"


class InvalidOrder(OrderEngineError):
    status = 422
    code = "invalid_order"


class UnknownParameter(OrderEngineError):
    """A query parameter the route does not take: `details` names each.

    Ignored, a misspelled `limit` or `cursor` would answer another page than the one meant.
    """

    status = 422
    code = "unknown_parameter"


class OrderNotFound(OrderEngineError):
    status = 404
    code = "order_not_found"


class IdempotencyConflict(OrderEngineError):
    status = 409
    code = "idempotency_conflict"


class NotCancellable(OrderEngineError):
    """A cancel that came too late: the order's swap was sent, or the order has ended.

    `details` names the order and the status it was found in.
    """

    status = 409
    code = "order_not_cancellable"


class InvalidQuote(InvalidOrder):
    """A quote asked for with parameters an order could not have: the same field reasons."""

    code = "invalid_quote"


class InvalidListing(InvalidOrder):
    """A listing asked for with fields no venue could list: `details` names each and why."""

    code = "invalid_listing"


class Unavailable(OrderEngineError):
    """The engine cannot take the request now; the client should retry after `retry_after_s`."""

    status = 503
    code = "unavailable"

    def __init__(self, message: str, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class QueueFull(Unavailable):
    code = "queue_full"


class ShuttingDown(Unavailable):
    code = "shutting_down"


class DatabaseUnavailable(Unavailable):
    code = "database_unavailable"


class InvalidTransition(OrderEngineError):
    """A status change the transition table forbids, or one raced by another writer."""

    code = "invalid_transition"


class StaleOrder(InvalidTransition):
    """A status change from a view of the order that is no longer current: nothing written."""

    code = "stale_order"


class VenueError(OrderEngineError):
    """A venue could not serve a quote or a swap; the attempt may be retried."""

    code = "venue_error"


class NoRoute(VenueError):
    code = "no_route"


class AlreadyListed(VenueError):
    """A listing of a pair the venue already has a pool for (its own, or one listed before)."""

    status = 409
    code = "already_listed"


class SwapRejected(VenueError):
    """The venue definitely did not execute the swap (so it is safe to send another)."""

    code = "swap_rejected"


class SlippageExceeded(SwapRejected):
    code = "slippage_exceeded"


class KeyNameTaken(OrderEngineError):
    """An API key is created under a name an active key has."""

    status = 409
    code = "key_name_taken"


class Unauthorized(OrderEngineError):
    """No API key, or one that is wrong or revoked, while keys are in force.

    `challenge` is the answer's `WWW-Authenticate` header (RFC 6750); `invalid` when a
    credential was given but is not good.
    """

    status = 401
    code = "unauthorized"

    def __init__(self, message: str, invalid: bool) -> None:
        super().__init__(message)
        self.challenge = 'Bearer realm="orderengine"' + (
            ', error="invalid_token"' if invalid else ""
        )


class Forbidden(OrderEngineError):
    """A caller that may not do this.

    Listing a pool without an admin key, or, with a stream token for one order, anything but
    following that order.
    """

    status = 403
    code = "forbidden"


class TooManySockets(OrderEngineError):
    """A key holds as many sockets open on this engine as one key may."""

    status = 429
    code = "too_many_sockets"


class TooManyRequests(OrderEngineError):
    """A key submitted more orders than its limit per minute allows."""

    status = 429
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
