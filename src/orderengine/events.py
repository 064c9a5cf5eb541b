"""Committed order events, from the store and the in-process hub, to the sockets that watch.

The store is the truth; what comes through the hub is only a hint that the store has moved
on, and a hint may be lost (a publish that never happened, or, from another engine, a
notification never delivered). The hub carries three kinds of hint:

- a full event (`EventHub.publish`), committed by this engine;
- a `Hint` (`EventHub.hint`): an order id and a seq, all that another engine announced of an
  event it committed (see `notifications.py`); the event itself is only in the store;
- a `Doubt` (`EventHub.doubt`): the store could not be checked for what the hub missed.

A watcher (`follow`) therefore subscribes first, reads the store after the last seq it has,
then takes hints:

- an event with the next seq is that event, committed: taken as it is, no read needed;
- an event or a `Hint` with a seq already taken is a repeat (a replay and live events
  overlapped, or an announcement of what the store already gave): dropped;
- an event further ahead, a `Hint` ahead, or a `Doubt`, means the store may hold events not
  yet taken: it is read after the last seq taken, filling any gap.

What the hub lost is found for all its watchers at once: every `idle_s`, `check_followed`
reads the latest seq of each order followed, in one statement, and hints the watchers of
those whose store is ahead of what the hub handed them (`EventHub.catch_up`). So a lost hint,
even of the terminal event, delays a watcher by `idle_s` at most, and watchers with nothing
to receive cost nothing: no read and no timer each.

So each seq is yielded once and in order, whatever the hub loses or repeats, and whichever
engine committed it; a `Hint` or a `Doubt` never reaches the watcher's client itself.

Each subscription has a bounded buffer: a client that stops reading falls behind on its own,
never slowing the engine or anyone else, and is told so, to resume with `since=`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Final, Protocol, TypeAlias
from uuid import UUID

import structlog

from orderengine.domain import OrderEvent
from orderengine.errors import OrderEngineError

log = structlog.get_logger(__name__)


REPLAY_PAGE: Final = 100
"""The most events a watcher reads from the store at once. They are its own until its client
has taken them: a client that stops reading holds a page of its order's history, not all
of it."""


class FellBehind(Exception):
    """The subscriber's buffer overflowed; events after its last one were not kept."""


class EventStore(Protocol):
    """Where committed events are read back: the repository, or a test's wrapper of it."""

    async def events(
        self, order_id: UUID, after: int = 0, limit: int | None = None
    ) -> list[OrderEvent]: ...

    async def latest_event(self, order_id: UUID) -> OrderEvent | None: ...

    async def latest_seqs(self, order_ids: Sequence[UUID]) -> dict[UUID, int]: ...


@dataclass(frozen=True, slots=True)
class Hint:
    """An event known only by its order and seq: another engine committed it."""

    order_id: UUID
    seq: int


@dataclass(frozen=True, slots=True)
class Doubt:
    """The store could not be checked for the order's events: the watcher reads it itself."""

    order_id: UUID


Live: TypeAlias = OrderEvent | Hint | Doubt
"""What a subscription receives: an event committed here, a hint of one committed elsewhere,
or a doubt."""


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
        self._handed: dict[UUID, int] = {}
        """The highest seq handed to the subscribers of each order followed (0: none yet)."""
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
        self._handed.setdefault(order_id, 0)
        try:
            yield subscription
        finally:
            watchers = self._subscribers[order_id]
            watchers.discard(subscription)
            if not watchers:
                del self._subscribers[order_id]
                del self._handed[order_id]

    def publish(self, event: OrderEvent) -> None:
        """Hand a committed event to every watcher of its order; never blocks."""
        self._hand(event.order_id, event.seq, event)
        self._tell_the_feed()

    def hint(self, order_id: UUID, seq: int) -> None:
        """Tell every watcher of the order that its event `seq` is committed; never blocks.

        For an event committed by another engine, announced with its seq only: a watcher that
        has not taken `seq` yet reads the store.
        """
        self._hand(order_id, seq, Hint(order_id, seq))
        self._tell_the_feed()

    def followed(self) -> dict[UUID, int]:
        """Each order that has watchers, with the highest seq handed to them."""
        return dict(self._handed)

    def catch_up(self, stored: Mapping[UUID, int]) -> None:
        """Hint the watchers of each order whose latest seq `stored` is ahead of those handed.

        `stored` is the store's latest seq of orders `followed` gave: the events beyond what
        the hub handed were committed, but their publish or announcement was lost (or has not
        come yet, and comes as a repeat). An order no longer followed is passed over.
        """
        for order_id, seq in stored.items():
            if seq > self._handed.get(order_id, seq):
                self._hand(order_id, seq, Hint(order_id, seq))

    def doubt(self) -> None:
        """Have every watcher read the store itself: it could not be checked for them."""
        for order_id, subscriptions in self._subscribers.items():
            doubt = Doubt(order_id)
            for subscription in subscriptions:
                subscription.offer(doubt)

    def _hand(self, order_id: UUID, seq: int, live: OrderEvent | Hint) -> None:
        subscriptions = self._subscribers.get(order_id)
        if not subscriptions:
            return
        self._handed[order_id] = max(self._handed[order_id], seq)
        for subscription in subscriptions:
            subscription.offer(live)


async def check_followed(hub: EventHub, store: EventStore, every_s: float) -> None:
    """Every `every_s`, find for all watchers at once the events the hub did not hand them.

    One statement reads the latest seq of every order followed (`EventHub.catch_up`). When it
    fails, each watcher is left to read the store itself (`EventHub.doubt`): one that cannot
    either is closed by its socket with 1013, so that its client may go to another engine.
    """
    while True:
        await asyncio.sleep(every_s)
        followed = hub.followed()
        if not followed:
            continue
        try:
            stored = await store.latest_seqs(list(followed))
        except OrderEngineError as error:
            log.warning("followed_orders_unchecked", error=error.message, orders=len(followed))
            hub.doubt()
            continue
        except Exception:
            log.exception("followed_orders_unchecked", orders=len(followed))
            hub.doubt()
            continue
        hub.catch_up(stored)


@asynccontextmanager
async def checking_followed(
    hub: EventHub, store: EventStore, every_s: float
) -> AsyncIterator[None]:
    """Run `check_followed` while the context is open."""
    task = asyncio.create_task(check_followed(hub, store, every_s))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def follow(
    store: EventStore,
    subscription: Subscription,
    order_id: UUID,
    since: int,
    stored: list[OrderEvent] | None = None,
) -> AsyncGenerator[list[OrderEvent], None]:
    """The order's events after `since`, each once and in seq order, up to its terminal one.

    They come in runs of those there to be had at once (a read of the store, or the live
    events waiting in the subscription), so that a socket can send each run in one write.

    `subscription` is the order's, opened before this is called, so that nothing committed after
    the first read of the store can be missed. `stored`, when given, is that first read, made by
    the caller after the subscription opened. The store is read `REPLAY_PAGE` events at a time,
    and read again at once after a full page. Live events are yielded as they come when each is
    the next seq; a `Hint` or a `Doubt` is never yielded, only makes the store be read (see
    `_take`). The generator ends after the terminal event, or at once when the order
    finished at or before `since` (a client resuming past the end). Raises `FellBehind` when the
    subscription overflowed, and what the store raises.
    """
    last = since
    from_store = True
    while True:
        if from_store:
            if stored is None:
                run = await store.events(order_id, after=last, limit=REPLAY_PAGE)
            else:
                run, stored = stored, None
            if not run and last == since and await _finished_by(store, order_id, since):
                return
            # After a read of the store that a page held, wait for live events.
            from_store = len(run) >= REPLAY_PAGE
        else:
            run, from_store = await _live_run(subscription, last, since)
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
    subscription: Subscription, last: int, since: int
) -> tuple[list[OrderEvent], bool]:
    """The live events with seqs from `last + 1` on, and whether the store must be read next.

    The first is waited for; those already waiting behind it are taken while each is the next
    seq (`_take`). The events taken before the store must be read come with it.
    """
    run: list[OrderEvent] = []
    while not run:
        if not _take(await subscription.next(), last, since, run):
            return run, True
    while subscription.waiting():
        if not _take(subscription.take(), run[-1].seq, since, run):
            return run, True
    return run, False


def _take(live: Live, last: int, since: int, run: list[OrderEvent]) -> bool:
    """Add `live` to `run` if it is the event after seq `last`; whether the run may go on.

    A repeat of what was taken is dropped and the run goes on, unless it may be the end of an
    order that a stream resumed past (its `since` beyond the order's last seq) is waiting
    for: a terminal event behind, or a `Hint` behind while nothing after `since` was taken.
    The store must be read for those, for an event that skipped ahead (a publish was lost),
    for a `Hint` ahead (the event is only in the store), and for a `Doubt`.
    """
    if isinstance(live, Doubt):
        return False
    if live.seq <= last:
        if isinstance(live, Hint):
            return last > since
        return not live.status.terminal
    if isinstance(live, Hint) or live.seq != last + 1:
        return False
    run.append(live)
    return True


async def _finished_by(store: EventStore, order_id: UUID, seq: int) -> bool:
    """Whether the order's terminal event is stored with a seq at or before `seq`."""
    latest = await store.latest_event(order_id)
    return latest is not None and latest.status.terminal and latest.seq <= seq
