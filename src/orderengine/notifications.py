"""What the engines on the same database announce: events, orders to work on, listings, keys.

- on `EVENTS_CHANNEL`, lines of `"<engine_id> <order_id> <seq>"`, one per committed event.
  `Announcer` sends them after the commits, many per NOTIFY: PostgreSQL serialises the
  commits of every transaction that notifies, so one NOTIFY per status change would make
  every engine's status changes commit one at a time.
- on `ORDERS_CHANNEL`, `"<engine_id>"` whenever orders become available to work on, sent in
  the transaction that makes them so (once per batch of new orders, or per released lease).
- on `LISTINGS_CHANNEL`, `"<engine_id>"` after that engine's venue listed a pool: the other
  engines' venues learn it from the chain, and their sniper orders may be served now.
- on `KEYS_CHANNEL`, the name of an API key, sent by the keys command in the transaction that
  creates or revokes it: every engine reloads its keys.

`Listener` hears them on one dedicated connection and hands them to plain callbacks. A
notification is only a hint: the store remains the truth. One that is lost, malformed, or sent
while the listener is disconnected costs latency, never correctness, because the engine's
periodic sweep takes up unfinished orders, one periodic check of all the orders the sockets
follow (`events.check_followed`) finds the events they missed, a venue learns listings from
the chain whenever it looks for a pair it has no pool for, and the keys are reloaded every
sweep period in any case (`access.keep_loaded`).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from typing import TypeAlias
from uuid import UUID

import asyncpg
import structlog

from orderengine.postgres import CONNECTION_ERRORS

log = structlog.get_logger(__name__)

EVENTS_CHANNEL = "orderengine_events"
"""Payload: lines of `"<engine_id> <order_id> <seq>"`: the engine `engine_id` committed that
event."""

MAX_PAYLOAD_BYTES = 7_900
"""PostgreSQL refuses a NOTIFY payload of 8000 bytes or more."""

ORDERS_CHANNEL = "orderengine_orders"
"""Payload `"<engine_id>"`, or `"<engine_id> <accepted>"`: orders became available to work on
(released leases; new orders, of which `accepted` wait for nothing but a worker, for the other
engines' backlogs)."""

KEYS_CHANNEL = "orderengine_keys"
"""Payload: the name of an API key created or revoked; the engines reload their keys."""

LISTINGS_CHANNEL = "orderengine_listings"
"""Payload `"<engine_id>"`: a venue of that engine listed a pool for a new pair."""

RECONNECT_CAP_S = 30.0
"""The longest wait between the listener's attempts to reconnect."""

APPLICATION_NAME = "orderengine-listener"
"""The listener's connection as `pg_stat_activity` names it."""

OnEvent: TypeAlias = Callable[[UUID, int], None]
OnOrders: TypeAlias = Callable[[int], None]
OnListing: TypeAlias = Callable[[], None]
Connection: TypeAlias = "asyncpg.Connection[asyncpg.Record]"

_FAILURES: tuple[type[BaseException], ...] = (*CONNECTION_ERRORS, asyncpg.PostgresError)
"""What connecting, listening or checking the connection may raise: all mean reconnect."""


def event_payload(engine_id: UUID, order_id: UUID, seq: int) -> str:
    """The payload announcing on `EVENTS_CHANNEL` that `engine_id` committed this event."""
    return f"{engine_id} {order_id} {seq}"


def events_payloads(engine_id: UUID, events: list[tuple[UUID, int]]) -> list[str]:
    """The `EVENTS_CHANNEL` payloads announcing `events`, as few as fit the size limit."""
    payloads: list[str] = []
    lines: list[str] = []
    size = 0
    for order_id, seq in events:
        line = event_payload(engine_id, order_id, seq)
        if lines and size + len(line) + 1 > MAX_PAYLOAD_BYTES:
            payloads.append("\n".join(lines))
            lines, size = [], 0
        lines.append(line)
        size += len(line) + 1
    if lines:
        payloads.append("\n".join(lines))
    return payloads


class Announcer:
    """Announces this engine's committed events to the others, many per NOTIFY.

    The first event goes out at once; those committed while a NOTIFY is on its way go in the
    next one, as new orders do in a group commit. An announcement that fails is logged and
    dropped: the other engines' periodic check of the orders their sockets follow
    (`events.check_followed`) finds those events.
    """

    def __init__(self, engine_id: UUID, send: Callable[[str], Awaitable[None]]) -> None:
        self._engine_id = engine_id
        self._send = send
        self._pending: list[tuple[UUID, int]] = []
        self._sender: asyncio.Task[None] | None = None

    def announce(self, order_id: UUID, seq: int) -> None:
        """Announce a committed event; never blocks."""
        self._pending.append((order_id, seq))
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._send_pending())

    async def _send_pending(self) -> None:
        while self._pending:
            events, self._pending = self._pending, []
            for payload in events_payloads(self._engine_id, events):
                try:
                    await self._send(payload)
                except Exception as error:
                    log.warning("announcement_lost", events=len(events), error=str(error))

    async def close(self) -> None:
        """Let the announcements under way go out."""
        if self._sender is not None:
            await asyncio.gather(self._sender, return_exceptions=True)


def orders_payload(engine_id: UUID, accepted: int = 0) -> str:
    """The payload announcing on `ORDERS_CHANNEL` that `engine_id` made orders available.

    `accepted`: how many of them are new orders due at once. The batch of new orders writes
    its own, in its statement (`Repository.create_orders`), since only the statement knows.
    """
    return f"{engine_id} {accepted}" if accepted else str(engine_id)


def parse_event(payload: str) -> tuple[UUID, UUID, int]:
    """The engine id, order id and seq an `EVENTS_CHANNEL` payload names.

    Raises `ValueError` for anything but three fields: two UUIDs and a positive decimal seq.
    """
    engine_id, order_id, seq = payload.split(" ")
    if not (seq.isascii() and seq.isdigit()) or int(seq) < 1:
        raise ValueError(f"not a seq: {seq!r}")
    return UUID(engine_id), UUID(order_id), int(seq)


def parse_orders(payload: str) -> tuple[UUID, int]:
    """The engine id and the orders accepted an `ORDERS_CHANNEL` payload names.

    Raises `ValueError` for anything but a UUID, alone or with a decimal count.
    """
    engine_id, _, accepted = payload.partition(" ")
    if accepted and not (accepted.isascii() and accepted.isdigit()):
        raise ValueError(f"not a count: {accepted!r}")
    return UUID(engine_id), int(accepted or 0)


def listing_payload(engine_id: UUID) -> str:
    """The payload announcing on `LISTINGS_CHANNEL` that `engine_id` listed a pool."""
    return str(engine_id)


def parse_listing(payload: str) -> UUID:
    """The engine id a `LISTINGS_CHANNEL` payload names; `ValueError` if it is not one."""
    return UUID(payload)


def _nothing() -> None:
    """The callback of a listener that does not care about listings, or keys."""


class Listener:
    """Other engines' notifications, on one dedicated connection that is kept open.

    Opened with `Listener.open`. Each notification from another engine is handed to
    `on_event(order_id, seq)`, `on_orders(accepted)`, `on_listing()` or `on_keys()` (any
    engine's, and the keys command's: an API key was created or revoked), plain callbacks
    called on the event loop, which must not block; one that raises is logged and the
    listener carries on.
    The engine's own notifications (its `engine_id`) are ignored: it published those itself.
    Malformed payloads are ignored with a warning.

    When the connection is lost (the server ends it, the network fails, or a periodic check
    gets no answer within `timeout_s`), the listener reconnects, waiting `reconnect_s` at
    first and twice as long after each failed attempt, up to `RECONNECT_CAP_S` (or
    `reconnect_s`, if longer), until it is closed. While it is disconnected nothing is
    delivered and what was sent meanwhile is never heard: the engine's periodic sweep takes
    up orders whose wake-up was missed, and the check of the orders the sockets follow
    (`events.check_followed`) brings the events they missed. To shorten that gap,
    `on_orders(0)` is called once after each reconnection, since orders may have become
    available meanwhile; `on_listing()`, since pools may have been listed; and `on_keys()`.
    """

    def __init__(
        self,
        dsn: str,
        engine_id: UUID,
        on_event: OnEvent,
        on_orders: OnOrders,
        *,
        on_listing: OnListing = _nothing,
        on_keys: OnListing = _nothing,
        reconnect_s: float,
        check_s: float,
        timeout_s: float,
    ) -> None:
        self._dsn = dsn
        self._engine_id = engine_id
        self._own_events = f"{engine_id} "
        """How this engine's own announcements begin: `event_payload` puts its id first."""
        self._on_event = on_event
        self._on_orders = on_orders
        self._on_listing = on_listing
        self._on_keys = on_keys
        self._reconnect_s = reconnect_s
        self._reconnect_cap_s = max(RECONNECT_CAP_S, reconnect_s)
        self._check_s = check_s
        self._timeout_s = timeout_s
        self._connection: Connection | None = None
        self._first_attempt = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        dsn: str,
        engine_id: UUID,
        on_event: OnEvent,
        on_orders: OnOrders,
        *,
        on_listing: OnListing = _nothing,
        on_keys: OnListing = _nothing,
        reconnect_s: float = 1.0,
        check_s: float = 10.0,
        timeout_s: float = 5.0,
    ) -> AsyncIterator[Listener]:
        """A listener for engine `engine_id`, listening once this returns if it could connect.

        A database out of reach at first does not fail this: the listener keeps trying, as
        after losing its connection. On exit it stops listening and closes its connection.
        """
        listener = cls(
            dsn,
            engine_id,
            on_event,
            on_orders,
            on_listing=on_listing,
            on_keys=on_keys,
            reconnect_s=reconnect_s,
            check_s=check_s,
            timeout_s=timeout_s,
        )
        task = listener._task = asyncio.create_task(listener._run(), name="notification-listener")
        task.add_done_callback(_log_end)
        first_attempt = asyncio.create_task(listener._first_attempt.wait())
        try:
            await asyncio.wait([task, first_attempt], return_when=asyncio.FIRST_COMPLETED)
            if task.done():
                task.result()
            yield listener
        finally:
            first_attempt.cancel()
            await listener._close()

    @property
    def listening(self) -> bool:
        """Whether notifications are being heard now."""
        return self._connection is not None and not self._connection.is_closed()

    @property
    def pid(self) -> int | None:
        """The server process of the listening connection, or None while disconnected."""
        connection = self._connection
        if connection is None or connection.is_closed():
            return None
        return connection.get_server_pid()

    async def _run(self) -> None:
        """Connect, listen until the connection is lost, wait, and again, until cancelled."""
        delay = self._reconnect_s
        missed = False
        while True:
            try:
                connection, lost = await self._connect()
            except _FAILURES as error:
                log.warning("listener_connect_failed", error=repr(error), retry_in_s=delay)
                self._first_attempt.set()
                missed = True
                await asyncio.sleep(random.uniform(delay / 2, delay))
                delay = min(2 * delay, self._reconnect_cap_s)
                continue
            delay = self._reconnect_s
            self._connection = connection
            self._first_attempt.set()
            log.info("listener_connected", pid=connection.get_server_pid())
            if missed:
                self._call(self._on_orders, 0)
                self._call(self._on_listing)
                self._call(self._on_keys)
            await self._watch(connection, lost)
            self._connection = None
            connection.terminate()
            log.warning("listener_connection_lost", retry_in_s=delay)
            missed = True
            await asyncio.sleep(random.uniform(delay / 2, delay))

    async def _connect(self) -> tuple[Connection, asyncio.Event]:
        """A new connection listening on every channel, and what is set when it is lost."""
        connection: Connection = await asyncpg.connect(
            self._dsn,
            timeout=self._timeout_s,
            command_timeout=self._timeout_s,
            server_settings={"application_name": APPLICATION_NAME},
        )
        lost = asyncio.Event()
        try:
            connection.add_termination_listener(lambda _: lost.set())
            await connection.add_listener(EVENTS_CHANNEL, self._notified)
            await connection.add_listener(ORDERS_CHANNEL, self._notified)
            await connection.add_listener(LISTINGS_CHANNEL, self._notified)
            await connection.add_listener(KEYS_CHANNEL, self._notified)
        except BaseException:
            connection.terminate()
            raise
        return connection, lost

    async def _watch(self, connection: Connection, lost: asyncio.Event) -> None:
        """Return once the connection is lost, or fails to answer a check every `check_s`."""
        while True:
            with suppress(TimeoutError):
                await asyncio.wait_for(lost.wait(), self._check_s)
                return
            try:
                await connection.execute("SELECT 1", timeout=self._timeout_s)
            except _FAILURES as error:
                log.warning("listener_check_failed", error=repr(error))
                return

    def _notified(self, _connection: object, _pid: int, channel: str, payload: object) -> None:
        """Hand one notification to its callback, unless it is malformed or this engine's."""
        if self._closed:
            return
        text = str(payload)
        try:
            if channel == EVENTS_CHANNEL:
                self._events(text)
            elif channel == ORDERS_CHANNEL:
                self._orders(text)
            elif channel == LISTINGS_CHANNEL and parse_listing(text) != self._engine_id:
                self._call(self._on_listing)
            elif channel == KEYS_CHANNEL:
                self._call(self._on_keys)
        except ValueError:
            log.warning("notification_malformed", channel=channel, payload=text[:200])

    def _events(self, text: str) -> None:
        """Hand on each event another engine announced; this engine's own are skipped unread.

        An engine hears its own announcements too, about one per status change it commits.
        A payload holds one engine's events only, so one that begins with this engine's id is
        all its own: the check costs less than parsing a line's two UUIDs.
        """
        if text.startswith(self._own_events):
            return
        for line in text.split("\n"):
            _, order_id, seq = parse_event(line)
            self._call(self._on_event, order_id, seq)

    def _orders(self, text: str) -> None:
        """Hand on another engine's orders made available, with how many it accepted."""
        engine_id, accepted = parse_orders(text)
        if engine_id != self._engine_id:
            self._call(self._on_orders, accepted)

    @staticmethod
    def _call(callback: Callable[..., None], *args: object) -> None:
        try:
            callback(*args)
        except Exception:
            log.exception("notification_callback_failed", callback=repr(callback))

    async def _close(self) -> None:
        """Stop reconnecting, stop listening, close the connection."""
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        connection, self._connection = self._connection, None
        if connection is None or connection.is_closed():
            return
        try:
            await connection.remove_listener(EVENTS_CHANNEL, self._notified)
            await connection.remove_listener(ORDERS_CHANNEL, self._notified)
            await connection.remove_listener(LISTINGS_CHANNEL, self._notified)
            await connection.remove_listener(KEYS_CHANNEL, self._notified)
            await connection.close(timeout=self._timeout_s)
        except _FAILURES:
            connection.terminate()


def _log_end(task: asyncio.Task[None]) -> None:
    """Say so if the listener stopped for anything but being closed: it hears nothing more."""
    if not task.cancelled() and (error := task.exception()) is not None:
        log.error("listener_stopped", error=repr(error), exc_info=error)
