"""Each key's submissions, counted in one bucket per key for every engine on the database.

The buckets are taken from in the statement that stores the orders. Two repositories, each
with a pool of its own, stand for two engines. Thirty a minute is a bucket of three that
gains a token every two seconds: the counts allow for the time a test took, so that a slow
machine makes them looser, never wrong.
"""

from __future__ import annotations

import asyncio
import time

import asyncpg

from orderengine.domain import NewOrder, Order, OrderRequest
from orderengine.errors import IdempotencyConflict, TooManyRequests
from orderengine.limiter import SubmitRate
from orderengine.repository import Outcome, Repository
from tests.harness import read_once
from tests.polling import eventually

RATE = SubmitRate(30)
REQUEST = OrderRequest.model_validate(
    {"type": "market", "tokenIn": "SOL", "tokenOut": "USDC", "amountIn": "1", "slippageBps": 50}
)


def order(owner: str | None) -> NewOrder:
    return NewOrder(request=REQUEST, owner=owner)


def made(outcome: Outcome) -> Order:
    """The order `outcome` created; the test fails if it created none."""
    assert isinstance(outcome, tuple), outcome
    created_order, created = outcome
    assert created
    return created_order


async def stored(database_url: str) -> int:
    return int((await read_once(database_url, "SELECT count(*) FROM orders"))[0])


async def test_an_owners_orders_beyond_its_bucket_are_refused_alone(
    repository: Repository, database_url: str
) -> None:
    batch = [order("alice")] * 5 + [order("bob")] * 2 + [order(None)]

    outcomes = await repository.create_orders(batch, rate=RATE)

    refused = [n for n, outcome in enumerate(outcomes) if isinstance(outcome, TooManyRequests)]
    assert refused == [3, 4]
    assert all(isinstance(outcomes[n], tuple) for n in (0, 1, 2, 5, 6, 7))
    assert all(o.retry_after_s >= 1 for o in outcomes if isinstance(o, TooManyRequests))
    assert await stored(database_url) == 6


async def test_orders_under_a_key_already_taken_take_no_submission(
    repository: Repository, database_url: str
) -> None:
    """Resends and a conflict take nothing from the bucket, whose three go to the new orders.

    Their keys were taken by an order stored before, or by an earlier order of the batch.
    """
    first = NewOrder(request=REQUEST, owner="frank", idempotency_key="sent", digest="a")
    [outcome] = await repository.create_orders([first])
    stored_first = made(outcome)
    again = NewOrder(request=REQUEST, owner="frank", idempotency_key="again", digest="a")
    conflict = NewOrder(request=REQUEST, owner="frank", idempotency_key="sent", digest="b")
    batch = [first, again, conflict, order("frank"), again, first, order("frank")]

    outcomes = await repository.create_orders(batch, rate=RATE)

    assert outcomes[0] == (stored_first, False)
    assert outcomes[5] == (stored_first, False)
    assert isinstance(outcomes[2], IdempotencyConflict)
    assert outcomes[4] == (made(outcomes[1]), False)
    made(outcomes[3])
    made(outcomes[6])
    assert await stored(database_url) == 4


async def test_a_key_taken_while_its_batch_ran_gives_its_submission_back(
    engines: tuple[Repository, Repository], database_url: str
) -> None:
    """An order whose key is taken after its statement began gives its submission back.

    Another engine commits the key meanwhile: only the insert finds it taken, after the order
    took its submission.
    """
    keyed = NewOrder(request=REQUEST, owner="gina", idempotency_key="raced", digest="a")
    holder = await asyncpg.connect(database_url)
    try:
        holding = holder.transaction()
        await holding.start()
        await holder.execute(
            "INSERT INTO submission_buckets VALUES ('gina', $1, clock_timestamp())", RATE.burst
        )
        batch = asyncio.create_task(engines[0].create_orders([keyed], rate=RATE))
        await eventually(lambda: waiting_for_a_lock(holder))
        [first] = await engines[1].create_orders([keyed])
        await holding.commit()
        [outcome] = await batch
    finally:
        await holder.close()

    assert outcome == (made(first), False)
    tokens = await read_once(
        database_url, "SELECT tokens FROM submission_buckets WHERE owner = 'gina'"
    )
    assert tokens[0] == RATE.burst


async def waiting_for_a_lock(connection: asyncpg.Connection[asyncpg.Record]) -> bool:
    """Whether a statement on the test's database waits for a lock."""
    return bool(
        await connection.fetchval(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
    )


async def test_without_a_rate_nothing_is_limited(repository: Repository) -> None:
    outcomes = await repository.create_orders([order("carol")] * 5)

    assert all(isinstance(outcome, tuple) for outcome in outcomes)


async def test_engines_storing_at_once_take_no_more_than_one_bucket_holds(
    engines: tuple[Repository, Repository],
) -> None:
    began = time.monotonic()

    outcomes = await asyncio.gather(
        *(engines[n % 2].create_orders([order("dave")], rate=RATE) for n in range(20))
    )

    refilled = (time.monotonic() - began) * RATE.per_second
    created = sum(isinstance(outcome, tuple) for [outcome] in outcomes)
    assert RATE.burst <= created <= RATE.burst + refilled


async def test_a_refused_key_may_submit_again_after_its_retry_after(
    repository: Repository,
) -> None:
    await repository.create_orders([order("erin")] * 3, rate=RATE)
    [refused] = await repository.create_orders([order("erin")], rate=RATE)
    assert isinstance(refused, TooManyRequests)

    await asyncio.sleep(refused.retry_after_s)
    [granted] = await repository.create_orders([order("erin")], rate=RATE)

    assert isinstance(granted, tuple)


async def test_the_buckets_are_unlogged(repository: Repository, database_url: str) -> None:
    """A bucket writes no WAL: a refusal, or a key's first take, adds no flush to a commit."""
    persistence = (
        await read_once(
            database_url,
            "SELECT relpersistence::text FROM pg_class WHERE relname = 'submission_buckets'",
        )
    )[0]

    assert persistence == "u"
