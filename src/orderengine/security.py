"""The HTTP layer's guards: API keys, cross-origin requests, and the headers every answer has.

- `access_middleware` names the caller of every request (`CALLER`). With no key in force
  everyone is `OPEN`, as long as the request names this machine (`Host`) on an engine
  listening on loopback: anything else is a 403 `forbidden_host`. With keys, every
  `/api/...` route but the API's own description needs `Authorization: Bearer KEY`, or, on
  a socket's GET (an order's stream, the feed), a stream token as `?token=`; anything else
  is a 401 with `WWW-Authenticate`. Listing a pool also needs an admin key.
- `cors_middleware` answers preflights from `ORDERENGINE_CORS_ORIGINS` and marks the answers
  to those origins; no other origin is allowed anything.
- `headers_middleware` adds the usual security headers to every answer.

Part of the HTTP layer: only `app.py` and the route table (`routes.py`) import it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import hdrs, web

from orderengine.access import OPEN, Caller, is_loopback, names_this_machine
from orderengine.answers import StreamToken
from orderengine.errors import Forbidden, ForeignHost, Unauthorized
from orderengine.keys import CALLER, KEY_RING, SETTINGS, STREAM_TOKENS
from orderengine.wire import (
    API_HEADERS,
    EXECUTE,
    FEED,
    LISTINGS_PATH,
    SECURITY_HEADERS,
    SERVED_HTTP,
    error_body,
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

PUBLIC = frozenset({"/api/openapi.json", "/api/asyncapi.json", "/api/docs"})
"""The API's own description is open to all, as `/health` and `/metrics` are."""
ADMIN_ONLY = frozenset({("POST", LISTINGS_PATH)})
"""Routes that need a key named in `ORDERENGINE_ADMIN_KEYS` while keys are in force."""
STREAM_TOKENS_PATH = "/api/stream-tokens"
SOCKETS = frozenset({EXECUTE, FEED})
"""The sockets' GETs, where a browser, which cannot send a header, may give a stream token."""
CORS_HEADERS = "Authorization, Content-Type, Idempotency-Key"
CORS_METHODS = "GET, POST, DELETE, OPTIONS"
CORS_EXPOSED = "Location, Retry-After, WWW-Authenticate"
"""The answer headers a page on an allowed origin may read."""


@web.middleware
async def access_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Name the caller, or refuse the request with a 401 (a 403 for an admin's route)."""
    request[CALLER] = _caller(request)
    if (request.method, request.path) in ADMIN_ONLY and not request[CALLER].admin:
        raise Forbidden("listing a pool needs a key named in ORDERENGINE_ADMIN_KEYS")
    return await handler(request)


def _caller(request: web.Request) -> Caller:
    ring = request.app[KEY_RING]
    if not ring.in_force:
        _refuse_foreign_host(request)
        return OPEN
    if not request.path.startswith("/api/") or request.path in PUBLIC:
        return OPEN
    authorization = request.headers.get(hdrs.AUTHORIZATION)
    if authorization is not None:
        scheme, _, key = authorization.partition(" ")
        caller = ring.caller(key.strip()) if scheme.lower() == "bearer" else None
        if caller is None:
            raise Unauthorized("the API key is wrong or revoked", True)
        return caller
    token = request.query.get("token")
    if token is not None and request.method == "GET" and request.path in SOCKETS:
        grant = request.app[STREAM_TOKENS].read(token)
        if grant is None:
            raise Unauthorized(
                "the stream token is malformed, tampered with or expired", invalid=True
            )
        if grant.owner is None:
            return Caller(owner=None, admin=False, order_id=grant.order_id)
        tokens = request.app[STREAM_TOKENS]
        made_with = ring.key_of(grant.owner, grant.key, tokens.fingerprint)
        if made_with is None:
            raise Unauthorized("the key this stream token was made with is revoked", invalid=True)
        return Caller(owner=grant.owner, admin=False, key=made_with)
    raise Unauthorized("an API key is needed: send Authorization: Bearer KEY", False)


def _refuse_foreign_host(request: web.Request) -> None:
    """With no key, an engine on loopback answers only requests naming this machine.

    One told to serve a network openly (`ORDERENGINE_ALLOW_ANONYMOUS`, another address)
    answers any.
    """
    if is_loopback(request.app[SETTINGS].host) and not names_this_machine(request.host):
        raise ForeignHost(
            "with no API key this engine answers only requests to this machine (Host:"
            " localhost or a loopback address); create a key to serve others"
        )


async def stream_token(request: web.Request) -> web.Response:
    """`POST /api/stream-tokens`: a token for a socket to act as the caller's key.

    For a browser, which cannot send a header on a socket: open the execute route with
    `?token=` and send the order as the first message. 201 with the token, its expiry and
    the socket's URL.
    """
    caller = request[CALLER]
    caller.refuse_token_for_one_order()
    token, expires_at = request.app[STREAM_TOKENS].for_owner(caller.owner or "", caller.key)
    answer = StreamToken(token=token, expires_at=expires_at, ws=f"{EXECUTE}?token={token}")
    return web.json_response(answer.wire(), status=201)


@web.middleware
async def cors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer a preflight from an allowed origin; mark the answers that origin may read.

    A preflight is answered on the paths the engine serves, each of which has its OPTIONS
    route; on any other path it is the 404 every request there gets. Outside the error
    middleware, so that an error's answer is marked too.
    """
    origin = request.headers.get(hdrs.ORIGIN)
    allowed = origin is not None and origin in request.app[SETTINGS].cors_origins
    preflight = (
        request.method == "OPTIONS"
        and hdrs.ACCESS_CONTROL_REQUEST_METHOD in request.headers
        and request.version in SERVED_HTTP
        and request.match_info.route.method == hdrs.METH_OPTIONS
    )
    if preflight and not allowed:
        refused = error_body("forbidden_origin", "this origin may not call the API from a browser")
        return web.json_response(refused, status=403)
    if preflight:
        response: web.StreamResponse = web.Response(status=204, headers=_preflight_headers())
    else:
        response = await handler(request)
    if allowed and not response.prepared:
        response.headers[hdrs.ACCESS_CONTROL_ALLOW_ORIGIN] = str(origin)
        response.headers[hdrs.ACCESS_CONTROL_EXPOSE_HEADERS] = CORS_EXPOSED
        response.headers.add(hdrs.VARY, "Origin")
    return response


def _preflight_headers() -> dict[str, str]:
    return {
        hdrs.ACCESS_CONTROL_ALLOW_METHODS: CORS_METHODS,
        hdrs.ACCESS_CONTROL_ALLOW_HEADERS: CORS_HEADERS,
        hdrs.ACCESS_CONTROL_MAX_AGE: "600",
    }


@web.middleware
async def headers_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The security headers on every answer; no caching and no content policy for the API's."""
    response = await handler(request)
    if response.prepared:
        return response
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if request.path.startswith("/api/"):
        for name, value in API_HEADERS.items():
            response.headers.setdefault(name, value)
    return response
