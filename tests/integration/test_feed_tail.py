"""The feed's newest events, read once for every follower of an engine, on a real PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest

from orderengine.domain import NewOrder, OrderRequest
from orderengine.errors import DatabaseUnavailable
from orderengine.feed_store import FeedEntry, FeedStore
from orderengine.feed_tail import BEHIND_PAGE, PAGE, FeedTail
from orderengine.postgres import create_pool
from orderengine.repository import Repository

REQUEST = OrderRequest(type="market", token_in="SOL", token_out="USDC", amount_in=Decimal(1))


class CountedFeed(FeedStore):
    """The real feed's store, counting its reads; the next one can be made to fail.

    A read is either kind: the tail's, which gives positions first, or a follower's own.
    """

    reads = 0
    fail_next = False

    def _count(self) -> None:
        self.reads += 1
        if self.fail_next:
            self.fail_next = False
            raise DatabaseUnavailable("the database is unavailable")

    async def read(self, after: int, limit: int, owner: str | None = None) -> list[FeedEntry]:
        self._count()
        return await super().read(after, limit, owner)

    async def sequenced(self, after: int, limit: int) -> list[FeedEntry]:
        self._count()
        return await super().sequenced(after, limit)


@pytest.fixture
async def feed(database_url: str) -> AsyncIterator[CountedFeed]:
    pool = await create_pool(database_url, 2, 5.0)
    yield CountedFeed(pool, 5.0)
    await pool.close()


async def place(repository: Repository, count: int, owner: str | None = None) -> None:
    """Commit `count` new orders, hence `count` events."""
    await repository.create_orders([NewOrder(request=REQUEST, owner=owner)] * count)


def positions(entries: list[FeedEntry]) -> list[int]:
    return [entry.position for entry in entries]


async def test_followers_asking_at_once_share_one_read(
    feed: CountedFeed, repository: Repository
) -> None:
    tail = FeedTail(feed)
    await place(repository, 2)
    start = await tail.after(0, None)
    await place(repository, 3)
    feed.reads = 0

    pages = await asyncio.gather(*(tail.after(2, None) for _ in range(5)))

    assert positions(start.entries) == [1, 2]
    assert all(positions(page.entries) == [3, 4, 5] for page in pages)
    assert not any(page.more for page in pages)
    # The first to ask reads; the four who asked once that read had begun share one more.
    assert feed.reads == 2


async def test_a_follower_behind_the_window_reads_the_store(
    feed: CountedFeed, repository: Repository
) -> None:
    tail = FeedTail(feed, window=2)
    await tail.after(0, None)
    await place(repository, 4)
    recent = await tail.after(3, None)
    feed.reads = 0
    behind = await tail.after(0, None)
    reads_behind, feed.reads = feed.reads, 0
    from_window = await tail.after(2, None)

    assert positions(recent.entries) == [4]
    assert positions(behind.entries) == [1, 2, 3, 4]
    assert positions(from_window.entries) == [3, 4]
    assert reads_behind == 2  # the tail's look for news, and the follower's own read
    assert feed.reads == 1  # the tail's look for news alone


async def test_a_follower_behind_the_window_reads_a_short_page_at_a_time(
    feed: CountedFeed, repository: Repository
) -> None:
    """What it reads is its own until its client takes it: a stalled client holds a page.

    A short one, of the engine's memory, not a page as long as the window's.
    """
    tail = FeedTail(feed, window=2)
    await tail.after(0, None)
    await place(repository, BEHIND_PAGE + 3)

    first = await tail.after(0, None)
    rest = await tail.after(first.through, None)

    assert positions(first.entries) == list(range(1, BEHIND_PAGE + 1))
    assert first.more
    assert positions(rest.entries) == [BEHIND_PAGE + 1, BEHIND_PAGE + 2, BEHIND_PAGE + 3]


async def test_a_follower_sees_only_its_owners_events(
    feed: CountedFeed, repository: Repository
) -> None:
    tail = FeedTail(feed)
    await tail.after(0, None)
    await place(repository, 2, owner="alice")
    await place(repository, 1, owner="bob")
    await place(repository, 1, owner="alice")

    alice = await tail.after(0, "alice")
    bob = await tail.after(0, "bob")
    everyone = await tail.after(0, None)

    assert positions(alice.entries) == [1, 2, 4]
    assert {entry.owner for entry in alice.entries} == {"alice"}
    assert positions(bob.entries) == [3]
    assert positions(everyone.entries) == [1, 2, 3, 4]


async def test_a_follower_of_an_owner_with_no_news_keeps_up_without_reading_the_store(
    feed: CountedFeed, repository: Repository
) -> None:
    tail = FeedTail(feed, window=2)
    await tail.after(0, None)
    await place(repository, 1, owner="alice")
    first = await tail.after(0, "carol")
    through = first.through
    for _ in range(3):
        await place(repository, 2, owner="alice")
        feed.reads = 0
        page = await tail.after(through, "carol")
        assert page.entries == []
        assert page.through > through, "the events of others are passed, not waited behind"
        through = page.through
        assert feed.reads == 1, "the tail's look for news alone: no read of its own"

    assert first.entries == []
    assert first.through == 1
    assert through == 7


async def test_a_full_page_asks_for_the_rest_at_once(
    feed: CountedFeed, repository: Repository
) -> None:
    tail = FeedTail(feed)
    await tail.after(0, None)
    await place(repository, PAGE + 1)

    first = await tail.after(0, None)
    rest = await tail.after(PAGE, None)

    assert positions(first.entries) == list(range(1, PAGE + 1))
    assert first.more
    assert positions(rest.entries) == [PAGE + 1]
    assert not rest.more


async def test_a_read_that_failed_is_not_shared(feed: CountedFeed, repository: Repository) -> None:
    tail = FeedTail(feed)
    await tail.after(0, None)
    await place(repository, 2)
    feed.fail_next = True

    failed, page = await asyncio.gather(
        tail.after(0, None), tail.after(0, None), return_exceptions=True
    )

    assert isinstance(failed, DatabaseUnavailable)
    assert not isinstance(page, BaseException)
    assert positions(page.entries) == [1, 2]


async def test_the_tails_read_gives_positions_then_reads_them_in_one_call(
    feed: CountedFeed, repository: Repository
) -> None:
    await place(repository, 2, owner="alice")
    await place(repository, 1)

    entries = await feed.sequenced(0, 100)

    assert positions(entries) == [1, 2, 3]
    assert [entry.owner for entry in entries] == ["alice", "alice", None]
    assert await feed.sequenced(3, 100) == []
    assert await feed.sequence() == 0  # nothing committed is left unpositioned
