"""The API's wire format, shared by the HTTP handlers and the streams.

Reading requests (orders, ids, query numbers, idempotency keys, the WebSocket handshake) and
writing answers (orders, the accepted order, the one error shape).

Whatever a client sends is refused in the engine's own words: no parser's or codec's
message, and no header or body bytes, are quoted back.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import re
import zlib
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any, Final
from uuid import UUID

from aiohttp import HttpVersion10, HttpVersion11, hdrs, web
from pydantic import ValidationError
from yarl import URL

from orderengine.answers import (
    AcceptedMarketOrder,
    AcceptedWaitingOrder,
    ErrorAnswer,
    ErrorDetail,
)
from orderengine.domain import (
    MAX_AMOUNTS,
    MAX_ORDER_TTL_S,
    SHOWN,
    Order,
    OrderRequest,
    OrderStatus,
    QuoteRequest,
)
from orderengine.errors import (
    BadRequest,
    BodyTooLarge,
    ForeignOrigin,
    InvalidOrder,
    InvalidQuote,
    NoRoute,
    OrderNotFound,
    RequestTimeout,
    UnknownParameter,
    UnsupportedHttp,
    UnsupportedMediaType,
)
from orderengine.keys import CALLER, ENGINE, KEY_RING, SETTINGS, STREAM_TOKENS
from orderengine.model import Amount, Model, plain_decimal
from orderengine.router import Decision
from orderengine.venues.values import Dex, Quote

EXECUTE = "/api/orders/execute"
FEED = "/api/events"
"""The feed of all orders (`feed.py`)."""
LISTINGS_PATH = "/api/simulation/listings"
"""Listing a pool on the simulated venues (`listings.create_listing`): an admin's route, and
the one the `list-token` command calls (`cli.py`)."""

MAX_JSON_DEPTH = 32
"""Deepest nesting of arrays and objects a body may have; an order needs one level."""
INT32_MAX = 2**31 - 1
"""The largest `since` (a seq, an integer column); the default bound of a query number."""
INT64_MAX = 2**63 - 1
"""The largest position (a bigint column): a page's `cursor`, the feed's `after`."""
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Resource-Policy": "same-origin",
}
"""On every answer: the app's (`security.headers_middleware`) and the listener's own."""
API_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
}
"""Added to the API's answers (JSON), but not to a page that sets its own policy."""
CODINGS = ("gzip", "x-gzip", "deflate")
"""The content codings a body may come in, besides none (identity)."""


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    """The one shape every error takes, over HTTP and over a socket (`ErrorAnswer`)."""
    return ErrorAnswer(error=ErrorDetail(code=code, message=message, details=details)).wire()


class _Refused(ValueError):
    """Raised from inside the JSON parser with the reason, in our words, to give the client."""


def _reject_constant(name: str) -> Any:
    raise _Refused(f"request body is not valid JSON: {name} is not a number JSON allows")


def _number(text: str) -> Decimal:
    """A JSON number with a fraction or an exponent, exact, as a `Decimal`.

    Refused when its exponent is beyond what a `Decimal` holds (`1e9999999999999999999`):
    valid JSON, but no amount, price or count.
    """
    try:
        return Decimal(text)
    except InvalidOperation:
        raise _Refused(f"request body has a number out of range: {text[:40]}") from None


def _integer(text: str) -> int | Decimal:
    """A JSON integer; a long one as a `Decimal`, which has no digit limit and stays exact."""
    return int(text) if len(text) <= 18 else Decimal(text)


ORDER_FIELDS = frozenset(field.alias for field in OrderRequest.model_fields.values())
QUOTE_FIELDS = frozenset(field.alias for field in QuoteRequest.model_fields.values())


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object, refused if a key repeats: which of its values would count is a guess."""
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            which = key if key in ORDER_FIELDS else "a key"
            raise _Refused(f"request body gives {which} more than once in one object")
        found[key] = value
    return found


_DECODER = json.JSONDecoder(
    parse_float=_number,
    parse_int=_integer,
    parse_constant=_reject_constant,
    object_pairs_hook=_unique_keys,
)
"""Made once: `json.loads` with these arguments makes a decoder for every body."""
_STRING_OR_BRACKET = re.compile(r'"(?:[^"\\]++|\\.?)*+(?:"|\Z)|[\[\]{}]', re.DOTALL)
"""A string (to its closing quote, or to the end of the text if it has none), or a bracket.

Each string is taken whole from its opening quote, so the text is read once from left to
right: a pattern that may fail within a string, as one ending only at a closing quote does
when there is none, would be tried again from every quote inside it, in time that grows as
the square of the text's length (a 16 KiB body of escaped quotes held the engine 0.7 s)."""
_NESTING: Final = {"[": 1, "{": 1, "]": -1, "}": -1}


def _nests_deeper_than(text: str, limit: int) -> bool:
    """Whether arrays and objects in `text` nest more than `limit` deep, strings aside.

    Checked before parsing: the parser recurses once per level, and runs out of stack.
    """
    if text.count("[") + text.count("{") <= limit:
        return False
    depth = 0
    for token in _STRING_OR_BRACKET.findall(text):
        depth += _NESTING.get(token, 0)
        if depth > limit:
            return True
    return False


def read_json(raw: bytes | str) -> Any:
    """A body or socket message as JSON, or a `BadRequest` saying why it cannot be read.

    UTF-8 only; numbers exact (`Decimal` for fractions and long integers); no repeated keys;
    nesting at most `MAX_JSON_DEPTH` deep.
    """
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    except UnicodeDecodeError:
        raise BadRequest("request body is not valid JSON: it is not UTF-8 text") from None
    if _nests_deeper_than(text, MAX_JSON_DEPTH):
        raise BadRequest(
            f"request body nests arrays and objects more than {MAX_JSON_DEPTH} levels deep"
        )
    try:
        return _DECODER.decode(text)
    except _Refused as error:
        raise BadRequest(str(error)) from None
    except json.JSONDecodeError as error:
        raise BadRequest(
            "request body is not valid JSON", details={"line": error.lineno, "column": error.colno}
        ) from None
    except (ValueError, RecursionError):
        raise BadRequest("request body is not valid JSON") from None


def parse_order(
    raw: bytes | str,
    max_amounts: Mapping[str, Decimal] | None = None,
    max_order_ttl_s: float | None = None,
) -> OrderRequest:
    """Unreadable JSON is a 400; a readable but invalid order is a 422 with every reason.

    Numbers are read as `Decimal`, so an amount sent as a JSON number stays exact.
    `max_amounts` (by symbol) replaces the tokens' own limits on one order's size, and
    `max_order_ttl_s` the default bound of `expiresAt`.
    """
    body = read_json(raw)
    if not isinstance(body, dict):
        raise InvalidOrder("an order must be a JSON object", details=[])
    context = {MAX_AMOUNTS: max_amounts, MAX_ORDER_TTL_S: max_order_ttl_s}
    try:
        return OrderRequest.model_validate(body, context=context, by_alias=True, by_name=False)
    except ValidationError as error:
        raise InvalidOrder("invalid order", details=field_reasons(error)) from error


MAX_REASONS: Final = 20
"""The most reasons a 422 gives: a body of thousands of unknown keys must not make an answer
ten times its size."""


def field_reasons(error: ValidationError) -> list[dict[str, Any]]:
    """Each bad field (by its wire name, cut to `SHOWN`) and why: a 422's `details`.

    The first `MAX_REASONS` of them.
    """
    return [
        {
            "field": ".".join(str(part) for part in e["loc"])[:SHOWN] or None,
            "message": e["msg"].removeprefix("Value error, "),
            "type": e["type"],
        }
        for e in error.errors(include_url=False, include_input=False)[:MAX_REASONS]
    ]


def read_quote_request(request: web.Request) -> QuoteRequest:
    """A quote's parameters from the query, refused for the reasons an order's fields are.

    `tokenIn`, `tokenOut` and `amountIn` (a string of ASCII digits, as in an order): a missing
    or invalid one is a 422 naming each (one given twice is a 400, from `refuse_repeated`;
    any other parameter a 422 before, from `refuse_unknown_parameters`).
    """
    try:
        return QuoteRequest.model_validate(
            dict(request.query),
            context={MAX_AMOUNTS: request.app[SETTINGS].max_amounts},
            by_alias=True,
            by_name=False,
        )
    except ValidationError as error:
        raise InvalidQuote("invalid quote request", details=field_reasons(error)) from error


class QuotePreview(Model):
    """The answer to a quote request: what routing would decide for that order now.

    `dex` is None when no venue quoted; `reason` then says so, and `unavailable` why each
    venue did not.
    """

    token_in: str
    token_out: str
    amount_in: Amount
    dex: Dex | None
    reason: str
    quotes: tuple[Quote, ...]
    unavailable: dict[str, str]


def quote_preview(wanted: QuoteRequest, decision: Decision | NoRoute) -> dict[str, Any]:
    """The quote answer for `wanted`: the router's decision, or why there was none."""
    quotes: tuple[Quote, ...] = ()
    if isinstance(decision, NoRoute):
        dex, reason, unavailable = None, decision.message, decision.details or {}
    else:
        dex, reason = decision.best.dex, decision.reason
        quotes, unavailable = decision.quotes, decision.unavailable
    preview = QuotePreview(
        token_in=wanted.token_in,
        token_out=wanted.token_out,
        amount_in=wanted.amount_in,
        dex=dex,
        reason=reason,
        quotes=quotes,
        unavailable=unavailable,
    )
    return preview.model_dump(mode="json", by_alias=True)


_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_ASCII_DIGITS = re.compile(r"[0-9]{1,19}")


def order_id(text: str | None) -> UUID:
    """An order id from a path or query; anything that is not one names no order.

    Only the canonical form: `UUID()` would also take braces, a `urn:uuid:` prefix,
    underscores and non-ASCII digits.
    """
    if text is None or not _UUID.fullmatch(text):
        raise OrderNotFound("no order has that id: an order id is a UUID")
    return UUID(text)


def non_negative(
    name: str, text: str | None, default: int, maximum: int = INT32_MAX, minimum: int = 0
) -> int:
    """A whole number from `minimum` to `maximum` in ASCII digits, or `default` if absent."""
    if text is None:
        return default
    if not _ASCII_DIGITS.fullmatch(text) or not minimum <= int(text) <= maximum:
        raise BadRequest(f"{name} must be a whole number from {minimum} to {maximum}")
    return int(text)


def order_from_message(request: web.Request, data: bytes | str) -> OrderRequest:
    """The order a socket's first message carries, within the same limits as a POST's."""
    settings = request.app[SETTINGS]
    return parse_order(data, settings.max_amounts, settings.max_order_ttl_s)


async def read_order(request: web.Request) -> OrderRequest:
    """The order a POST carries, or why it cannot be read (`read_body`)."""
    settings = request.app[SETTINGS]
    body = await read_body(request, "an order")
    return parse_order(body, settings.max_amounts, settings.max_order_ttl_s)


async def read_body(request: web.Request, what: str) -> bytes:
    """The JSON body of a POST carrying `what` ("an order"), decoded, or why it cannot be.

    It must be JSON (415 otherwise, which also makes a browser ask first: a cross-site form
    cannot send it), in no content coding or gzip or deflate (415 for any other), arrive
    within the request timeout (408), and be at most `max_body_bytes` once decoded (413).
    """
    settings = request.app[SETTINGS]
    _require_json(request, what)
    coding = _content_coding(request)
    if _longer_than_allowed(request):
        raise BodyTooLarge(f"request body is larger than {settings.max_body_bytes} bytes")
    await _ask_for_body(request)
    raw = await _read_body(request, settings.request_timeout_s)
    return _decoded(raw, coding, settings.max_body_bytes) if coding else raw


async def deferred_continue(request: web.Request) -> None:
    """Ask for no body yet: the expect handler of every route.

    aiohttp runs it before the middlewares, which may still refuse the request from its
    headers alone (a key missing, a parameter unknown, a foreign host), as may a route that
    reads no body, a method a path does not take (405) and a path the engine does not serve
    (404). A client waiting to send its body (`Expect: 100-continue`) is asked for it by
    `read_body`, only when the body is about to be read; any other expectation is ignored,
    as HTTP allows (aiohttp would refuse it with a plain-text 417).
    """


CONTINUE: Final = b"HTTP/1.1 100 Continue\r\n\r\n"
INTERIM_BYTES = web.RequestKey("interim_bytes", int)
"""The bytes of an interim answer (`100 Continue`) written before the request's final one."""


def _expects_continue(request: web.Request) -> bool:
    """Whether the client waits to be asked before it sends its body."""
    expect = request.headers.get(hdrs.EXPECT, "")
    return request.version == HttpVersion11 and expect.lower() == "100-continue"


async def _ask_for_body(request: web.Request) -> None:
    """`100 Continue`, if the client waits for it: the body is about to be read."""
    if _expects_continue(request) and INTERIM_BYTES not in request:
        await request.writer.write(CONTINUE)
        request[INTERIM_BYTES] = len(CONTINUE)


def answer_begun(request: web.Request) -> bool:
    """Whether the request's final answer has begun to be written (an interim one aside)."""
    written: int = request.writer.output_size
    interim: int = request.get(INTERIM_BYTES, 0)
    return written > interim


def close_if_body_unasked(request: web.Request, response: web.StreamResponse) -> None:
    """Close the connection after an answer to a client still holding back its body.

    It was never asked for (`100 Continue`), so it will not follow, and whatever the client
    sends next would be read as that body.
    """
    if _expects_continue(request) and INTERIM_BYTES not in request and request.body_exists:
        response.force_close()


def _sent_as_json(request: web.Request) -> bool:
    charset = (request.charset or "utf-8").lower()
    return request.content_type == "application/json" and charset in ("utf-8", "utf8")


def _longer_than_allowed(request: web.Request) -> bool:
    """Whether the body's `Content-Length` alone is over the limit (compressed or not)."""
    return (request.content_length or 0) > request.app[SETTINGS].max_body_bytes


def _require_json(request: web.Request, what: str) -> None:
    if not _sent_as_json(request):
        raise UnsupportedMediaType(
            f"{what} must be sent with Content-Type: application/json, in UTF-8"
        )


def _content_coding(request: web.Request) -> str | None:
    """The body's content coding: None for none, else one of `CODINGS`."""
    codings = [
        coding.strip().lower()
        for header in request.headers.getall(hdrs.CONTENT_ENCODING, [])
        for coding in header.split(",")
    ]
    codings = [coding for coding in codings if coding not in ("", "identity")]
    if not codings:
        return None
    if len(codings) == 1 and codings[0] in CODINGS:
        return codings[0]
    raise UnsupportedMediaType(
        "a body may be sent with Content-Encoding gzip or deflate, or none",
        details={"accepted": ["gzip", "deflate", "identity"]},
    )


async def _read_body(request: web.Request, timeout_s: float) -> bytes:
    """The whole body, which must arrive within `timeout_s` however slowly it trickles.

    A small body has usually arrived with the headers: then there is nothing to wait for,
    and no timer is set.
    """
    try:
        if request.content.is_eof():
            return await request.read()
        async with asyncio.timeout(timeout_s):
            return await request.read()
    except TimeoutError:
        raise RequestTimeout(f"the request body did not arrive within {timeout_s:g} s") from None
    except (web.RequestPayloadError, ConnectionError):
        raise BadRequest("the request body was cut short or badly framed") from None


def _decoded(raw: bytes, coding: str, limit: int) -> bytes:
    """`raw` decompressed, never to more than `limit` bytes (a small bomb stays small)."""
    if coding == "deflate":
        # "deflate" is zlib's format; some clients send the raw stream it wraps.
        try:
            return _inflate(raw, zlib.MAX_WBITS, limit)
        except BadRequest:
            return _inflate(raw, -zlib.MAX_WBITS, limit)
    return _inflate(raw, 16 + zlib.MAX_WBITS, limit)


def _inflate(raw: bytes, wbits: int, limit: int) -> bytes:
    decompressor = zlib.decompressobj(wbits)
    try:
        body = decompressor.decompress(raw, limit + 1)
    except zlib.error:
        raise BadRequest("request body is not valid for its Content-Encoding") from None
    if len(body) > limit:
        raise BodyTooLarge(f"request body is larger than {limit} bytes once decompressed")
    if not decompressor.eof or decompressor.unused_data:
        raise BadRequest("request body is not valid for its Content-Encoding")
    return body


QUERY_PARAMETERS = QUOTE_FIELDS | {"status", "limit", "cursor", "after", "orderId", "since"}
"""The query parameters of the API's routes, named when repeated; any other is "a parameter"."""
SINGLE_HEADERS = (hdrs.AUTHORIZATION, "Idempotency-Key")
"""Headers whose one value is the request's: who asks, which order it is."""


SERVED_HTTP: Final = (HttpVersion10, HttpVersion11)
"""The versions of HTTP the engine answers; any other is refused (`refuse_unsupported_http`)."""


def refuse_unsupported_http(request: web.Request) -> None:
    """Refuse a request in HTTP other than 1.0 and 1.1, or with a body coded but chunked.

    An HTTP/1.0 request has no transfer codings: one that names any is framed faultily
    (RFC 9112, section 6.1), and its body cannot be told from what follows it.

    aiohttp's parser takes `HTTP/2.0` (and `HTTP/0.9`, a request line with no version) and
    answers in its framing all the same; and of `Transfer-Encoding` it heeds `chunked` alone,
    reading a body sent as `gzip, chunked` as if it were not compressed. Either could have an
    order made of bytes its client meant otherwise.
    """
    if request.version not in SERVED_HTTP:
        raise UnsupportedHttp("only HTTP/1.0 and HTTP/1.1 are served")
    codings = request.headers.getall(hdrs.TRANSFER_ENCODING, ())
    if codings and request.version == HttpVersion10:
        raise UnsupportedHttp("Transfer-Encoding is not HTTP/1.0")
    if codings and [c.strip().lower() for c in ",".join(codings).split(",")] != ["chunked"]:
        raise UnsupportedHttp("Transfer-Encoding may only be chunked")


def refuse_repeated(request: web.Request) -> None:
    """Refuse a request that gives a query parameter, or a header of `SINGLE_HEADERS`, twice.

    Which value would count is a guess, and whatever stands in front of the engine may guess
    otherwise: a proxy keeping the last `Idempotency-Key` where the engine kept the first
    would let the same order through twice.
    """
    query = request.query
    if len(query) != len(set(query)):
        repeated = sorted({name for name in query if len(query.getall(name)) > 1})
        which = repeated[0] if repeated[0] in QUERY_PARAMETERS else "a parameter"
        raise BadRequest(f"the query gives {which} more than once")
    for header in SINGLE_HEADERS:
        if len(request.headers.getall(header, ())) > 1:
            raise BadRequest(f"the request gives {header} more than once")


def refuse_unknown_parameters(request: web.Request, known: frozenset[str]) -> None:
    """A 422 naming the query parameters of the request not in `known` (`MAX_REASONS` at most)."""
    unknown = sorted(set(request.query) - known)
    if unknown:
        raise UnknownParameter(
            "the query gives parameters this route does not take",
            details=[
                {
                    "field": name[:SHOWN],
                    "message": "not a query parameter of this route",
                    "type": "extra_forbidden",
                }
                for name in unknown[:MAX_REASONS]
            ],
        )


WEBSOCKET_VERSION: Final = "13"
"""The one version of the WebSocket protocol there is (RFC 6455)."""


def refuse_bad_upgrade(request: web.Request) -> None:
    """Refuse a request that asks for a WebSocket it may not have, before anything is done.

    A handshake that is not valid is a 400: not a plain request (a POST would create an
    order), nor a 405. A socket asked for by a page of another site is a 403 (see
    `refuse_foreign_origin`). A request that does not ask to upgrade passes.
    """
    if not _asks_for_websocket(request):
        return
    if request.headers.getall(hdrs.SEC_WEBSOCKET_VERSION, []) != [WEBSOCKET_VERSION]:
        # RFC 6455 (section 4.4): the refusal names the version the server speaks.
        raise web.HTTPBadRequest(
            text="invalid WebSocket handshake: Sec-WebSocket-Version must be 13",
            headers={hdrs.SEC_WEBSOCKET_VERSION: WEBSOCKET_VERSION},
        )
    problem = _handshake_problem(request)
    if problem is not None:
        raise BadRequest(f"invalid WebSocket handshake: {problem}")
    refuse_foreign_origin(request)


def _tokens(request: web.Request, header: str) -> list[str]:
    return [
        token.strip().lower()
        for value in request.headers.getall(header, [])
        for token in value.split(",")
    ]


def _asks_for_websocket(request: web.Request) -> bool:
    """Whether Upgrade names websocket; most requests carry no Upgrade, read at no cost."""
    return hdrs.UPGRADE in request.headers and "websocket" in _tokens(request, hdrs.UPGRADE)


def _handshake_problem(request: web.Request) -> str | None:
    """What is wrong with the request's WebSocket handshake (RFC 6455), if anything.

    A handshake is a GET in HTTP/1.1 or later (section 4.1); a POST may upgrade here too, to
    stream the order it creates.
    """
    if request.method not in (hdrs.METH_GET, hdrs.METH_POST):
        return "it must be a GET (or a POST of an order)"
    if request.version < HttpVersion11:
        return "it needs HTTP/1.1"
    if _tokens(request, hdrs.UPGRADE) != ["websocket"]:
        return "Upgrade must name websocket alone"
    if "upgrade" not in _tokens(request, hdrs.CONNECTION):
        return "Connection must include upgrade"
    keys = request.headers.getall(hdrs.SEC_WEBSOCKET_KEY, [])
    if len(keys) != 1 or not _is_websocket_key(keys[0]):
        return "Sec-WebSocket-Key must be 16 bytes in base64"
    if not web.WebSocketResponse().can_prepare(request).ok:
        return "the handshake cannot be accepted"
    return None


def _is_websocket_key(key: str) -> bool:
    try:
        return len(base64.b64decode(key.encode("ascii"), validate=True)) == 16
    except (UnicodeEncodeError, binascii.Error):
        return False


def refuse_foreign_origin(request: web.Request) -> None:
    """A 403 for a request from a page of another site: an `Origin` not the engine's own.

    The engine's own origin is the one its `Host` names. Two settings add others:
    `ORDERENGINE_ALLOWED_ORIGINS`, origins whose pages may open a WebSocket only, and
    `ORDERENGINE_CORS_ORIGINS`, those whose pages may also call the API (`security.py`). A
    request without `Origin` comes from no web page (a program), and passes. A
    WebSocket is the one way in a browser does not guard: a page may open one to any site,
    and its first message could be an order.
    """
    text = request.headers.get(hdrs.ORIGIN)
    if text is None:
        return
    origin = _origin(text)
    if origin is not None and (_is_own(origin, request.host) or _allowed(origin, request)):
        return
    raise ForeignOrigin(
        "a WebSocket may be opened only from the engine's own origin or an allowed one"
    )


def _origin(text: str) -> URL | None:
    """An origin (scheme, host, port) as a URL; None for "null" or anything else."""
    try:
        url = URL(text.strip())
        host = url.host  # decoded when asked: a UnicodeError (a ValueError) for bad punycode
    except ValueError:
        return None
    if url.scheme not in ("http", "https") or not host or url.path not in ("", "/"):
        return None
    return url


def _allowed(origin: URL, request: web.Request) -> bool:
    settings = request.app[SETTINGS]
    allowed = (_origin(text) for text in settings.allowed_origins + settings.cors_origins)
    return _key(origin) in {_key(url) for url in allowed if url is not None}


def _key(origin: URL) -> tuple[str, str, int | None]:
    return origin.scheme, (origin.host or "").lower(), origin.port


def _is_own(origin: URL, host: str) -> bool:
    """Whether `origin` is the engine's own: the host and port its `Host` header names.

    The scheme is not compared: behind a TLS proxy the engine itself speaks plain HTTP.
    """
    try:
        own = _key(URL.build(scheme=origin.scheme, authority=host))
    except (ValueError, TypeError):  # ValueError includes a UnicodeError for bad punycode
        return False
    return own == _key(origin)


def _digest(request: OrderRequest) -> str:
    """The order's fingerprint, which a resend under its Idempotency-Key must match.

    Of the order as validated, each amount by its value: `1`, `1.0` and `1e0` are one amount.
    """
    fields = request.model_dump(mode="json")
    for name, value in request:
        if isinstance(value, Decimal):
            fields[name] = plain_decimal(value.normalize())
    canonical = json.dumps(fields, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _idempotency_key(request: web.Request) -> str | None:
    """The request's Idempotency-Key, if it has one: 1 to 255 printable ASCII characters.

    Checked before the order joins a batch, so that a key the database could not store (bytes
    that are not UTF-8 arrive here as lone surrogates) is refused alone. The key is never
    echoed: it may be anything a client sent.
    """
    key = request.headers.get("Idempotency-Key")
    if key is not None and not (1 <= len(key) <= 255 and all(" " <= c <= "~" for c in key)):
        raise BadRequest("Idempotency-Key must be 1 to 255 printable ASCII characters")
    return key


async def submit(request: web.Request, order: OrderRequest) -> tuple[Order, bool]:
    """Commit `order` for the caller, under the request's `Idempotency-Key`, if any.

    `(order, created)`. A caller holding a stream token for one order may not submit; an
    owner over its limit per minute gets a 429 (`TooManyRequests`, from the intake).
    """
    key = _idempotency_key(request)
    caller = request[CALLER]
    caller.refuse_token_for_one_order()
    digest = _digest(order) if key else None
    return await request.app[ENGINE].submit(order, key, digest, caller.owner)


def visible(request: web.Request, order: Order) -> Order:
    """The order, if the caller may see it; another owner's is as unknown as no order."""
    require_visible(request, order.order_id, order.owner)
    return order


def require_visible(request: web.Request, order_id: UUID, owner: str | None) -> None:
    """`OrderNotFound` unless the caller may see the order `owner` holds."""
    if not request[CALLER].sees(order_id, owner):
        raise OrderNotFound(f"no order {order_id}")


def accepted(request: web.Request, order: Order) -> AcceptedMarketOrder | AcceptedWaitingOrder:
    """The answer to an accepted order; the same every time it is asked for again.

    While keys are in force its `ws` URL carries a stream token for the order, so that a
    browser, which cannot send a header on a socket, can follow it.
    """
    ws = f"{EXECUTE}?orderId={order.order_id}"
    if request.app[KEY_RING].in_force:
        ws += f"&token={request.app[STREAM_TOKENS].for_order(order.order_id)}"
    return accepted_order(order, ws)


def accepted_order(order: Order, ws: str) -> AcceptedMarketOrder | AcceptedWaitingOrder:
    """The accepted order's answer: a limit or sniper order's also shows its limit and wait."""
    shared = {
        "order_id": order.order_id,
        "status": OrderStatus.PENDING,
        "ws": ws,
        "type": order.type,
        "token_in": order.token_in,
        "token_out": order.token_out,
        "amount_in": order.amount_in,
        "slippage_bps": order.slippage_bps,
        "created_at": order.created_at,
    }
    if order.type == "market":
        return AcceptedMarketOrder.model_validate(shared)
    waits = {"limit_price": order.limit_price, "expires_at": order.expires_at}
    return AcceptedWaitingOrder.model_validate({**shared, **waits, "waiting": order.awaits})
