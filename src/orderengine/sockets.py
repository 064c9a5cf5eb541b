"""A server WebSocket's life: how it is made, read, written to and ended.

Both kinds of socket, an order's (`stream.py`) and the feed of all orders (`feed.py`), are
made by `server_socket` and served by `send_until_done`: one task sends while another reads
what the client sends (`until_client_leaves`), and the handler closes the socket once the
reader has stopped, with the code the sender ended on. A sender that meets an error sends it
and ends on its code (`error_ending`); one whose caller's key was revoked ends too
(`still_admitted`).

Part of the HTTP layer: only `stream.py` and `feed.py` import it.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Coroutine
from typing import Any

from aiohttp import WebSocketError, WSCloseCode, WSMsgType, web
from aiohttp.http_websocket import WebSocketWriter

from orderengine.client_frames import FRAMES_BURST, FRAMES_PER_MINUTE, ClientFrames
from orderengine.errors import OrderEngineError, TooManyRequests, Unauthorized, Unavailable
from orderengine.keys import CALLER, KEY_RING, SOCKETS
from orderengine.limiter import TokenBucket
from orderengine.wire import error_body

Ending = tuple[int, bytes]
"""The code and reason a socket is closed with."""


class ServerSocket(web.WebSocketResponse):
    """aiohttp's server socket, its client's frames checked, and dropped when it cannot flush.

    What the client sends passes `ClientFrames` before aiohttp's reader: a frame not masked,
    a close code no endpoint may send, or a flood of frames fails the socket. Installed once
    the socket is upgraded, in front of the reader aiohttp gives the connection
    (`_post_start`, the one place it does). The bytes that came with the handshake, which
    aiohttp would feed its reader as it installs it, go through `ClientFrames` too: the
    frames are judged from the first byte on, and where each one starts is never lost. What
    the system buffers for the client is bounded then too (`_bound_send_buffer`).

    aiohttp closes the connection when the client stops answering pings, or when a close
    takes too long. asyncio's `close` first writes out what is buffered; for a client that
    stopped reading (its receive window full) that is never, and the connection, its
    descriptor and the messages buffered for it would stay until the client left. A
    connection with data still unwritten is aborted instead. Overrides aiohttp's
    `_close_transport`, the one place it closes a socket's connection
    (`tests/integration/test_socket_limits.py` holds both overrides to that).
    """

    def _post_start(
        self, request: web.BaseRequest, protocol: str | None, writer: WebSocketWriter
    ) -> None:
        handler = request.protocol
        _bound_send_buffer(request)
        early, handler._message_tail = handler._message_tail, b""
        super()._post_start(request, protocol, writer)
        assert self._reader is not None
        assert self._heartbeat is not None
        handler._payload_parser = ClientFrames(
            handler._payload_parser,
            self._fail_at_once,
            TokenBucket(FRAMES_PER_MINUTE, FRAMES_BURST),
            frame_deadline_s=self._heartbeat,
        )
        if early:
            handler.data_received(early)

    def _fail_at_once(self, error: WebSocketError) -> None:
        """Fail the socket with `error` before any message its client sent is read.

        The messages waiting are dropped: a client flooding its socket has hundreds queued
        for a reader that takes ten a second, and its close would wait behind them.
        """
        assert self._reader is not None
        self._reader._buffer.clear()
        self._reader.set_exception(error)

    def _close_transport(self) -> None:
        transport = self._req.transport if self._req is not None else None
        if transport is not None and transport.get_write_buffer_size() > 0:
            transport.abort()
            return
        super()._close_transport()


SEND_BUFFER_BYTES = 64 * 1024
"""What the system may hold unsent for one socket's client (it doubles it for its own use)."""


def _bound_send_buffer(request: web.BaseRequest) -> None:
    """Bound what the system buffers for the socket's client, beyond aiohttp's own buffer.

    Left to itself Linux lets a connection's send buffer grow to 4 MiB, on loopback at once:
    a client that never reads had the engine read and write that much of its replay before
    it waited (a feed resumed from the start of a long history: 0.3 s of the engine's CPU
    for each such socket, which the client pays a handshake for). 64 KiB holds a few hundred
    events, and still carries a feed at some thousands a second across a slow link.
    """
    transport = request.transport
    connection = transport.get_extra_info("socket") if transport is not None else None
    if connection is not None:
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)


def server_socket(heartbeat_s: float, max_msg_size: int) -> web.WebSocketResponse:
    """A socket that pings its client every `heartbeat_s`, refusing messages over `max_msg_size`.

    aiohttp refuses a message as long as its bound too: the bound given it is one more.

    It compresses nothing: a client asking for permessage-deflate, as every browser does, is
    answered without it. The messages are JSON of a few hundred bytes, and a compressor kept
    per socket cost about 100 KiB of memory each (1,000 sockets asking for it: 224 MiB of
    engine RSS, against 121 without) and CPU on every message. A client that stops reading
    is dropped once it misses a ping's answer (`ServerSocket`). The client's own pings are
    answered by whoever reads the socket (`until_client_leaves`, or the wait for a first
    message), not by aiohttp as it reads: so they, and its pongs, count toward its allowance.
    """
    return ServerSocket(
        heartbeat=heartbeat_s, max_msg_size=max_msg_size + 1, compress=False, autoping=False
    )


CLIENT_MESSAGES_PER_MINUTE = 600
"""What a client may send on a socket once its order is under way, on average, read and
ignored: it has nothing to say but its close."""
CLIENT_MESSAGES_BURST = 60


async def until_client_leaves(
    ws: web.WebSocketResponse, allowance: TokenBucket | None = None
) -> None:
    """Read (and ignore) what the client sends until it closes the socket; answer its pings.

    No faster than `allowance` (by default `CLIENT_MESSAGES_PER_MINUTE`, after a burst of
    `CLIENT_MESSAGES_BURST`), pings and pongs included: a client flooding its socket is read
    at that pace, aiohttp stops reading its connection once 512 KiB of messages wait, and the
    heartbeat then drops it, since its answers to pings cannot arrive. Its flood costs the
    engine, and its other clients, next to nothing.
    """
    allowance = allowance or TokenBucket(CLIENT_MESSAGES_PER_MINUTE, CLIENT_MESSAGES_BURST)
    async for message in ws:
        await allowance.acquire()
        if message.type is WSMsgType.PING:
            await ws.pong(message.data)


def still_admitted(request: web.Request) -> None:
    """Raise `Unauthorized` if the key the request was made with was revoked since.

    A socket checks before each write: one opened with a key, or with a token made for its
    owner, stops receiving once the key is revoked (`KeyRing.admits`).
    """
    if not request.app[KEY_RING].admits(request[CALLER]):
        raise Unauthorized("the API key this socket was opened with was revoked", invalid=True)


async def send_until_done(
    request: web.Request, ws: web.WebSocketResponse, sending: Coroutine[Any, Any, Ending]
) -> web.WebSocketResponse:
    """Run `sending` until it ends, or the client leaves; then close with what it ended on.

    One task sends while another watches for the client leaving, the socket's only reader
    until the handler closes it. The handler closes only once that reader has stopped, so
    the close handshake is read here, in order: a client that reads its messages late still
    finds the normal close after them, not a dropped connection. A sender that closed the
    socket itself would be cancelled mid-close as the reader stopped, and its client see
    1006. Meanwhile the socket is among those closed with 1001 at shutdown.
    """
    sockets = request.app[SOCKETS]
    sockets.add(ws)
    sender = asyncio.create_task(sending)
    reader = asyncio.create_task(until_client_leaves(ws))
    try:
        await asyncio.wait({sender, reader}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        sockets.discard(ws)
        for task in (reader, sender):
            task.cancel()
        await asyncio.gather(reader, sender, return_exceptions=True)
    if sender.done() and not sender.cancelled() and sender.exception() is None:
        code, reason = sender.result()
        await ws.close(code=code, message=reason)
    return ws


async def error_ending(ws: web.WebSocketResponse, error: OrderEngineError) -> Ending:
    """Send `error` on the socket; what to close it with.

    1013 when the engine cannot serve now (the database out of reach, a full queue, a
    shutdown) or the key is over its rate: try again later. 1008 for anything else: the
    client's doing.
    """
    await ws.send_json(error_body(error.code, error.message, error.details))
    code = (
        WSCloseCode.TRY_AGAIN_LATER
        if isinstance(error, Unavailable | TooManyRequests)
        else WSCloseCode.POLICY_VIOLATION
    )
    return code, error.code.encode()
