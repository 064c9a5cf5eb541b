"""Streams with no holes: the store is the truth, the hub's publishes and hints only hints.

Each test moves one order by hand through the real repository, on the real app, and publishes
on the app's hub exactly the events it chooses, or hints exactly the seqs it chooses, as the
app does for events another engine committed. The app's engine writes nothing for that order:
it may claim it, but its venues never answer a quote. So a lost publish, a replay that
overlaps live events, a client that falls behind and a database out of reach are each
forced, not waited for by chance.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

import aiohttp
import asyncpg
import pytest

from orderengine.domain import NewOrder, Order, OrderEvent, OrderRequest, OrderStatus
from orderengine.errors import DatabaseUnavailable, OrderNotFound
from orderengine.events import REPLAY_PAGE
from orderengine.keys import HUB, REPOSITORY
from orderengine.repository import Repository
from tests.harness import Client, StartApp
from tests.streams import read_until_closed, seqs, stream
from tests.venues import Stalled, wrapping

S = OrderStatus
REQUEST = OrderRequest(type="market", token_in="SOL", token_out="USDC", amount_in=Decimal(1))
NEVER_S = 600.0
"""An interval no test lives to see: a check of followed orders, or a quote that never comes."""


async def quiet_app(start_app: StartApp, **settings: Any) -> Client:
    """The real app, whose engine writes no event: its venues never answer a quote.

    Its engine may still claim a test's order (it hears of every new order), so tests write
    through the app's own repository, whose engine then holds the lease.
    """
    return await start_app(venues=wrapping(Stalled), quote_timeout_s=NEVER_S, **settings)


async def accepted(repository: Repository) -> Order:
    [outcome] = await repository.create_orders([NewOrder(request=REQUEST)])
    assert not isinstance(outcome, Exception)
    return outcome[0]


async def moved(
    repository: Repository, order: Order, *path: OrderStatus
) -> tuple[Order, list[OrderEvent]]:
    """Commit each status change of `path` in turn; the order after them, and their events."""
    committed = []
    for status in path:
        order, event = await repository.transition(order, status)
        committed.append(event)
    return order, committed


def watch(client: Client, order: Order, since: int | None = None) -> Any:
    query = f"orderId={order.order_id}" + (f"&since={since}" if since is not None else "")
    return client.ws_connect(f"/api/orders/execute?{query}")


async def receive(ws: aiohttp.ClientWebSocketResponse, count: int) -> list[dict[str, Any]]:
    """The next `count` messages; failing, not hanging, when they do not come."""
    async with asyncio.timeout(5):
        return [await ws.receive_json() for _ in range(count)]


async def read_until_close_frame(
    ws: aiohttp.ClientWebSocketResponse,
) -> tuple[list[dict[str, Any]], str]:
    """Every message until the server's close frame, and the reason that frame gives."""
    messages = []
    async with asyncio.timeout(5):
        while (message := await ws.receive()).type == aiohttp.WSMsgType.TEXT:
            messages.append(message.json())
    assert message.type == aiohttp.WSMsgType.CLOSE, message
    return messages, str(message.extra)


class PausedRead:
    """The app's reads for sockets on known orders; the first of `order_id` holds its answer.

    It reads the store (the order's owner and its events), says so (`read`), then waits for
    `release` before answering. The socket has subscribed before that read, so whatever is
    committed and published meanwhile reaches it both live and, if the test commits nothing,
    from this read. The socket's handshake is answered only after the read: open it with
    `opening`.
    """

    def __init__(self, repository: Repository, order_id: UUID) -> None:
        self._owner_and_events = repository.owner_and_events
        self._order_id = order_id
        self.read = asyncio.Event()
        self.release = asyncio.Event()

    async def owner_and_events(
        self, order_id: UUID, after: int = 0
    ) -> tuple[str | None, list[OrderEvent]]:
        stored = await self._owner_and_events(order_id, after)
        if order_id == self._order_id and not self.read.is_set():
            self.read.set()
            await self.release.wait()
        return stored


def opening(client: Client, order: Order) -> asyncio.Task[aiohttp.ClientWebSocketResponse]:
    """A socket on `order` being opened, in a task of its own: see `PausedRead`."""

    async def opened() -> aiohttp.ClientWebSocketResponse:
        socket: aiohttp.ClientWebSocketResponse = await watch(client, order)
        return socket

    return asyncio.create_task(opened())


async def test_a_lost_publish_is_back_filled_from_the_store(start_app: StartApp) -> None:
    client = await quiet_app(start_app, ws_idle_check_s=NEVER_S)
    repository = client.app[REPOSITORY]
    hub = client.app[HUB]
    order = await accepted(repository)

    async with watch(client, order) as ws:
        first = await receive(ws, 1)
        order, [routing, _lost, submitted] = await moved(
            repository, order, S.ROUTING, S.BUILDING, S.SUBMITTED
        )
        hub.publish(routing)
        hub.publish(submitted)
        middle = await receive(ws, 3)
        _, [confirmed] = await moved(repository, order, S.CONFIRMED)
        hub.publish(confirmed)
        last = await read_until_closed(ws, limit_s=5)

    assert seqs(first) == [1]
    assert seqs(middle) == [2, 3, 4]
    assert [event["status"] for event in middle] == ["routing", "building", "submitted"]
    assert seqs(last) == [5]
    assert ws.close_code == 1000


async def test_events_another_engine_committed_are_read_on_their_hints(start_app: StartApp) -> None:
    """Hints carry a seq only: the socket reads the store for them and never sends a hint."""
    client = await quiet_app(start_app, ws_idle_check_s=NEVER_S)
    repository = client.app[REPOSITORY]
    hub = client.app[HUB]
    order = await accepted(repository)

    async with watch(client, order) as ws:
        first = await receive(ws, 1)
        order, _ = await moved(repository, order, S.ROUTING, S.BUILDING, S.SUBMITTED)
        hub.hint(order.order_id, 3)
        middle = await receive(ws, 3)
        hub.hint(order.order_id, 2)
        hub.hint(order.order_id, 4)
        _, [confirmed] = await moved(repository, order, S.CONFIRMED)
        hub.hint(order.order_id, confirmed.seq)
        last = await read_until_closed(ws, limit_s=5)

    assert seqs(first) == [1]
    assert [event["status"] for event in middle] == ["routing", "building", "submitted"]
    assert seqs(middle) == [2, 3, 4], "hints 2 and 4 were lost: the read for 3 found them"
    assert last == [confirmed.wire()], "repeated hints 2 and 4 were dropped"
    assert ws.close_code == 1000


@pytest.mark.parametrize(
    "published", [{2, 3, 4}, set()], ids=["after-live-events", "with-nothing-published"]
)
async def test_a_terminal_event_never_published_still_closes_the_socket(
    start_app: StartApp, published: set[int]
) -> None:
    idle_s = 0.1
    client = await quiet_app(start_app, ws_idle_check_s=idle_s)
    repository = client.app[REPOSITORY]
    hub = client.app[HUB]
    order = await accepted(repository)

    async with watch(client, order) as ws:
        first = await receive(ws, 1)
        _, path = await moved(repository, order, S.ROUTING, S.BUILDING, S.SUBMITTED, S.FAILED)
        for event in path:
            if event.seq in published:
                hub.publish(event)
        rest = await read_until_closed(ws, limit_s=20 * idle_s)

    assert seqs(first + rest) == [1, 2, 3, 4, 5]
    assert rest[-1]["status"] == "failed"
    assert ws.close_code == 1000


async def test_a_replay_overlapping_live_events_sends_each_seq_once(
    start_app: StartApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = await quiet_app(start_app, ws_idle_check_s=NEVER_S)
    repository = client.app[REPOSITORY]
    hub = client.app[HUB]
    order = await accepted(repository)
    order, _ = await moved(repository, order, S.ROUTING, S.BUILDING)
    stored = await repository.events(order.order_id, after=0)
    assert [event.seq for event in stored] == [1, 2, 3]
    paused = PausedRead(repository, order.order_id)
    monkeypatch.setattr(repository, "owner_and_events", paused.owner_and_events)

    socket = opening(client, order)
    async with asyncio.timeout(5):
        await paused.read.wait()
    for event in stored:
        hub.publish(event)
    order, [submitted] = await moved(repository, order, S.SUBMITTED)
    hub.publish(submitted)
    paused.release.set()
    async with await socket as ws:
        before_the_end = await receive(ws, 4)
        _, [confirmed] = await moved(repository, order, S.CONFIRMED)
        hub.publish(confirmed)
        rest = await read_until_closed(ws, limit_s=5)

    assert seqs(before_the_end + rest) == [1, 2, 3, 4, 5]
    assert ws.close_code == 1000


async def test_a_socket_that_falls_behind_is_closed_4000_and_resumes_with_since(
    start_app: StartApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = await quiet_app(start_app, ws_idle_check_s=NEVER_S, ws_buffer=8)
    repository = client.app[REPOSITORY]
    hub = client.app[HUB]
    order = await accepted(repository)
    paused = PausedRead(repository, order.order_id)
    monkeypatch.setattr(repository, "owner_and_events", paused.owner_and_events)
    retries = [S.ROUTING, S.PENDING] * 5

    socket = opening(client, order)
    async with asyncio.timeout(5):
        await paused.read.wait()
    order, committed = await moved(repository, order, *retries)
    for event in committed:
        hub.publish(event)
    paused.release.set()
    async with await socket as ws:
        sent, reason = await read_until_close_frame(ws)

    assert seqs(sent) == list(range(1, 10)), "the replay, then the 8 events the buffer held"
    assert ws.close_code == 4000
    assert reason == "fell behind; resume with since=9"
    _, [last] = await moved(repository, order, S.FAILED)
    hub.publish(last)
    assert seqs(await stream(client, str(order.order_id), since=9)) == [10, 11, 12]


async def test_a_database_out_of_reach_at_the_check_of_followed_orders_closes_1013(
    start_app: StartApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = await quiet_app(start_app, ws_idle_check_s=0.05)
    repository = client.app[REPOSITORY]
    order = await accepted(repository)
    app_repository: Repository = client.app[REPOSITORY]
    reads = app_repository.events

    async def first_read_only(
        order_id: UUID, after: int = 0, limit: int | None = None
    ) -> list[OrderEvent]:
        if after > 0:
            raise DatabaseUnavailable("database unavailable: the test took it away")
        return await reads(order_id, after, limit)

    async def out_of_reach(order_ids: Sequence[UUID]) -> dict[UUID, int]:
        raise DatabaseUnavailable("database unavailable: the test took it away")

    monkeypatch.setattr(app_repository, "events", first_read_only)
    monkeypatch.setattr(app_repository, "latest_seqs", out_of_reach)

    async with watch(client, order) as ws:
        messages = await read_until_closed(ws, limit_s=5)

    assert seqs(messages[:1]) == [1]
    assert messages[1]["error"]["code"] == "database_unavailable"
    assert len(messages) == 2
    assert ws.close_code == 1013


async def test_a_socket_opens_on_one_read_of_the_order_s_owner_and_its_events(
    repository: Repository,
) -> None:
    [outcome] = await repository.create_orders([NewOrder(request=REQUEST, owner="alice")])
    assert not isinstance(outcome, Exception)
    order, events = await moved(repository, outcome[0], S.ROUTING, S.BUILDING)
    every = await repository.events(order.order_id)

    assert await repository.owner_and_events(order.order_id) == ("alice", every)
    assert await repository.owner_and_events(order.order_id, after=2) == ("alice", events[1:])
    assert await repository.owner_and_events(order.order_id, after=3) == ("alice", [])
    with pytest.raises(OrderNotFound):
        await repository.owner_and_events(uuid4())


async def test_a_long_history_is_replayed_whole_a_page_at_a_time(
    start_app: StartApp, database_url: str
) -> None:
    """Read a page at a time, so that a client that stops reading holds a page of it."""
    client = await quiet_app(start_app)
    repository = client.app[REPOSITORY]
    order = await accepted(repository)
    last = 2 * REPLAY_PAGE + 5
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute(
            """
            INSERT INTO order_events (order_id, seq, status, attempt, at, details)
            SELECT $1, seq, 'pending', 1, clock_timestamp(), '{}' FROM generate_series(2, $2) AS seq
            """,
            order.order_id,
            last,
        )
        await connection.execute(
            "UPDATE orders SET last_seq = $2 WHERE id = $1", order.order_id, last
        )
    finally:
        await connection.close()
    first_page = await repository.owner_and_events(order.order_id)

    async with watch(client, order) as ws:
        replayed = await receive(ws, last)
        await client.delete(f"/api/orders/{order.order_id}")
        ended = await read_until_closed(ws)

    assert len(first_page[1]) == REPLAY_PAGE
    assert seqs(replayed + ended) == list(range(1, last + 2))


async def test_sockets_opening_together_are_read_together_each_with_its_own_answer(
    repository: Repository,
) -> None:
    created = await repository.create_orders(
        [NewOrder(request=REQUEST, owner="alice"), NewOrder(request=REQUEST)]
    )
    (first, _), (second, _) = [outcome for outcome in created if isinstance(outcome, tuple)]
    await moved(repository, first, S.ROUTING, S.BUILDING)
    first_events = await repository.events(first.order_id)
    second_events = await repository.events(second.order_id)

    # Asked for together, the five are read in one statement.
    answers = await asyncio.gather(
        repository.owner_and_events(second.order_id),
        repository.owner_and_events(first.order_id, after=1),
        repository.owner_and_events(uuid4()),
        repository.owner_and_events(first.order_id),
        repository.owner_and_events(second.order_id, after=1),
        return_exceptions=True,
    )

    assert answers[0] == (None, second_events)
    assert answers[1] == ("alice", first_events[1:])
    assert isinstance(answers[2], OrderNotFound)
    assert answers[3] == ("alice", first_events)
    assert answers[4] == (None, [])


async def test_sockets_opening_together_on_the_same_order_share_its_events(
    repository: Repository,
) -> None:
    [outcome] = await repository.create_orders([NewOrder(request=REQUEST)])
    assert not isinstance(outcome, Exception)
    await moved(repository, outcome[0], S.ROUTING, S.BUILDING)
    order_id, unknown = outcome[0].order_id, uuid4()

    answers = await asyncio.gather(
        *(repository.owner_and_events(order_id) for _ in range(3)),
        repository.owner_and_events(order_id, after=2),
        repository.owner_and_events(unknown),
        repository.owner_and_events(unknown),
        return_exceptions=True,
    )

    first, second, third, later, missing, missing_again = answers
    assert isinstance(first, tuple)
    assert isinstance(second, tuple)
    assert isinstance(third, tuple)
    assert isinstance(later, tuple)
    assert [event.seq for event in first[1]] == [1, 2, 3]
    # One read, so one set of events: each is written as a message once for every socket.
    assert second[1] is first[1]
    assert third[1] is first[1]
    assert [event.seq for event in later[1]] == [3]
    assert isinstance(missing, OrderNotFound)
    assert isinstance(missing_again, OrderNotFound)
    assert missing is not missing_again
