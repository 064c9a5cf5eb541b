"""The feed of all orders: one WebSocket, `GET /api/events`, with every event in order.

Each message is an event as an order's socket sends it, with its global `position`. A client
resumes with `?after=POSITION` (the last one it has); without it, the feed starts with the
events committed from the moment it connects. While keys are in force it shows the caller's
orders only; with none, every order.

Positions are given once events are committed, by one sequencer at a time across the
engines (`FeedStore.sequence`), which each feed runs before it reads: so a reader that
has seen position P has seen every position below it, whichever engine committed what, and
resuming after P misses nothing. The feed asks for new events whenever the hub has news (an
event committed here, or announced by another engine) and every `ORDERENGINE_WS_IDLE_CHECK_S`
in any case; the newest are read once for all the feeds of the engine (`feed_tail.py`).

Part of the HTTP layer: only the route table (`routes.py`) imports it.
"""

from __future__ import annotations

import asyncio

from aiohttp import hdrs, web

from orderengine.errors import BadRequest, OrderEngineError
from orderengine.feed_store import FeedEntry
from orderengine.frames import send_texts
from orderengine.keys import CALLER, FEED_TAIL, HUB, KEY_SOCKETS, REPOSITORY, SETTINGS
from orderengine.sockets import (
    Ending,
    error_ending,
    send_until_done,
    server_socket,
    still_admitted,
)
from orderengine.wire import INT64_MAX, non_negative


async def follow_all(request: web.Request) -> web.StreamResponse:
    """Stream every event of every order the caller may see, from `after` on, until it leaves."""
    caller = request[CALLER]
    caller.refuse_token_for_one_order()
    settings = request.app[SETTINGS]
    ws = server_socket(settings.ws_heartbeat_s, settings.max_body_bytes)
    if not ws.can_prepare(request).ok:
        raise web.HTTPUpgradeRequired(
            headers={hdrs.UPGRADE: "websocket"}, text="GET here must upgrade to a WebSocket"
        )
    after = await _resumed_after(request)
    with request.app[KEY_SOCKETS].held(caller.holder()):
        await ws.prepare(request)
        return await send_until_done(request, ws, _send(request, ws, after, caller.owner))


async def _resumed_after(request: web.Request) -> int:
    """The position the feed starts after: `after`, or the newest given when there is none.

    A position beyond the newest was never given here (one from another database, say):
    the feed would skip every event until positions reach it, so it is a 400.
    """
    given = request.query.get("after")
    feed = request.app[REPOSITORY].feed
    if given is None:
        await feed.sequence()
        return await feed.position()
    after = non_negative("after", given, 0, maximum=INT64_MAX)
    newest = await feed.position()
    if after > newest:
        raise BadRequest(
            f"after is beyond the newest position, {newest}: it is not a position of this feed"
        )
    return after


async def _send(
    request: web.Request, ws: web.WebSocketResponse, after: int, owner: str | None
) -> Ending:
    """Send the events after `after` until the socket must close; the code to close with.

    1013 when the store cannot be read; 1008 once the caller's key is revoked
    (`sockets.error_ending`).
    """
    app = request.app
    idle_s = app[SETTINGS].ws_idle_check_s
    while True:
        news = asyncio.ensure_future(app[HUB].news(idle_s))
        try:
            page = await app[FEED_TAIL].after(after, owner)
            if page.entries:
                still_admitted(request)
        except OrderEngineError as error:
            news.cancel()
            return await error_ending(ws, error)
        if page.entries:
            await send_texts(request, ws, (_message(entry) for entry in page.entries))
        after = page.through
        if page.more:
            news.cancel()
            continue
        await news


def _message(entry: FeedEntry) -> str:
    """The feed's message of an event: the order socket's, with the event's position first."""
    return f'{{"position": {entry.position}, {entry.event.message[1:]}'
