"""Several engines on one database, seen from the database: who holds what, and what ended.

The engines under test are processes (`tests/engine_process.py`); what they do to the orders
is read here with plain SQL on a connection of the test's own, every few milliseconds if need
be. Reading is all this module does: it never changes an order.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final, TypeAlias
from uuid import UUID

import asyncpg

from orderengine.domain import OrderStatus
from orderengine.repository import Repository
from orderengine.venues.chain import Chain

Connection: TypeAlias = "asyncpg.Connection[asyncpg.Record]"

IN_FLIGHT: Final = frozenset({OrderStatus.ROUTING, OrderStatus.BUILDING, OrderStatus.SUBMITTED})
"""Statuses an order has only while a worker executes it (when no swap is left unresolved)."""

POLL_S: Final = 0.005


@dataclass(frozen=True)
class Row:
    status: OrderStatus
    last_seq: int
    lease_owner: UUID | None
    lease_expires_at: datetime | None


@dataclass(frozen=True)
class Census:
    """Every order as one statement saw it, at the database's clock `at`."""

    at: datetime
    orders: dict[UUID, Row]

    @property
    def in_flight(self) -> int:
        return sum(row.status in IN_FLIGHT for row in self.orders.values())

    @property
    def unfinished(self) -> int:
        return sum(not row.status.terminal for row in self.orders.values())

    def held_by(self, owner: UUID) -> dict[UUID, Row]:
        """The orders whose lease `owner` holds (or held, if it ran out and nobody took it)."""
        return {order_id: row for order_id, row in self.orders.items() if row.lease_owner == owner}


async def census(connection: Connection) -> Census:
    rows = await connection.fetch(
        "SELECT clock_timestamp() AS at, id, status::text AS status, last_seq, lease_owner,"
        " lease_expires_at FROM orders"
    )
    at = rows[0]["at"] if rows else await connection.fetchval("SELECT clock_timestamp()")
    orders = {
        row["id"]: Row(
            OrderStatus(row["status"]),
            row["last_seq"],
            row["lease_owner"],
            row["lease_expires_at"],
        )
        for row in rows
    }
    return Census(at, orders)


@contextlib.asynccontextmanager
async def connected(database_url: str) -> AsyncIterator[Connection]:
    connection: Connection = await asyncpg.connect(database_url)
    try:
        yield connection
    finally:
        await connection.close()


async def until(
    connection: Connection,
    condition: Callable[[Census], bool],
    limit_s: float = 30,
    interval_s: float = POLL_S,
) -> Census:
    """The first census for which `condition` holds; fail the test if none does in time."""
    async with asyncio.timeout(limit_s):
        while True:
            seen = await census(connection)
            if condition(seen):
                return seen
            await asyncio.sleep(interval_s)


@dataclass
class Observed:
    """What a watch saw: the most orders in flight at once, and who held which order."""

    peak_in_flight: int = 0
    holders: defaultdict[UUID, set[UUID]] = field(default_factory=lambda: defaultdict(set))
    readings: int = 0

    @property
    def owners(self) -> set[UUID]:
        return set().union(*self.holders.values())

    def add(self, seen: Census) -> None:
        self.readings += 1
        self.peak_in_flight = max(self.peak_in_flight, seen.in_flight)
        for order_id, row in seen.orders.items():
            if row.lease_owner is not None:
                self.holders[order_id].add(row.lease_owner)


@contextlib.asynccontextmanager
async def watching(database_url: str, interval_s: float = POLL_S) -> AsyncIterator[Observed]:
    """Read the census every `interval_s` in the background for the duration of the block."""
    observed = Observed()

    async def watch(connection: Connection) -> None:
        while True:
            observed.add(await census(connection))
            await asyncio.sleep(interval_s)

    async with connected(database_url) as connection:
        task = asyncio.create_task(watch(connection))
        try:
            yield observed
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            if not observed.readings:
                observed.add(await census(connection))


async def all_finished(connection: Connection, limit_s: float = 30) -> Census:
    """Once no order is unfinished (every engine's work included)."""
    return await until(connection, lambda seen: seen.unfinished == 0, limit_s, interval_s=0.02)


async def routing_times(connection: Connection) -> list[datetime]:
    """When each attempt's routing was committed, by the database's clock, earliest first."""
    rows = await connection.fetch(
        "SELECT at FROM order_events WHERE status = 'routing' ORDER BY at"
    )
    return [row["at"] for row in rows]


async def assert_each_order_ended_once(
    repository: Repository, chain: Chain, ids: Iterable[UUID]
) -> None:
    """Check that every order ended once, and executed at most once.

    Every order is terminal; each confirmed one landed exactly one swap (its own signature),
    each failed one none; every event stream is contiguous with a single terminal event at
    its end; no signature was submitted twice.
    """
    ids = list(ids)
    landed = await chain.landed_signatures(ids)
    for order_id in ids:
        order = await repository.get_order(order_id)
        events = await repository.events(order_id)
        assert order.status.terminal, order
        assert [event.seq for event in events] == list(range(1, len(events) + 1))
        assert [event.status.terminal for event in events].count(True) == 1
        assert events[-1].status is order.status
        sent = [e.details["txHash"] for e in events if e.status is OrderStatus.SUBMITTED]
        assert len(sent) == len(set(sent)), f"a signature was sent twice: {sent}"
        if order.status is OrderStatus.CONFIRMED:
            assert landed[order_id] == [order.tx_hash]
        else:
            assert landed[order_id] == []
