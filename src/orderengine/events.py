"""Committed order events, from the store and the in-process hub, to the sockets that watch.

The store is the truth; what comes through the hub is only a hint that the store has moved
on, and a hint may be lost (a publish that never happened, or, from another engine, a
notification never delivered). The hub carries two kinds of hint:

- a full event (`EventHub.publish`), committed by this engine;
- a `Hint` (`EventHub.hint`): an order id and a seq, all that another engine announced of an
  event it committed (see `notifications.py`); the event itself is only in the store.

A watcher (`follow`) therefore subscribes first, reads the store after the last seq it has,
then takes hints:

- an event with the next seq is that event, committed: taken as it is, no read needed;
- an event or a `Hint` with a seq already taken is a repeat (a replay and live events
  overlapped, or an announcement of what the store already gave): dropped;
- an event further ahead, or a `Hint` ahead, means the store holds events not yet taken: it is
  read after the last seq taken, filling any gap;
- no hint for `idle_s`: the store is read again, so a lost hint, even of the terminal event,
  delays a watcher by `idle_s` at most.

So each seq is yielded once and in order, whatever the hub loses or repeats, and whichever
engine committed it; a `Hint` never reaches the watcher's client itself.

Each subscription has a bounded buffer: a client that stops reading falls behind on its own,
never slowing the engine or anyone else, and is told so, to resume with `since=`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import AsyncGenerator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol, TypeAlias
from uuid import UUID

from orderengine.domain import OrderEvent


class FellBehind(Exception):
    """The subscriber's buffer overflowed; events after its last one were not kept."""


class EventStore(Protocol):
    """Where committed events are read back: the repository, or a test's wrapper of it."""

    async def events(self, order_id: UUID, after: int = 0) -> list[OrderEvent]: ...

    async def latest_event(self, order_id: UUID) -> OrderEvent | None: ...


@dataclass(frozen=True, slots=True)
class Hint:
    """An event known only by its order and seq: another engine committed it."""

    order_id: UUID
    seq: int


Live: TypeAlias = OrderEvent | Hint
"""What a subscription receives: an event committed here, or a hint of one committed elsewhere."""


class Subscription:
    """One watcher's buffer of live events and hints for one order.

    A hint takes a place in the buffer as an event does.
    """

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._queue: asyncio.Queue[Live | None] = asyncio.Queue()
        self._overflowed = False

    def offer(self, event: Live) -> None:
        if self._overflowed:
            return
        if self._queue.qsize() >= self._limit:
            self._overflowed = True
            self._queue.put_nowait(None)
            return
        self._queue.put_nowait(event)

    async def next(self) -> Live:
        """The oldest event or hint waiting; cancelling the wait loses none.

        Raises `FellBehind` once the ones offered before the overflow have been taken.
        """
        return self._checked(await self._queue.get())

    def waiting(self) -> bool:
        """Whether an event or hint is waiting: `take` has one to give.

        Not the mark of an overflow: `next` raises `FellBehind` for that once the events
        before it were taken, and sent.
        """
        return self._queue.qsize() > (1 if self._overflowed else 0)

    def take(self) -> Live:
        """The oldest event or hint waiting, which must be there (`waiting`); as `next`."""
        return self._checked(self._queue.get_nowait())

    def _checked(self, event: Live | None) -> Live:
        if event is None:
            raise FellBehind(f"more than {self._limit} events were waiting to be sent")
        return event


class EventHub:
    """Routes each published event, and each hint, to the current subscribers of its order."""

    def __init__(self, buffer: int) -> None:
        self._buffer = buffer
        self._subscribers: defaultdict[UUID, set[Subscription]] = defaultdict(set)
        self._news = asyncio.Event()
        """Set, then replaced, at every publish or hint: what the feed of all orders waits on."""

    async def news(self, timeout_s: float) -> None:
        """Return at the next event published or hinted, of any order, or after `timeout_s`."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._news.wait(), timeout_s)

    def _tell_the_feed(self) -> None:
        news, self._news = self._news, asyncio.Event()
        news.set()

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
        self._tell_the_feed()

    def hint(self, order_id: UUID, seq: int) -> None:
        """Tell every watcher of the order that its event `seq` is committed; never blocks.

        For an event committed by another engine, announced with its seq only: a watcher that
        has not taken `seq` yet reads the store.
        """
        subscriptions = self._subscribers.get(order_id, ())
        if subscriptions:
            hint = Hint(order_id, seq)
            for subscription in subscriptions:
                subscription.offer(hint)
        self._tell_the_feed()


async def follow(
    store: EventStore,
    subscription: Subscription,
    order_id: UUID,
    since: int,
    idle_s: float,
    stored: list[OrderEvent] | None = None,
) -> AsyncGenerator[list[OrderEvent], None]:
    """The order's events after `since`, each once and in seq order, up to its terminal one.

    They come in runs of those there to be had at once (a read of the store, or the live
    events waiting in the subscription), so that a socket can send each run in one write.

    `subscription` is the order's, opened before this is called, so that nothing committed after
    the first read of the store can be missed. `stored`, when given, is that first read, made by
    the caller after the subscription opened. Live events are yielded as they come when each is
    the next seq; a `Hint` is never yielded, only makes the store be read when it is ahead of
    the last seq taken. The generator ends after the terminal event, or at once when the order
    finished at or before `since` (a client resuming past the end). Raises `FellBehind` when the
    subscription overflowed, and what the store raises.
    """
    last = since
    from_store = True
    while True:
        if from_store:
            run = await store.events(order_id, after=last) if stored is None else stored
            stored = None
            if not run and last == since and await _finished_by(store, order_id, since):
                return
            # After a read of the store, wait for live events.
            from_store = False
        else:
            run, from_store = await _live_run(subscription, last, idle_s)
        run = _through_terminal(run)
        if run:
            yield run
            last = run[-1].seq
            if run[-1].status.terminal:
                return


def _through_terminal(events: list[OrderEvent]) -> list[OrderEvent]:
    """`events` up to and including the first terminal one."""
    for n, event in enumerate(events):
        if event.status.terminal:
            return events[: n + 1]
    return events


async def _live_run(
    subscription: Subscription, last: int, idle_s: float
) -> tuple[list[OrderEvent], bool]:
    """The live events with seqs from `last + 1` on, and whether the store must be read next.

    The first is waited for, up to `idle_s`; those already waiting behind it are taken while
    each is the next seq. Repeats of events already taken, and hints of them, are dropped.
    The store must be read when nothing new came within `idle_s`, when an event skipped ahead
    (a publish was lost), when a `Hint` ahead came (the event is only in the store), or when
    a terminal event came that is already behind (the order may have finished at or before a
    resumed stream's `since`); the events taken before that come with it.
    """
    run: list[OrderEvent] = []
    try:
        async with asyncio.timeout(idle_s):
            while not run:
                if not _take(await subscription.next(), last, run):
                    return run, True
    except TimeoutError:
        return run, True
    while subscription.waiting():
        if not _take(subscription.take(), run[-1].seq, run):
            return run, True
    return run, False


def _take(live: Live, last: int, run: list[OrderEvent]) -> bool:
    """Add `live` to `run` if it is the event after seq `last`; whether the run may go on.

    A repeat of what was taken is dropped and the run goes on; anything else ends it, for the
    store to be read.
    """
    if live.seq <= last:
        return not (isinstance(live, OrderEvent) and live.status.terminal)
    if isinstance(live, Hint) or live.seq != last + 1:
        return False
    run.append(live)
    return True


async def _finished_by(store: EventStore, order_id: UUID, seq: int) -> bool:
    """Whether the order's terminal event is stored with a seq at or before `seq`."""
    latest = await store.latest_event(order_id)
    return latest is not None and latest.status.terminal and latest.seq <= seq
