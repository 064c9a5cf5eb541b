"""Claims in the store: what an engine may take, and a lease that ran out given back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from uuid import uuid4

import asyncpg
import pytest

from orderengine.domain import NewOrder, OrderRequest, unfinished_statuses
from orderengine.errors import OrderNotFound
from orderengine.repository import Repository
from tests.streams import MARKET


@pytest.fixture
async def other(database_url: str) -> AsyncIterator[Repository]:
    """A second engine's door to the same database."""
    repository = await Repository.connect(database_url, 2, 5.0)
    yield repository
    await repository.close()


async def create_market_order(repository: Repository) -> None:
    (outcome,) = await repository.create_orders(
        [NewOrder(request=OrderRequest.model_validate(MARKET))]
    )
    assert isinstance(outcome, tuple)


async def test_an_order_held_by_a_live_lease_is_not_claimed(
    repository: Repository, other: Repository
) -> None:
    await create_market_order(repository)

    (mine,) = await repository.claim(10, 30.0)

    assert await other.claim(10, 30.0) == []
    assert (await other.waiting()).expired_leases == 0
    await repository.release([mine.order_id])
    assert [order.order_id for order in await other.claim(10, 30.0)] == [mine.order_id]


async def test_a_lease_that_ran_out_is_given_back_then_claimed(
    repository: Repository, other: Repository
) -> None:
    await create_market_order(repository)
    (dead,) = await repository.claim(10, 0.05)  # its engine dies: the lease is never renewed
    await asyncio.sleep(0.1)

    assert await other.claim(10, 30.0) == []
    assert (await other.waiting()).expired_leases == 1
    assert await other.release_expired() == 1
    (taken,) = await other.claim(10, 30.0)

    assert taken.order_id == dead.order_id
    assert (await other.waiting()).expired_leases == 0
    assert await other.release_expired() == 0


async def test_a_retry_that_fell_due_since_the_claim_is_counted_as_due_now(
    repository: Repository,
) -> None:
    """The dispatcher's count after a claim that came up short.

    It must not send the dispatcher to sleep until the sweep when a retry fell due between
    the claim and the count: under load, that made a reconciled order wait 10 s.
    """
    await create_market_order(repository)
    (order,) = await repository.claim(10, 30.0)
    await repository.release([order.order_id], retry_after_s=0.5)
    assert await repository.claim(10, 30.0) == []  # not due yet
    await asyncio.sleep(0.55)

    backlog = await repository.waiting()

    assert backlog.next_due_s is not None
    assert backlog.next_due_s <= 0


async def test_an_orders_crashes_are_one_count_whichever_engine_counts_them(
    repository: Repository, other: Repository
) -> None:
    (outcome,) = await repository.create_orders(
        [NewOrder(request=OrderRequest.model_validate(MARKET))]
    )
    assert isinstance(outcome, tuple)
    order_id = outcome[0].order_id

    counts = [
        await repository.count_crash(order_id),
        await other.count_crash(order_id),
        await repository.count_crash(order_id),
    ]

    assert counts == [1, 2, 3]
    with pytest.raises(OrderNotFound):
        await other.count_crash(uuid4())


async def test_a_claim_walks_the_due_index_however_stale_the_statistics(
    database_url: str,
) -> None:
    """Analysed before a backlog came, the planner read all of it and sorted it to take ten."""
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute(
            """
            ANALYZE orders;
            INSERT INTO orders (id, type, token_in, token_out, amount_in, slippage_bps, status,
                                priority)
            SELECT gen_random_uuid(), 'market', 'SOL', 'USDC', 1, 50, 'pending', 0
            FROM generate_series(1, 3000);
            """
        )
        async with connection.transaction():
            taken = await connection.fetchval(
                "SELECT count(*) FROM due_orders($1::order_status[], 10)", unfinished_statuses()
            )
            read = await connection.fetchval(
                "SELECT pg_stat_get_xact_tuples_returned('orders_due'::regclass)"
            )
    finally:
        await connection.close()

    assert taken == 10
    assert read <= 20, f"the claim read {read} entries of the due index to take 10"
