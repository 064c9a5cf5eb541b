"""In-process fan-out of committed order events to the sockets that watch each order.

A subscriber registers before it reads the stored history and drops live events it has
already replayed (by `seq`), so it misses nothing and sees nothing twice. Each subscription
has a bounded buffer: a client that stops reading falls behind on its own, never slowing the
engine or anyone else, and is told so, to resume with `since=`.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from uuid import UUID

from orderengine.domain import OrderEvent


class FellBehind(Exception):
    """The subscriber's buffer overflowed; events after its last one were not kept."""


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
