"""Each key's submissions, counted in one bucket per key for every engine on the database.

The buckets are taken from in the statement that stores the orders. Two repositories, each
with a pool of its own, stand for two engines. Thirty a minute is a bucket of three that
gains a token every two seconds: the counts allow for the time a test took, so that a slow
machine makes them looser, never wrong.
"""

from __future__ import annotations

import asyncio
import time

from orderengine.domain import NewOrder, OrderRequest
from orderengine.errors import TooManyRequests
from orderengine.limiter import SubmitRate
from orderengine.repository import Repository
from tests.harness import read_once

RATE = SubmitRate(30)
REQUEST = OrderRequest.model_validate(
    {"type": "market", "tokenIn": "SOL", "tokenOut": "USDC", "amountIn": "1", "slippageBps": 50}
)


def order(owner: str | None) -> NewOrder:
    return NewOrder(request=REQUEST, owner=owner)


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
