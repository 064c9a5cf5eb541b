"""Other engines' notifications, heard on the real database; one order streamed across two apps.

A `Listener` is opened on this test's database, and another connection plays the other
engines, sending exactly the notifications each test chooses. Notifications one session sends
are delivered in the order sent, so a test sends what must be ignored first and then one that
must be heard: once the latter arrives, the former would have arrived before it.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any, TypeAlias
from uuid import UUID

import asyncpg
import pytest
from structlog.testing import capture_logs

from orderengine.notifications import (
    APPLICATION_NAME,
    EVENTS_CHANNEL,
    ORDERS_CHANNEL,
    Listener,
    event_payload,
    events_payloads,
    orders_payload,
)
from orderengine.venues.values import Quote
from orderengine.venues.venue import Venue
from tests.harness import StartApp, with_database
from tests.polling import eventually
from tests.streams import MARKET, read_until_closed, seqs, submit
from tests.venues import Wrapped, wrapping

ME = uuid.uuid4()
"""The engine the listener under test belongs to."""
OTHER = uuid.uuid4()
"""Another engine on the same database."""
ORDER = uuid.uuid4()
NEVER_S = 600.0

Heard: TypeAlias = tuple[str, UUID, int] | tuple[str, int]
PgConnection: TypeAlias = "asyncpg.Connection[asyncpg.Record]"


class Callbacks:
    """The listener's callbacks: what they are called with, in order."""

    def __init__(self) -> None:
        self.heard: asyncio.Queue[Heard] = asyncio.Queue()

    def on_event(self, order_id: UUID, seq: int) -> None:
        self.heard.put_nowait(("event", order_id, seq))

    def on_orders(self, accepted: int) -> None:
        self.heard.put_nowait(("orders", accepted))

    async def next(self) -> Heard:
        async with asyncio.timeout(5):
            return await self.heard.get()


@pytest.fixture
async def sender(database_url: str) -> AsyncIterator[PgConnection]:
    """A connection of the test's own, playing the other engines."""
    connection = await asyncpg.connect(database_url)
    yield connection
    await connection.close()


async def notify(connection: PgConnection, channel: str, payload: str) -> None:
    await connection.execute("SELECT pg_notify($1, $2)", channel, payload)


@contextlib.asynccontextmanager
async def listening(dsn: str, callbacks: Callbacks, **options: Any) -> AsyncIterator[Listener]:
    async with Listener.open(
        dsn, ME, callbacks.on_event, callbacks.on_orders, reconnect_s=0.05, **options
    ) as listener:
        yield listener


async def test_another_engines_events_and_orders_reach_the_callbacks(
    database_url: str, sender: PgConnection
) -> None:
    callbacks = Callbacks()
    async with listening(database_url, callbacks) as listener:
        assert listener.listening
        await notify(sender, EVENTS_CHANNEL, f"{OTHER} {ORDER} 3")
        await notify(sender, ORDERS_CHANNEL, str(OTHER))
        await notify(sender, ORDERS_CHANNEL, orders_payload(OTHER, 7))
        await notify(sender, EVENTS_CHANNEL, event_payload(OTHER, ORDER, 12))

        assert await callbacks.next() == ("event", ORDER, 3)
        assert await callbacks.next() == ("orders", 0)
        assert await callbacks.next() == ("orders", 7)
        assert await callbacks.next() == ("event", ORDER, 12)


async def test_its_own_engines_notifications_are_ignored(
    database_url: str, sender: PgConnection
) -> None:
    callbacks = Callbacks()
    async with listening(database_url, callbacks):
        await notify(sender, EVENTS_CHANNEL, event_payload(ME, ORDER, 3))
        await notify(sender, ORDERS_CHANNEL, orders_payload(ME))
        await notify(sender, EVENTS_CHANNEL, event_payload(OTHER, ORDER, 4))

        assert await callbacks.next() == ("event", ORDER, 4)
        assert callbacks.heard.empty()


async def test_malformed_payloads_are_ignored_with_a_warning(
    database_url: str, sender: PgConnection
) -> None:
    malformed = [
        (EVENTS_CHANNEL, ""),
        (EVENTS_CHANNEL, "garbage"),
        (EVENTS_CHANNEL, f"{OTHER}"),
        (EVENTS_CHANNEL, f"{OTHER} {ORDER}"),
        (EVENTS_CHANNEL, f"{OTHER} {ORDER} 3 4"),
        (EVENTS_CHANNEL, f"{OTHER}  {ORDER} 3"),
        (EVENTS_CHANNEL, f"{OTHER} {ORDER} 0"),
        (EVENTS_CHANNEL, f"{OTHER} {ORDER} -3"),
        (EVENTS_CHANNEL, f"{OTHER} {ORDER} 3.0"),
        (EVENTS_CHANNEL, f"{OTHER} {ORDER} ٣"),
        (EVENTS_CHANNEL, f"{OTHER} not-an-order 3"),
        (EVENTS_CHANNEL, f"not-an-engine {ORDER} 3"),
        (ORDERS_CHANNEL, ""),
        (ORDERS_CHANNEL, "not-an-engine"),
        (ORDERS_CHANNEL, f"{OTHER} {OTHER}"),
        (ORDERS_CHANNEL, f"{OTHER} -1"),
        (ORDERS_CHANNEL, f"{OTHER} 1.5"),
        (ORDERS_CHANNEL, f"{OTHER} ٣"),
    ]
    callbacks = Callbacks()
    with capture_logs() as logs:
        async with listening(database_url, callbacks):
            for channel, payload in malformed:
                await notify(sender, channel, payload)
            await notify(sender, EVENTS_CHANNEL, event_payload(OTHER, ORDER, 3))

            assert await callbacks.next() == ("event", ORDER, 3)
            assert callbacks.heard.empty()

    warned = [line for line in logs if line["event"] == "notification_malformed"]
    assert [(line["channel"], line["payload"]) for line in warned] == malformed


async def test_a_callback_that_raises_is_logged_and_the_next_notification_still_heard(
    database_url: str, sender: PgConnection
) -> None:
    callbacks = Callbacks()
    calls = 0

    def first_fails(order_id: UUID, seq: int) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("the first callback fails")
        callbacks.on_event(order_id, seq)

    with capture_logs() as logs:
        async with Listener.open(database_url, ME, first_fails, callbacks.on_orders):
            await notify(sender, EVENTS_CHANNEL, event_payload(OTHER, ORDER, 1))
            await notify(sender, EVENTS_CHANNEL, event_payload(OTHER, ORDER, 2))
            assert await callbacks.next() == ("event", ORDER, 2)

    assert [line["event"] for line in logs].count("notification_callback_failed") == 1


async def test_it_hears_again_after_the_server_ends_its_connection(
    database_url: str, sender: PgConnection
) -> None:
    callbacks = Callbacks()
    with capture_logs() as logs:
        async with listening(database_url, callbacks) as listener:
            first_pid = listener.pid
            assert first_pid is not None
            assert await sender.fetchval("SELECT pg_terminate_backend($1)", first_pid)

            async def reconnected() -> bool:
                return listener.pid not in (None, first_pid)

            await eventually(reconnected, limit_s=10)
            assert await callbacks.next() == ("orders", 0), "what was missed may be waiting"
            await notify(sender, EVENTS_CHANNEL, event_payload(OTHER, ORDER, 7))
            assert await callbacks.next() == ("event", ORDER, 7)

    assert "listener_connection_lost" in [line["event"] for line in logs]


async def test_a_database_out_of_reach_at_open_is_listened_to_once_it_is_there(
    server_url: str,
) -> None:
    name = f"test_{uuid.uuid4().hex}"
    dsn = with_database(server_url, name)
    callbacks = Callbacks()
    async with listening(dsn, callbacks) as listener:
        assert not listener.listening
        admin = await asyncpg.connect(server_url)
        try:
            await admin.execute(f"CREATE DATABASE {name}")
        finally:
            await admin.close()

        async def connected() -> bool:
            return listener.listening

        await eventually(connected, limit_s=10)
        assert await callbacks.next() == ("orders", 0), "what was missed may be waiting"
        sender = await asyncpg.connect(dsn)
        try:
            await notify(sender, ORDERS_CHANNEL, orders_payload(OTHER))
            assert await callbacks.next() == ("orders", 0)
        finally:
            await sender.close()


async def test_closing_ends_its_connection(database_url: str, sender: PgConnection) -> None:
    async def listeners() -> int:
        count: int = await sender.fetchval(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND application_name = $1",
            APPLICATION_NAME,
        )
        return count

    async with listening(database_url, Callbacks()) as listener:
        assert await listeners() == 1
    assert not listener.listening

    async def gone() -> bool:
        return await listeners() == 0

    await eventually(gone, limit_s=5)


class HeldQuotes(Wrapped):
    """A venue whose quotes wait until `opened` is set."""

    def __init__(self, inner: Venue, opened: asyncio.Event) -> None:
        super().__init__(inner)
        self.opened = opened

    async def quote(self, token_in: str, token_out: str, amount_in: Decimal) -> Quote:
        await self.opened.wait()
        return await super().quote(token_in, token_out, amount_in)


async def test_an_order_posted_to_one_app_is_streamed_whole_by_another(
    start_app: StartApp, database_url: str
) -> None:
    """A client posts to engine A and watches on engine B: the whole stream, then 1000.

    A's quotes wait until B's socket has its replay, so what follows is committed by A (its
    dispatcher is woken first) while B watches. B never checks the orders its sockets follow
    and never sweeps: each later event reaches B's socket because A's repository announced
    its seq and B's listener hinted B's hub, which had the socket read it from the store. Were
    the order worked by B instead, B's own publishes would serve; the stream must be whole
    either way.
    """
    quotes = asyncio.Event()
    a = await start_app(venues=wrapping(lambda venue: HeldQuotes(venue, quotes)))
    b = await start_app(sweep_s=NEVER_S, ws_idle_check_s=NEVER_S)
    order_id = await submit(a, MARKET)
    async with b.ws_connect(f"/api/orders/execute?orderId={order_id}") as ws:
        async with asyncio.timeout(5):
            first = await ws.receive_json()
        quotes.set()
        rest = await read_until_closed(ws, limit_s=10)

    streamed = [first, *rest]
    stored = (await (await a.get(f"/api/orders/{order_id}")).json())["events"]
    assert seqs(streamed) == list(range(1, len(streamed) + 1))
    assert [event["status"] for event in streamed] == [
        "pending",
        "routing",
        "building",
        "submitted",
        "confirmed",
    ]
    assert streamed == stored
    assert ws.close_code == 1000


async def test_many_events_announced_in_one_notification_each_reach_the_callback(
    database_url: str, sender: PgConnection
) -> None:
    events = [(uuid.uuid4(), seq) for seq in range(1, 4)]
    callbacks = Callbacks()
    async with listening(database_url, callbacks):
        [payload] = events_payloads(OTHER, events)
        await notify(sender, EVENTS_CHANNEL, payload)

        heard = [await callbacks.next() for _ in events]

    assert heard == [("event", order_id, seq) for order_id, seq in events]
