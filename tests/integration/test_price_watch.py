"""The store's side of waiting orders: pair watches leased once, prices recorded, orders woken."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from uuid import uuid4

import asyncpg
import pytest

from orderengine.domain import Awaited, Expired, NewOrder, Order, OrderRequest
from orderengine.errors import DatabaseUnavailable
from orderengine.postgres import create_pool
from orderengine.repository import Repository
from orderengine.router import Router
from orderengine.watch_store import WatchStore
from orderengine.watchers import PriceWatcher
from tests.polling import told_while_running

LEASE_S = 10.0


def waiting(limit: str, *, token_in: str = "SOL", token_out: str = "USDC") -> NewOrder:
    request = OrderRequest.model_validate(
        {
            "type": "limit",
            "tokenIn": token_in,
            "tokenOut": token_out,
            "amountIn": "1",
            "limitPrice": limit,
        }
    )
    awaits: Awaited = "price"
    return NewOrder(
        request=request, awaits=awaits, expires_at=datetime.now(UTC) + timedelta(hours=1)
    )


async def create(repository: Repository, *orders: NewOrder) -> list[Order]:
    created = await repository.create_orders(list(orders))
    result = []
    for outcome in created:
        assert isinstance(outcome, tuple)
        result.append(outcome[0])
    return result


@pytest.fixture
async def other(database_url: str) -> AsyncIterator[Repository]:
    """A second engine's door to the same database."""
    repository = await Repository.connect(database_url, 2, 5.0)
    yield repository
    await repository.close()


async def test_waiting_orders_are_not_claimed(repository: Repository) -> None:
    await create(repository, waiting("150"))

    backlog = await repository.waiting()

    assert await repository.claim(10, LEASE_S) == []
    assert backlog.due == 0
    assert backlog.next_due_s is None
    assert backlog.next_expiry_s == pytest.approx(3600, abs=5)


async def test_each_pair_is_watched_by_one_engine(
    repository: Repository, other: Repository
) -> None:
    await create(repository, waiting("150"), waiting("0.01", token_in="USDC", token_out="SOL"))

    await repository.watches.watch_pairs(LEASE_S)
    mine = await repository.watches.watch_pairs(LEASE_S)
    theirs = await other.watches.watch_pairs(LEASE_S)

    assert mine == [("SOL", "USDC"), ("USDC", "SOL")]
    assert theirs == []
    await repository.watches.stop_watching()
    assert await other.watches.watch_pairs(LEASE_S) == mine


async def test_a_price_wakes_the_orders_it_reaches_lowest_limit_first(
    repository: Repository,
) -> None:
    high, low, never, middle = await create(
        repository, waiting("149"), waiting("120"), waiting("151"), waiting("140")
    )
    await repository.watches.watch_pairs(LEASE_S)
    await repository.watches.watch_pairs(LEASE_S)

    events, woken = await repository.watches.watched_price("SOL", "USDC", Decimal(150), 50)
    claimed = await repository.claim(10, LEASE_S)

    assert woken == 3
    assert [order.order_id for order in claimed] == [low.order_id, middle.order_id, high.order_id]
    assert all(order.awaits is None for order in claimed)
    assert [event.order_id for event in events] == [never.order_id]
    assert events[0].details == {"waiting": "price", "limitPrice": "151", "bestPrice": "150"}
    assert events[0].seq == 2


async def test_news_goes_out_only_when_the_price_moved_enough(repository: Repository) -> None:
    (order,) = await create(repository, waiting("500"))
    await repository.watches.watch_pairs(LEASE_S)
    await repository.watches.watch_pairs(LEASE_S)

    first, _ = await repository.watches.watched_price("SOL", "USDC", Decimal(100), 50)
    small, _ = await repository.watches.watched_price("SOL", "USDC", Decimal("100.4"), 50)
    large, _ = await repository.watches.watched_price("SOL", "USDC", Decimal("100.5"), 50)

    assert [e.seq for e in first] == [2]
    assert small == []
    assert [e.seq for e in large] == [3]
    assert (await repository.get_order(order.order_id)).best_price == Decimal("100.5")


async def test_a_new_order_starts_with_the_last_price_reported(repository: Repository) -> None:
    await create(repository, waiting("500"))
    await repository.watches.watch_pairs(LEASE_S)
    await repository.watches.watch_pairs(LEASE_S)
    await repository.watches.watched_price("SOL", "USDC", Decimal("101.25"), 50)

    (late,) = await create(repository, waiting("400"))
    (first,) = await repository.events(late.order_id)

    assert late.best_price == Decimal("101.25")
    assert first.details == {"waiting": "price", "limitPrice": "400", "bestPrice": "101.25"}


async def test_a_watch_taken_up_afresh_reports_its_first_price(repository: Repository) -> None:
    (order,) = await create(repository, waiting("500"))
    await repository.watches.watch_pairs(LEASE_S)
    await repository.watches.watch_pairs(LEASE_S)
    await repository.watches.watched_price("SOL", "USDC", Decimal(100), 50)
    await repository.watches.stop_watching()

    (unwatched,) = await create(repository, waiting("400"))
    await repository.watches.watch_pairs(LEASE_S)
    events, _ = await repository.watches.watched_price("SOL", "USDC", Decimal("100.1"), 50)

    assert unwatched.best_price is None
    assert {event.order_id for event in events} == {order.order_id, unwatched.order_id}


async def test_only_the_watching_engine_records_a_price(
    repository: Repository, other: Repository
) -> None:
    await create(repository, waiting("120"))
    await repository.watches.watch_pairs(LEASE_S)
    await repository.watches.watch_pairs(LEASE_S)

    events, woken = await other.watches.watched_price("SOL", "USDC", Decimal(150), 50)

    assert (events, woken) == ([], 0)
    assert await other.claim(10, LEASE_S) == []


async def test_expired_orders_end_in_one_statement_with_their_event(
    repository: Repository,
) -> None:
    past = datetime.now(UTC) - timedelta(seconds=1)
    waited = waiting("500").model_copy(update={"expires_at": past})
    due = waiting("500").model_copy(update={"awaits": None, "expires_at": past})
    later = waiting("500")
    expired, retried, alive = await create(repository, waited, due, later)

    assert (await repository.waiting()).next_expiry_s <= 0  # type: ignore[operator]
    ended = await repository.expire()

    assert {order.order_id for order, _ in ended} == {expired.order_id, retried.order_id}
    for order, event in ended:
        assert order.status == "failed"
        assert order.error == Expired.of(order).error
        assert event.details == {"error": order.error, "expired": True}
        assert event.seq == 2
        assert (await repository.events(order.order_id))[-1] == event
    assert (await repository.get_order(alive.order_id)).status == "pending"
    assert await repository.expire() == []


async def test_a_limit_far_below_the_price_is_woken_first(repository: Repository) -> None:
    tiny, usual = await create(
        repository, waiting("0.000000000000000000000000000001"), waiting("1")
    )
    await repository.watches.watch_pairs(LEASE_S)

    _, woken = await repository.watches.watched_price("SOL", "USDC", Decimal("1e20"), 50)
    claimed = await repository.claim(10, LEASE_S)

    assert woken == 2
    assert [order.order_id for order in claimed] == [tiny.order_id, usual.order_id]


async def test_a_woken_order_is_as_old_as_its_waking_for_health(
    repository: Repository, database_url: str
) -> None:
    (order,) = await create(repository, waiting("149"))
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute(
            "UPDATE orders SET created_at = created_at - interval '1 day',"
            " due_since = due_since - interval '1 day'"
        )
        assert await repository.oldest_unfinished_age_s() is None  # it waits by design

        await repository.watches.watch_pairs(LEASE_S)
        await repository.watches.watch_pairs(LEASE_S)
        await repository.watches.watched_price("SOL", "USDC", Decimal(150), 50)
        woken_age = await repository.oldest_unfinished_age_s()

        # An order accepted before orders knew when they became due counts from acceptance.
        await connection.execute("UPDATE orders SET due_since = NULL WHERE id = $1", order.order_id)
        accepted_age = await repository.oldest_unfinished_age_s()
    finally:
        await connection.close()

    assert woken_age is not None
    assert woken_age < 60
    assert accepted_age == pytest.approx(86_400, abs=60)


class WatchesLost(WatchStore):
    """The real store, whose first three leases of the pairs to watch meet an outage."""

    outages_left = 3
    polls = 0

    async def watch_pairs(self, lease_s: float) -> list[tuple[str, str]]:
        self.polls += 1
        if self.outages_left > 0:
            self.outages_left -= 1
            raise DatabaseUnavailable("database unavailable")
        return await super().watch_pairs(lease_s)


async def test_an_outage_of_the_price_watch_is_told_once_and_its_end_once(
    database_url: str,
) -> None:
    """Not once per poll: at its interval, that would be a warning every second or less."""
    pool = await create_pool(database_url, 2, 5.0)
    watches = WatchesLost(pool, 5.0, uuid4())
    watcher = PriceWatcher(
        watches,
        Router([], deadline_s=1),
        poll_s=0,
        lease_s=LEASE_S,
        event_bps=10,
        on_events=lambda events: None,
        on_woken=lambda: None,
    )

    async def polled_after_the_outage() -> bool:
        return watches.polls >= 6

    try:
        told = await told_while_running(watcher.run, polled_after_the_outage, "price_watch")
    finally:
        await pool.close()

    assert told == ["price_watch_failed", "price_watch_recovered"]
