"""The WebSocket protocol on the execute route: three ways in, stored then live, close codes.

- `GET ?orderId=ID[&since=SEQ]`: stream a known order's events after `since`;
- `GET` with no order: the first message is the order; the answer is the accepted order,
  then its events; an invalid first message gets the error object and close 1008;
- `POST` with `Upgrade: websocket`: the body is the order, validated before the upgrade.

Every stream sends the order's events after `since`, each seq once and in order: the stored
ones, then live ones as the hub announces them, with the store filling any publish that was
lost (`events.follow`). Whichever engine sharing the database works the order, every socket
on every engine sees it: events committed by another engine reach the hub as hints (their seq
only, from `notifications.Listener`), and the socket reads them from the store. It closes
1000 after the terminal event; 4000 when the client fell behind, 1013 when the database is out
of reach, 1001 at shutdown (see `app.py`).
"""

from __future__ import annotations

import asyncio
from contextlib import aclosing
from dataclasses import dataclass
from uuid import UUID

from aiohttp import WSCloseCode, WSMessage, WSMsgType, hdrs, web

from orderengine.domain import Order, OrderEvent, OrderRequest
from orderengine.errors import BadRequest, OrderEngineError
from orderengine.events import FellBehind, Subscription, follow
from orderengine.frames import send_texts
from orderengine.keys import CALLER, HUB, KEY_SOCKETS, REPOSITORY, SETTINGS, SOCKETS
from orderengine.sockets import (
    Ending,
    error_ending,
    send_until_done,
    server_socket,
    still_admitted,
)
from orderengine.wire import (
    accepted,
    non_negative,
    order_from_message,
    order_id,
    require_visible,
    submit,
)

FELL_BEHIND = 4000
"""Close code for a client that stopped reading; it may reconnect with `since=`."""


def _websocket(request: web.Request) -> web.WebSocketResponse:
    """A socket that pings its client and refuses messages larger than a body may be.

    A client that stops answering pings is dropped.
    """
    settings = request.app[SETTINGS]
    return server_socket(settings.ws_heartbeat_s, settings.max_body_bytes)


def upgrading(request: web.Request) -> bool:
    """Whether the request asks, validly, to become a WebSocket.

    Most requests do not ask at all: they are told so from one header, before aiohttp's full
    check, which raises and catches an exception to say no.
    """
    if request.headers.get(hdrs.UPGRADE, "").lower().strip() != "websocket":
        return False
    return _websocket(request).can_prepare(request).ok


async def upgrade_after_post(request: web.Request, order: OrderRequest) -> web.StreamResponse:
    """A POST that upgrades: commit the order, switch protocols, send it, stream it.

    Refused, with no order made, when its key holds as many sockets as a key may.
    """
    ws = _websocket(request)
    with request.app[KEY_SOCKETS].held(request[CALLER].holder()):
        committed, _ = await submit(request, order)
        await ws.prepare(request)
        await ws.send_str(accepted(request, committed).json_text())
        return await _stream_from_store(request, ws, committed.order_id)


async def watch(request: web.Request) -> web.StreamResponse:
    """GET on the execute route: stream a known order, or take one as the first message."""
    ws = _websocket(request)
    if not ws.can_prepare(request).ok:
        raise web.HTTPMethodNotAllowed(
            request.method, ["POST"], text="GET here must upgrade to a WebSocket"
        )
    if "orderId" in request.query:
        wanted = order_id(request.query["orderId"])
        since = non_negative("since", request.query.get("since"), 0)
        with request.app[HUB].subscribe(wanted) as subscription:
            owner, stored = await request.app[REPOSITORY].owner_and_events(wanted, since)
            require_visible(request, wanted, owner)
            with request.app[KEY_SOCKETS].held(request[CALLER].holder(owner)):
                await ws.prepare(request)
                following = Following(wanted, since, subscription, stored)
                return await _stream(request, ws, following)
    if "since" in request.query:
        raise BadRequest("since is for following an order: give its orderId too")
    # Before the upgrade: such a socket would only wait to refuse the order it is sent, and
    # a token for one order holds no place among its owner's sockets (`Caller.holder`).
    request[CALLER].refuse_token_for_one_order()
    with request.app[KEY_SOCKETS].held(request[CALLER].holder()):
        return await _stream_first_message(request, ws)


async def _stream_first_message(
    request: web.Request, ws: web.WebSocketResponse
) -> web.WebSocketResponse:
    """Take the order the socket's first message carries, then stream it."""
    await ws.prepare(request)
    # Closed with 1001 at shutdown while it waits for its order, too.
    request.app[SOCKETS].add(ws)
    order = await _order_from_first_message(request, ws)
    if order is None:
        request.app[SOCKETS].discard(ws)
        return ws
    await ws.send_str(accepted(request, order).json_text())
    return await _stream_from_store(request, ws, order.order_id)


async def _order_from_first_message(
    request: web.Request, ws: web.WebSocketResponse
) -> Order | None:
    """Accept the order sent as the socket's first message; on error, say why and close 1008."""
    settings = request.app[SETTINGS]
    try:
        async with asyncio.timeout(settings.ws_first_message_timeout_s):
            message = await _first_message(ws)
        if message.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
            return None
        still_admitted(request)  # the key may have been revoked while the socket waited
        order, _ = await submit(request, order_from_message(request, message.data))
    except TimeoutError:
        await _refuse(ws, BadRequest("no order arrived on the socket in time"))
        return None
    except OrderEngineError as error:
        await _refuse(ws, error)
        return None
    return order


async def _first_message(ws: web.WebSocketResponse) -> WSMessage:
    """The client's first message; its pings are answered, and its pongs passed over, meanwhile.

    Under one deadline, the caller's: aiohttp's own timeout would start again at every ping.
    """
    while True:
        message = await ws.receive()
        if message.type is WSMsgType.PING:
            await ws.pong(message.data)
        elif message.type is not WSMsgType.PONG:
            return message


async def _refuse(ws: web.WebSocketResponse, error: OrderEngineError) -> None:
    code, reason = await error_ending(ws, error)
    await ws.close(code=code, message=reason)


@dataclass(frozen=True)
class Following:
    """What a stream sends: the order's events after `since`.

    The first of them are `stored`, read after `subscription` opened; None to read them when
    the stream starts.
    """

    order_id: UUID
    since: int
    subscription: Subscription
    stored: list[OrderEvent] | None = None


async def _stream_from_store(
    request: web.Request, ws: web.WebSocketResponse, order_id: UUID
) -> web.WebSocketResponse:
    """`_stream` of every event of a new order, read from the store once subscribed."""
    with request.app[HUB].subscribe(order_id) as subscription:
        return await _stream(request, ws, Following(order_id, 0, subscription))


async def _stream(
    request: web.Request, ws: web.WebSocketResponse, following: Following
) -> web.WebSocketResponse:
    """Send the order's events after `since` until its terminal one, then close 1000."""
    return await send_until_done(request, ws, _send_events(request, ws, following))


async def _send_events(
    request: web.Request, ws: web.WebSocketResponse, following: Following
) -> Ending:
    """Send every event after `since`, each once and in order; the code to close with.

    1000 after the last event; 4000 when the client fell behind; 1013 when the store could
    not be read; 1008 once the caller's key is revoked (`sockets.error_ending`). The store
    is the truth and the hub's publishes only hints: a gap between hints, or a hint of an
    event another engine committed, is filled by reading the store, and what the hub lost is
    found every `ws_idle_check_s` for all sockets at once (see `events.py`), so a lost
    publish or notification, even of the terminal event, neither leaves a hole nor a socket
    open. The events that come together are written together (`frames.send_texts`).
    """
    app = request.app
    last = following.since
    events = follow(
        app[REPOSITORY],
        following.subscription,
        following.order_id,
        following.since,
        following.stored,
    )
    try:
        async with aclosing(events):
            async for run in events:
                still_admitted(request)
                await send_texts(request, ws, (event.message for event in run))
                last = run[-1].seq
    except FellBehind:
        return FELL_BEHIND, f"fell behind; resume with since={last}".encode()
    except OrderEngineError as error:
        return await error_ending(ws, error)
    return WSCloseCode.OK, b""
