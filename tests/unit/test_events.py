"""The event hub, and a watcher that takes the store as the truth and the hub as hints.

The store here is a list in memory; tests/integration/test_streams.py proves the same on the
real app, the real repository and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncGenerator, Sequence
from datetime import UTC, datetime

import pytest

from orderengine.domain import OrderEvent, OrderStatus
from orderengine.errors import DatabaseUnavailable
from orderengine.events import (
    REPLAY_PAGE,
    Doubt,
    EventHub,
    FellBehind,
    Hint,
    checking_followed,
    follow,
)

ORDER = uuid.uuid4()


def event(order_id: uuid.UUID, seq: int, status: OrderStatus = OrderStatus.PENDING) -> OrderEvent:
    return OrderEvent(order_id=order_id, seq=seq, status=status, attempt=1, at=datetime.now(UTC))


def events(*seqs: int, last: OrderStatus | None = None) -> list[OrderEvent]:
    """Events of ORDER with these seqs, the last one with status `last` if given."""
    made = [event(ORDER, seq) for seq in seqs]
    if last is not None:
        made[-1] = event(ORDER, seqs[-1], last)
    return made


class MemoryStore:
    """An order's committed events, read back as the repository would; counts the reads.

    While `down`, every read raises as the repository's does when the database is out of reach.
    """

    def __init__(self, *stored: OrderEvent) -> None:
        self.stored = list(stored)
        self.reads = 0
        self.checks = 0
        self.down = False

    async def events(
        self, order_id: uuid.UUID, after: int = 0, limit: int | None = None
    ) -> list[OrderEvent]:
        self.reads += 1
        self._reach()
        return [e for e in self.stored if e.order_id == order_id and e.seq > after][:limit]

    async def latest_event(self, order_id: uuid.UUID) -> OrderEvent | None:
        self._reach()
        mine = [e for e in self.stored if e.order_id == order_id]
        return mine[-1] if mine else None

    async def latest_seqs(self, order_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, int]:
        self.checks += 1
        self._reach()
        return {e.order_id: e.seq for e in self.stored if e.order_id in order_ids}

    def _reach(self) -> None:
        if self.down:
            raise DatabaseUnavailable("database unavailable")


Feed = AsyncGenerator[list[OrderEvent], None]


async def take(feed: Feed, count: int) -> list[int]:
    """The seqs of the next runs' events, until `count` came; waiting on a hint fails in 1 s."""
    seqs: list[int] = []
    async with asyncio.timeout(1):
        while len(seqs) < count:
            seqs += await next_run(feed)
    return seqs


async def next_run(feed: Feed) -> list[int]:
    """The seqs of the feed's next run, which must come within 1 s."""
    async with asyncio.timeout(1):
        return [e.seq for e in await anext(feed)]


async def rest(feed: Feed) -> list[int]:
    """The seqs of every event up to the feed's end, which must come within 1 s."""
    async with asyncio.timeout(1):
        return [e.seq async for run in feed for e in run]


async def test_a_subscriber_that_falls_behind_is_told_and_publishing_never_blocks() -> None:
    hub = EventHub(buffer=3)
    order_id = uuid.uuid4()
    with hub.subscribe(order_id) as slow, hub.subscribe(order_id) as fast:
        published, received = [], []
        for seq in range(1, 10):
            published.append(event(order_id, seq))
            hub.publish(published[-1])
            received.append(await fast.next())

        assert received == published
        assert [await slow.next() for _ in range(3)] == published[:3]
        with pytest.raises(FellBehind):
            await slow.next()


async def test_a_lost_publish_is_filled_from_the_store_in_order() -> None:
    hub = EventHub(buffer=8)
    one, two, three, four, done = events(1, 2, 3, 4, 5, last=OrderStatus.CONFIRMED)
    store = MemoryStore(one)
    with hub.subscribe(ORDER) as subscription:
        feed = follow(store, subscription, ORDER, since=0)
        assert await take(feed, 1) == [1]

        store.stored += [two, three, four]
        hub.publish(two)
        hub.publish(four)
        assert await take(feed, 3) == [2, 3, 4]
        assert store.reads == 2, "the replay, then one read for the gap, none for 2"

        store.stored.append(done)
        hub.publish(done)
        assert await rest(feed) == [5]


async def test_a_long_history_is_read_from_the_store_a_page_at_a_time() -> None:
    """A client that stops reading holds a page of it, not the whole history."""
    hub = EventHub(buffer=8)
    count = 2 * REPLAY_PAGE + 5
    store = MemoryStore(*events(*range(1, count + 1), last=OrderStatus.CONFIRMED))
    with hub.subscribe(ORDER) as subscription:
        feed = follow(store, subscription, ORDER, since=0)
        runs = [len(run) async for run in feed]

    assert runs == [REPLAY_PAGE, REPLAY_PAGE, 5]
    assert store.reads == 3


async def test_live_events_waiting_together_come_as_one_run() -> None:
    hub = EventHub(buffer=8)
    one, two, three, done = events(1, 2, 3, 4, last=OrderStatus.CONFIRMED)
    store = MemoryStore(one, two, three, done)
    with hub.subscribe(ORDER) as subscription:
        feed = follow(store, subscription, ORDER, since=0, stored=[one])
        assert await next_run(feed) == [1]

        for live in (two, two, three, done):
            hub.publish(live)
        assert await next_run(feed) == [2, 3, 4], "the repeat of 2 is dropped"
        assert await rest(feed) == []
        assert store.reads == 0, "the first read was given; the rest came live"


async def test_a_run_taken_before_an_overflow_comes_before_falling_behind() -> None:
    hub = EventHub(buffer=8)
    one, *live = events(*range(1, 12))
    store = MemoryStore(one)
    with hub.subscribe(ORDER) as subscription:
        feed = follow(store, subscription, ORDER, since=0, stored=[one])
        assert await take(feed, 1) == [1]

        for event in live:
            hub.publish(event)
        assert await next_run(feed) == list(range(2, 10)), "the 8 held"
        with pytest.raises(FellBehind):
            await anext(feed)


async def test_a_gap_ends_a_run_and_the_store_fills_it() -> None:
    hub = EventHub(buffer=8)
    one, two, three, four = events(1, 2, 3, 4)
    store = MemoryStore(one, two, three, four)
    with hub.subscribe(ORDER) as subscription:
        feed = follow(store, subscription, ORDER, since=0, stored=[one])
        assert await next_run(feed) == [1]

        hub.publish(two)
        hub.publish(four)
        assert await next_run(feed) == [2]
        assert await next_run(feed) == [3, 4]
        assert store.reads == 1, "one read, for the gap after 2"


async def test_a_terminal_event_never_published_is_found_by_the_check_of_followed_orders() -> None:
    hub = EventHub(buffer=8)
    first, done = events(1, 2, last=OrderStatus.FAILED)
    store = MemoryStore(first)
    with hub.subscribe(ORDER) as subscription:
        feed = follow(store, subscription, ORDER, since=0)
        assert await take(feed, 1) == [1]

        store.stored.append(done)
        async with checking_followed(hub, store, every_s=0.01):
            assert await rest(feed) == [2]
        assert store.reads == 2, "the replay, then one read for what the check found"


async def test_the_check_hints_only_orders_whose_store_is_ahead_of_what_was_handed() -> None:
    hub = EventHub(buffer=8)
    other = uuid.uuid4()
    one, two = events(1, 2)
    store = MemoryStore(one, two, event(other, 1), event(other, 2))
    with hub.subscribe(ORDER) as mine, hub.subscribe(other) as theirs:
        assert hub.followed() == {ORDER: 0, other: 0}
        hub.publish(one)
        hub.publish(two)
        hub.hint(other, 1)
        assert hub.followed() == {ORDER: 2, other: 1}

        hub.catch_up(await store.latest_seqs([ORDER, other]))
        assert [await mine.next(), await mine.next()] == [one, two]
        assert not mine.waiting(), "all the store holds was handed: no hint"
        assert [await theirs.next(), await theirs.next()] == [Hint(other, 1), Hint(other, 2)]
        assert hub.followed() == {ORDER: 2, other: 2}
    assert hub.followed() == {}, "an order no one follows is no longer checked"
    hub.catch_up({ORDER: 3})


async def test_a_check_that_cannot_reach_the_store_has_each_watcher_read_it() -> None:
    hub = EventHub(buffer=8)
    first, done = events(1, 2, last=OrderStatus.CONFIRMED)
    store = MemoryStore(first, done)
    with hub.subscribe(ORDER) as subscription:
        feed = follow(store, subscription, ORDER, since=0, stored=[first])
        assert await take(feed, 1) == [1]

        store.down = True
        async with checking_followed(hub, store, every_s=0.01):
            with pytest.raises(DatabaseUnavailable):
                await next_run(feed)
        assert store.checks >= 1
        assert store.reads == 1, "the watcher read the store itself once it was in doubt"


async def test_a_doubt_is_read_from_the_store_and_never_sent_itself() -> None:
    hub = EventHub(buffer=8)
    first, done = events(1, 2, last=OrderStatus.CONFIRMED)
    store = MemoryStore(first)
    with hub.subscribe(ORDER) as subscription:
        feed = follow(store, subscription, ORDER, since=0)
        assert await take(feed, 1) == [1]

        hub.doubt()
        assert await subscription.next() == Doubt(ORDER)
        store.stored.append(done)
        hub.doubt()
        assert await rest(feed) == [2]
        assert store.reads == 2, "the replay, then one read for the doubt"


async def test_live_events_the_replay_already_sent_are_dropped() -> None:
    hub = EventHub(buffer=8)
    stored = events(1, 2, 3)
    store = MemoryStore(*stored)
    with hub.subscribe(ORDER) as subscription:
        for replayed in stored:
            hub.publish(replayed)
        four, done = events(4, 5, last=OrderStatus.CONFIRMED)
        store.stored += [four, done]
        hub.publish(four)
        hub.publish(done)

        feed = follow(store, subscription, ORDER, since=0)
        assert await rest(feed) == [1, 2, 3, 4, 5]


async def test_a_stream_resumed_past_a_finished_orders_end_ends_at_once() -> None:
    hub = EventHub(buffer=8)
    store = MemoryStore(*events(1, 2, 3, last=OrderStatus.FAILED))
    with hub.subscribe(ORDER) as subscription:
        assert await rest(follow(store, subscription, ORDER, since=3)) == []
        assert await rest(follow(store, subscription, ORDER, since=9)) == []


async def test_a_stream_resumed_past_the_end_closes_when_the_order_finishes() -> None:
    hub = EventHub(buffer=8)
    store = MemoryStore(*events(1, 2))
    with hub.subscribe(ORDER) as subscription:
        feed = follow(store, subscription, ORDER, since=9)
        waiting = asyncio.create_task(rest(feed))
        await asyncio.sleep(0)
        assert store.reads == 1, "the store was read before the order finished"

        [_, _, done] = events(1, 2, 3, last=OrderStatus.CONFIRMED)
        store.stored.append(done)
        hub.publish(done)

        assert await waiting == []


async def test_a_watcher_whose_buffer_overflowed_falls_behind() -> None:
    hub = EventHub(buffer=8)
    [first] = events(1)
    store = MemoryStore(first)
    with hub.subscribe(ORDER) as subscription:
        for _ in range(9):
            hub.publish(first)
        feed = follow(store, subscription, ORDER, since=0)

        assert await take(feed, 1) == [1]
        with pytest.raises(FellBehind):
            await take(feed, 1)


async def test_a_hint_ahead_is_read_from_the_store_and_never_sent_itself() -> None:
    hub = EventHub(buffer=8)
    one, two, three, done = events(1, 2, 3, 4, last=OrderStatus.CONFIRMED)
    store = MemoryStore(one)
    with hub.subscribe(ORDER) as subscription:
        feed = follow(store, subscription, ORDER, since=0)
        assert await take(feed, 1) == [1]

        store.stored += [two, three]
        hub.hint(ORDER, 3)
        assert await take(feed, 2) == [2, 3]
        assert store.reads == 2, "the replay, then one read for the hint"

        store.stored.append(done)
        hub.hint(ORDER, 4)
        assert await rest(feed) == [4], "a terminal event known by its hint ends the stream"


async def test_hints_of_events_already_taken_are_dropped_without_a_read() -> None:
    hub = EventHub(buffer=8)
    stored = events(1, 2, 3)
    store = MemoryStore(*stored)
    with hub.subscribe(ORDER) as subscription:
        for seq in (1, 2, 3, 2):
            hub.hint(ORDER, seq)
        feed = follow(store, subscription, ORDER, since=0)
        assert await take(feed, 3) == [1, 2, 3]

        [done] = events(4, last=OrderStatus.FAILED)
        store.stored.append(done)
        hub.hint(ORDER, 3)
        hub.hint(ORDER, 4)
        assert await rest(feed) == [4]
        assert store.reads == 2, "the replay, then one read for hint 4; none for 1, 2, 3"


async def test_hints_and_published_events_mix_each_seq_once_in_order() -> None:
    hub = EventHub(buffer=8)
    one, two, three, four, done = events(1, 2, 3, 4, 5, last=OrderStatus.CONFIRMED)
    store = MemoryStore(one)
    with hub.subscribe(ORDER) as subscription:
        feed = follow(store, subscription, ORDER, since=0)
        assert await take(feed, 1) == [1]

        store.stored += [two, three, four]
        hub.hint(ORDER, 2)
        hub.hint(ORDER, 3)
        hub.publish(three)
        hub.publish(four)
        store.stored.append(done)
        hub.publish(done)
        assert await rest(feed) == [2, 3, 4, 5]
        assert store.reads == 2, "one read for hint 2 took 2 to 4; 3, 4 live were repeats"


async def test_a_hint_reaches_only_the_watchers_of_its_order() -> None:
    hub = EventHub(buffer=8)
    other = uuid.uuid4()
    hub.hint(other, 1)
    with hub.subscribe(ORDER) as mine, hub.subscribe(other) as theirs:
        hub.hint(other, 2)
        hub.hint(ORDER, 5)
        assert await mine.next() == Hint(ORDER, 5)
        assert await theirs.next() == Hint(other, 2)


async def test_hints_take_room_in_the_buffer_like_events() -> None:
    hub = EventHub(buffer=8)
    [first] = events(1)
    store = MemoryStore(first)
    with hub.subscribe(ORDER) as subscription:
        for _ in range(9):
            hub.hint(ORDER, 1)
        feed = follow(store, subscription, ORDER, since=0)

        assert await take(feed, 1) == [1]
        with pytest.raises(FellBehind):
            await take(feed, 1)


async def test_a_stream_resumed_past_the_end_closes_at_a_hint_of_its_end() -> None:
    hub = EventHub(buffer=8)
    store = MemoryStore(*events(1, 2))
    with hub.subscribe(ORDER) as subscription:
        feed = follow(store, subscription, ORDER, since=9)
        waiting = asyncio.create_task(rest(feed))
        await asyncio.sleep(0)

        [_, _, done] = events(1, 2, 3, last=OrderStatus.CONFIRMED)
        store.stored.append(done)
        hub.hint(ORDER, 3)

        assert await waiting == [], "hint 3 is behind since=9, with nothing taken: a read ends it"
