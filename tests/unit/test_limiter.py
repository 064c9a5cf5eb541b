"""The token bucket, on a fake clock: no test here waits for real time."""

from __future__ import annotations

import asyncio

from orderengine.limiter import TokenBucket


class FakeClock:
    """A clock that only moves when someone sleeps on it."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


async def test_burst_is_free_then_one_token_per_interval() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate_per_minute=60, burst=3, clock=clock, sleep=clock.sleep)

    waits = [await bucket.acquire() for _ in range(6)]

    assert waits == [0, 0, 0, 1, 1, 1]
    assert clock.now == 3


async def test_idle_time_refills_up_to_the_burst_only() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate_per_minute=120, burst=2, clock=clock, sleep=clock.sleep)
    for _ in range(2):
        await bucket.acquire()

    clock.now += 60
    waits = [await bucket.acquire() for _ in range(3)]

    assert waits == [0, 0, 0.5]


async def test_concurrent_callers_are_paced_first_come_first_served() -> None:
    clock = FakeClock()
    slept: list[float] = []

    async def sleep_together(seconds: float) -> None:
        slept.append(seconds)
        await asyncio.sleep(0)

    bucket = TokenBucket(rate_per_minute=600, burst=1, clock=clock, sleep=sleep_together)

    waits = await asyncio.gather(*(bucket.acquire() for _ in range(4)))

    assert [round(wait, 6) for wait in waits] == [0, 0.1, 0.2, 0.3]
    assert [round(wait, 6) for wait in slept] == [0.1, 0.2, 0.3]


async def test_a_cancelled_wait_gives_its_token_back() -> None:
    clock = FakeClock()
    never = asyncio.Event()

    async def stuck_sleep(seconds: float) -> None:
        await never.wait()

    bucket = TokenBucket(rate_per_minute=60, burst=1, clock=clock, sleep=stuck_sleep)
    await bucket.acquire()
    waiter = asyncio.create_task(bucket.acquire())
    await asyncio.sleep(0)
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)

    clock.now += 1
    assert await bucket.acquire() == 0
