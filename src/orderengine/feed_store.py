"""The feed of all orders in the database: every event's position, given once it is committed.

Positions are given by one sequencer at a time across the engines (`sequence`), so that a
reader that has seen position P has seen every position below it; the feed's followers
(`feed.py`, through `feed_tail.py`) read the events by position, with their orders' owners.
"""

from __future__ import annotations

import asyncio
from typing import NamedTuple

import asyncpg

from orderengine.domain import OrderEvent
from orderengine.event_rows import JOINED_EVENT_COLUMNS, event_from
from orderengine.postgres import Store

FEED_BATCH = 5_000
"""The most events one call of `sequence` gives positions to."""


class FeedEntry(NamedTuple):
    """An event of the feed of all orders: its position, and the owner of its order."""

    position: int
    owner: str | None
    event: OrderEvent


class FeedStore(Store):
    """The feed's positions on `order_events` (given by migration 010's functions), and reads."""

    def __init__(self, pool: asyncpg.Pool, timeout_s: float) -> None:
        super().__init__(pool, timeout_s)
        self._sequencer = asyncio.Lock()
        self._runs = 0
        """Runs of `sequence` begun here: a caller that sees a run begin after it called
        shares that run."""

    async def sequence(self, limit: int = FEED_BATCH) -> int:
        """Give the next feed positions to committed events that have none; how many.

        When it returns, every event committed before it was called has a position (up to
        `limit` of them), visible to the caller. One sequencer at a time across engines (a
        transaction-level advisory lock, waited for), so the positions of one run are
        committed before the next run gives any: a reader that sees position P sees every
        position below it. Within a run, positions follow the events' times, then order and
        seq, so an order's events keep their order. One round trip: the function
        `sequence_feed` (migration 010) takes the lock and gives the positions, and its
        statement is its own transaction. Callers here at once share runs: one
        that finds a run begun after it called, and ended, has what it asked for and gives
        nothing itself, so many feeds woken by one event cost one run, not one each.
        """
        called = self._runs
        async with self._sequencer:
            if self._runs > called:
                return 0
            self._runs += 1
            return await self._sequence(limit)

    async def _sequence(self, limit: int) -> int:
        async with self._connection() as connection:
            given = await connection.fetchval("SELECT sequence_feed($1)", limit)
        return int(given)

    async def sequenced(self, after: int, limit: int) -> list[FeedEntry]:
        """Give positions as `sequence` does, then read up to `limit` events after `after`.

        Of every owner, each with its order's owner. One round trip: the function
        `sequenced_feed` (migration 010), whose statement is its own transaction, so the
        positions read are committed when they are returned.
        """
        async with self._connection() as connection:
            rows = await connection.fetch(
                "SELECT * FROM sequenced_feed($1, $2, $3)", after, limit, FEED_BATCH
            )
        return [FeedEntry(row["position"], row["owner"], event_from(row)) for row in rows]

    async def read(self, after: int, limit: int, owner: str | None = None) -> list[FeedEntry]:
        """The events with a feed position above `after`, in order; of `owner`'s orders if given."""
        async with self._connection() as connection:
            rows = await connection.fetch(
                f"""
                SELECT e.position, o.owner, {JOINED_EVENT_COLUMNS}
                FROM order_events AS e JOIN orders AS o ON o.id = e.order_id
                WHERE e.position > $1 AND ($3::text IS NULL OR o.owner = $3)
                ORDER BY e.position LIMIT $2
                """,
                after,
                limit,
                owner,
            )
        return [FeedEntry(row["position"], row["owner"], event_from(row)) for row in rows]

    async def position(self) -> int:
        """The last feed position given so far (0 before any)."""
        async with self._connection() as connection:
            last = await connection.fetchval("SELECT COALESCE(max(position), 0) FROM order_events")
        return int(last)
