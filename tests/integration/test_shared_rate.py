"""One rate for every engine on a database: the shared token bucket, on PostgreSQL.

Two repositories, each with a pool of its own, stand for two engines. The counts are read
from the waits `acquire` returns and from when the database answered, not from how long
anything took: a slow machine makes the bounds looser, never wrong.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from orderengine.limiter import ATTEMPTS_BUCKET, RateStore, SharedTokenBucket
from orderengine.repository import Repository

RATE_PER_MINUTE = 3000
"""50 attempts a second: the test's attempts are all let go within half a second."""
BURST = 5
PER_ENGINE = 15
SLACK = 1e-6
"""Rounding of the stored tokens, in tokens."""


class Answered:
    """A store of buckets, noting when each take was answered and when one first was."""

    def __init__(self, store: RateStore) -> None:
        self._store = store
        self.answered: list[float] = []
        self.took = asyncio.Event()

    async def take_rate_token(
        self, name: str, per_second: float, burst: int, count: int = 1
    ) -> float:
        tokens = await self._store.take_rate_token(name, per_second, burst, count)
        self.answered.append(time.monotonic())
        self.took.set()
        return tokens

    async def return_rate_token(self, name: str) -> None:
        await self._store.return_rate_token(name)


async def test_a_new_bucket_starts_full_and_a_refill_stops_at_the_burst(
    repository: Repository,
) -> None:
    slow = 0.001  # tokens a second: next to nothing refills while the test runs

    taken = [await repository.buckets.take_rate_token("test", slow, 3) for _ in range(5)]
    await asyncio.sleep(0.05)
    refilled = await repository.buckets.take_rate_token("test", 1000, 3)

    assert taken == pytest.approx([2, 1, 0, -1, -2], abs=0.01)
    assert refilled == 2


async def test_a_returned_token_is_taken_again(repository: Repository) -> None:
    slow = 0.001
    for _ in range(3):
        await repository.buckets.take_rate_token("test", slow, 2)

    await repository.buckets.return_rate_token("test")

    assert await repository.buckets.take_rate_token("test", slow, 2) == pytest.approx(-1, abs=0.01)
    assert await repository.buckets.take_rate_token("other", slow, 2) == 1


async def test_two_engines_together_start_no_more_attempts_than_one(
    engines: tuple[Repository, Repository],
) -> None:
    stores = [Answered(repository.buckets) for repository in engines]
    buckets = [SharedTokenBucket(store, RATE_PER_MINUTE, BURST) for store in stores]
    per_second = RATE_PER_MINUTE / 60
    started: list[float] = []

    async def attempt(bucket: SharedTokenBucket) -> float:
        wait = await bucket.acquire()
        started.append(time.monotonic())
        return wait

    begun = time.monotonic()
    waits = await asyncio.gather(
        *(attempt(bucket) for _ in range(PER_ENGINE) for bucket in buckets)
    )
    taking = max(at for store in stores for at in store.answered) - begun

    # Every token was taken between `begun` and `begun + taking`, so the k attempts that
    # waited least were all let go by `begun + taking + wait`, which the rate allows only if
    # k <= burst + rate × (taking + wait). Two separate buckets would let 2 × burst go at once.
    assert all(store.answered for store in stores)
    for k, wait in enumerate(sorted(waits), start=1):
        assert k <= BURST + per_second * (taking + wait) + SLACK, (k, wait, taking)
    assert sum(wait == 0 for wait in waits) >= BURST
    assert max(waits) <= (len(waits) - BURST) / per_second + SLACK
    # The same, counted by when the attempts really started.
    for k, at in enumerate(sorted(started), start=1):
        assert k <= BURST + per_second * (at - begun) + SLACK, (k, at - begun)


async def test_a_cancelled_wait_gives_its_token_back_to_every_engine(
    engines: tuple[Repository, Repository],
) -> None:
    first, second = engines
    per_minute = 6  # one token every 10 s: the second attempt's wait outlasts the test
    store = Answered(first.buckets)
    bucket = SharedTokenBucket(store, per_minute, 1)
    assert await bucket.acquire() == 0
    store.took.clear()

    waiter = asyncio.create_task(bucket.acquire())
    await store.took.wait()
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    left = await second.buckets.take_rate_token(ATTEMPTS_BUCKET, per_minute / 60, 1)

    # With the token back, the other engine owes one token (less what refilled since);
    # without it, it would owe two.
    assert -1 - SLACK <= left < -0.5
