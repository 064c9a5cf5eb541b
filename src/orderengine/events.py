"""Committed order events, from the store and the in-process hub, to the sockets that watch.

The store is the truth; a publish on the hub is only a hint that the store has moved on, and a
hint may be lost (a publish that never happened, or, from another process, one never
delivered). A watcher (`follow`) therefore subscribes first, reads the store after the last
seq it has, then takes hints:

- a hint with the next seq is that event, committed: taken as it is, no read needed;
- a hint with a seq already taken is a repeat (a replay and live events overlapped): dropped;
- a hint further ahead means one or more publishes were lost: the store fills the gap;
- no hint for `idle_s`: the store is read again, so a lost publish, even of the terminal
  event, delays a watcher by `idle_s` at most.

So each seq is yielded once and in order, whatever the hub loses or repeats.

Each subscription has a bounded buffer: a client that stops reading falls behind on its own,
never slowing the engine or anyone else, and is told so, to resume with `since=`.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncGenerator, Iterator
from contextlib import contextmanager
from typing import Protocol
from uuid import UUID

from orderengine.domain import OrderEvent


class FellBehind(Exception):
    """The subscriber's buffer overflowed; events after its last one were not kept."""


class EventStore(Protocol):
    """Where committed events are read back: the repository, or a test's wrapper of it."""

    async def events(self, order_id: UUID, after: int = 0) -> list[OrderEvent]: ...

    async def latest_event(self, order_id: UUID) -> OrderEvent | None: ...


class Subscription:
    """One watcher's buffer of live events for one order."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._queue: asyncio.Queue[OrderEvent | None] = asyncio.Queue()
        self._overflowed = False

    def offer(self, event: OrderEvent) -> None:
        if self._overflowed:
            return
        if self._queue.qsize() >= self._limit:
            self._overflowed = True
            self._queue.put_nowait(None)
            return
        self._queue.put_nowait(event)

    async def next(self) -> OrderEvent:
        """The oldest event waiting; cancelling the wait loses none.

        Raises `FellBehind` once the events offered before the overflow have been taken.
        """
        event = await self._queue.get()
        if event is None:
            raise FellBehind(f"more than {self._limit} events were waiting to be sent")
        return event


class EventHub:
    """Routes each published event to the current subscribers of its order."""

    def __init__(self, buffer: int) -> None:
        self._buffer = buffer
        self._subscribers: defaultdict[UUID, set[Subscription]] = defaultdict(set)

    @contextmanager
    def subscribe(self, order_id: UUID) -> Iterator[Subscription]:
        subscription = Subscription(self._buffer)
        self._subscribers[order_id].add(subscription)
        try:
            yield subscription
        finally:
            watchers = self._subscribers[order_id]
            watchers.discard(subscription)
            if not watchers:
                del self._subscribers[order_id]

    def publish(self, event: OrderEvent) -> None:
        """Hand a committed event to every watcher of its order; never blocks."""
        for subscription in self._subscribers.get(event.order_id, ()):
            subscription.offer(event)


async def follow(
    store: EventStore,
    subscription: Subscription,
    order_id: UUID,
    since: int,
    idle_s: float,
) -> AsyncGenerator[OrderEvent, None]:
    """The order's events after `since`, each once and in seq order, up to its terminal one.

    `subscription` is the order's, opened before this is called, so that nothing committed
    after the first read of the store can be missed. The generator ends after the terminal
    event, or at once when the order finished at or before `since` (a client resuming past
    the end). Raises `FellBehind` when the subscription overflowed, and what the store raises.
    """
    last = since
    from_store = True
    while True:
        if from_store:
            batch = await store.events(order_id, after=last)
            if not batch and last == since and await _finished_by(store, order_id, since):
                return
        else:
            hint = await _next_live(subscription, last, idle_s)
            batch = [] if hint is None else [hint]
        for event in batch:
            yield event
            last = event.seq
            if event.status.terminal:
                return
        # After a read of the store, wait for hints; go on taking hints while each is the
        # next seq; read the store again when one is not, or when none comes for `idle_s`.
        from_store = not from_store and not batch


async def _next_live(subscription: Subscription, last: int, idle_s: float) -> OrderEvent | None:
    """The live event with seq `last + 1`, or None when the store must be read instead.

    None when nothing new came within `idle_s`, when a hint skipped ahead (a publish was
    lost), or when a terminal hint came that is already behind (the order may have finished
    at or before a resumed stream's `since`). Repeats of events already taken are dropped.
    """
    try:
        async with asyncio.timeout(idle_s):
            while True:
                event = await subscription.next()
                if event.seq > last or event.status.terminal:
                    break
    except TimeoutError:
        return None
    return event if event.seq == last + 1 else None


async def _finished_by(store: EventStore, order_id: UUID, seq: int) -> bool:
    """Whether the order's terminal event is stored with a seq at or before `seq`."""
    latest = await store.latest_event(order_id)
    return latest is not None and latest.status.terminal and latest.seq <= seq
