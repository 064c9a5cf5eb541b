"""The newest events of the feed of all orders, read from the store once for every follower.

Every follower of the feed (`GET /api/events`) asks for the events after its position each
time the hub has news. Were each to read the store, one event would cost a statement per
follower. Instead the first to ask gives the new events their positions and reads them, of
every owner, in one round trip (`FeedStore.sequenced`), into a window kept in memory;
those asking meanwhile share that run, and each then takes from the window what it may see.
A follower further behind than the window (resuming from an old position) reads the store
itself until it has caught up.

The window holds consecutive positions only (each read starts where the last ended, and
positions have no gaps), so a follower served from it misses nothing.
"""

from __future__ import annotations

import asyncio
from collections import deque
from itertools import islice
from typing import Final, NamedTuple

from orderengine.feed_store import FeedEntry, FeedStore

PAGE: Final = 500
"""The most events read from the store at once into the window, and handed to a follower at
once from it."""
BEHIND_PAGE: Final = 100
"""The most events a follower behind the window reads from the store at once. They are its
own, held until its client has taken them: a client that stops reading holds this many."""
WINDOW: Final = 5_000
"""The most events kept in memory, the newest."""


class Page(NamedTuple):
    """What a feed is handed at once: its next events, in order."""

    entries: list[FeedEntry]
    more: bool
    """Whether more events are there to ask for at once."""
    through: int
    """The position through which the follower has had every event it may see: where to ask
    from next. Past its last entry when the events after that were all of other owners, so
    that a follower of an owner with few events keeps up with the window rather than
    falling behind it, to read the store at every event."""


class FeedTail:
    """The feed's newest events, shared by the followers of one engine."""

    def __init__(self, feed: FeedStore, window: int = WINDOW) -> None:
        self._feed = feed
        self._window: deque[FeedEntry] = deque(maxlen=window)
        self._last: int | None = None
        """The last position read into the window; None before the first read."""
        self._behind = False
        """The last read was a full page: the store holds more."""
        self._reading = asyncio.Lock()
        self._begun = 0
        self._read_through = 0
        """The number of the last read that ended well (reads are numbered as they begin)."""

    async def after(self, position: int, owner: str | None) -> Page:
        """Up to `PAGE` events after `position`, of `owner`'s orders when given.

        Every event committed before the call is there to be had, now or by asking again at
        once while `more` is true.
        """
        await self._catch_up()
        last = self._last
        assert last is not None, "a read that ended well set the last position"
        if position >= last:
            return Page([], self._behind, position)
        if not self._window or position < self._window[0].position - 1:
            # Every position up to `last` was visible to this read: positions are given one
            # run at a time, each committed before the next.
            entries = await self._feed.read(position, BEHIND_PAGE, owner)
            if len(entries) == BEHIND_PAGE:
                return Page(entries, True, entries[-1].position)
            return Page(entries, self._behind, max(last, entries[-1].position) if entries else last)
        start = position - (self._window[0].position - 1)
        newer = islice(self._window, start, None)
        mine = (entry for entry in newer if owner is None or entry.owner == owner)
        entries = list(islice(mine, PAGE))
        if len(entries) == PAGE and entries[-1].position < last:
            return Page(entries, True, entries[-1].position)
        return Page(entries, self._behind, last)

    async def _catch_up(self) -> None:
        """Read what the store has beyond the window, unless a read begun since did so."""
        called = self._begun
        async with self._reading:
            if self._read_through > called:
                return
            self._begun += 1
            number = self._begun
            await self._read()
            self._read_through = number

    async def _read(self) -> None:
        """Position what was committed, and read it; the first read only learns where to start."""
        if self._last is None:
            await self._feed.sequence()
            self._last = await self._feed.position()
            return
        entries = await self._feed.sequenced(self._last, PAGE)
        self._window.extend(entries)
        if entries:
            self._last = entries[-1].position
        self._behind = len(entries) == PAGE
