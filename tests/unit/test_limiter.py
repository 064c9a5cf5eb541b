"""The token buckets, on a fake clock: no test here waits for real time.

The shared bucket draws on an in-memory store that keeps the repository's rules (refill by
the time elapsed, up to the burst, then take one), so what is tested here is the waiting, the
order of debts and the refunds; the store's SQL is tested on PostgreSQL in
`tests/integration/test_shared_rate.py`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from orderengine.limiter import ATTEMPTS_BUCKET, Limiter, SharedTokenBucket, TokenBucket


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


async def test_taking_at_once_refuses_rather_than_lends() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate_per_minute=60, burst=2, clock=clock, sleep=clock.sleep)

    taken = [bucket.take_at_once() for _ in range(3)]
    clock.now = 1.5
    later = [bucket.take_at_once() for _ in range(2)]

    assert taken == [True, True, False]
    assert later == [True, False], "a second and a half refilled one token and half of one"
    assert await bucket.acquire() == pytest.approx(0.5), "no debt was left by the refusals"


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


class MemoryRateStore:
    """The repository's bucket rows, in memory, on the fake clock.

    `took` is set whenever a token is taken. `take_gate`, when set, holds each take after
    it took its token (an answer that is slow to come back). `refunding` is set when a refund
    begins; `refund_gate` holds it before it gives the token back; `refund_error` makes it
    fail.
    """

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.rows: dict[str, tuple[float, float]] = {}
        self.takes: list[int] = []
        """How many tokens each take took, in order."""
        self.took = asyncio.Event()
        self.refunds = 0
        self.refunding = asyncio.Event()
        self.take_gate: asyncio.Event | None = None
        self.refund_gate: asyncio.Event | None = None
        self.refund_error: Exception | None = None

    async def take_rate_token(
        self, name: str, per_second: float, burst: int, count: int = 1
    ) -> float:
        self.takes.append(count)
        now = self.clock()
        if name in self.rows:
            tokens, updated = self.rows[name]
            tokens = min(burst, tokens + max(0.0, now - updated) * per_second) - count
            now = max(now, updated)
        else:
            tokens = burst - count
        self.rows[name] = (tokens, now)
        self.took.set()
        await asyncio.sleep(0)
        if self.take_gate is not None:
            await self.take_gate.wait()
        return tokens

    async def return_rate_token(self, name: str) -> None:
        self.refunding.set()
        if self.refund_gate is not None:
            await self.refund_gate.wait()
        if self.refund_error is not None:
            raise self.refund_error
        tokens, updated = self.rows[name]
        self.rows[name] = (tokens + 1, updated)
        self.refunds += 1

    def tokens(self, name: str = ATTEMPTS_BUCKET) -> float:
        return self.rows[name][0]


Sleep = Callable[[float], Awaitable[None]]


def shared(
    store: MemoryRateStore, rate_per_minute: float, burst: int, sleep: Sleep | None = None
) -> SharedTokenBucket:
    """A shared bucket on `store`, sleeping on the store's fake clock unless told otherwise."""
    return SharedTokenBucket(store, rate_per_minute, burst, sleep=sleep or store.clock.sleep)


class StuckSleep:
    """A sleep that never ends; `started` is set once someone sleeps on it."""

    def __init__(self) -> None:
        self.started = asyncio.Event()

    async def __call__(self, seconds: float) -> None:
        self.started.set()
        await asyncio.Event().wait()


async def cancel_once(waiter: asyncio.Task[float], reached: asyncio.Event) -> None:
    """Cancel `waiter` once it has reached `reached`, and see it end cancelled."""
    await reached.wait()
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter


def test_both_buckets_are_limiters() -> None:
    clock = FakeClock()
    limiters: list[Limiter] = [
        TokenBucket(60, 1, clock=clock, sleep=clock.sleep),
        shared(MemoryRateStore(clock), 60, 1),
    ]

    assert len(limiters) == 2


async def test_shared_burst_is_free_then_one_token_per_interval() -> None:
    clock = FakeClock()
    bucket = shared(MemoryRateStore(clock), rate_per_minute=60, burst=3)

    waits = [await bucket.acquire() for _ in range(6)]

    assert waits == [0, 0, 0, 1, 1, 1]
    assert clock.now == 3


async def test_shared_idle_time_refills_up_to_the_burst_only() -> None:
    clock = FakeClock()
    bucket = shared(MemoryRateStore(clock), rate_per_minute=120, burst=2)
    for _ in range(2):
        await bucket.acquire()

    clock.now += 60
    waits = [await bucket.acquire() for _ in range(3)]

    assert waits == [0, 0, 0.5]


async def test_two_buckets_on_one_store_share_one_rate() -> None:
    clock = FakeClock()
    store = MemoryRateStore(clock)
    first, second = shared(store, 60, 2), shared(store, 60, 2)

    waits = [await bucket.acquire() for _ in range(3) for bucket in (first, second)]

    assert waits == [0, 0, 1, 1, 1, 1]
    assert clock.now == 4


async def test_shared_debts_are_served_in_the_order_tokens_were_taken() -> None:
    clock = FakeClock()
    slept: list[float] = []

    async def sleep_together(seconds: float) -> None:
        slept.append(seconds)
        await asyncio.sleep(0)

    store = MemoryRateStore(clock)
    engines = [shared(store, 600, 1, sleep_together), shared(store, 600, 1, sleep_together)]

    waits = await asyncio.gather(*(engines[n % 2].acquire() for n in range(4)))

    # Each engine takes its two callers' tokens in one statement, the first engine's first.
    assert store.takes == [2, 2]
    assert [round(wait, 6) for wait in waits] == [0, 0.2, 0.1, 0.3]
    assert sorted(round(wait, 6) for wait in slept) == [0.1, 0.2, 0.3]


async def test_a_cancelled_shared_wait_gives_its_token_back() -> None:
    clock = FakeClock()
    store, sleep = MemoryRateStore(clock), StuckSleep()
    bucket = shared(store, 60, 1, sleep)
    await bucket.acquire()

    await cancel_once(asyncio.create_task(bucket.acquire()), sleep.started)

    assert store.refunds == 1
    assert store.tokens() == 0
    clock.now += 1
    assert await shared(store, 60, 1).acquire() == 0


async def test_the_refund_outlives_a_second_cancellation() -> None:
    clock = FakeClock()
    store, sleep = MemoryRateStore(clock), StuckSleep()
    bucket = shared(store, 60, 1, sleep)
    await bucket.acquire()
    store.refund_gate = asyncio.Event()
    waiter = asyncio.create_task(bucket.acquire())
    await sleep.started.wait()
    waiter.cancel()
    await store.refunding.wait()

    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert store.refunds == 0
    store.refund_gate.set()
    await asyncio.sleep(0)

    assert store.refunds == 1
    assert store.tokens() == 0


async def test_a_failed_refund_leaves_the_token_spent_and_still_cancels() -> None:
    clock = FakeClock()
    store, sleep = MemoryRateStore(clock), StuckSleep()
    bucket = shared(store, 60, 1, sleep)
    await bucket.acquire()
    store.refund_error = OSError("database gone")

    await cancel_once(asyncio.create_task(bucket.acquire()), sleep.started)

    assert store.refunds == 0
    assert store.tokens() == -1


async def test_a_wait_cancelled_while_taking_gives_nothing_back() -> None:
    clock = FakeClock()
    store, sleep = MemoryRateStore(clock), StuckSleep()
    bucket = shared(store, 60, 1, sleep)
    await bucket.acquire()
    store.took.clear()
    store.take_gate = asyncio.Event()

    await cancel_once(asyncio.create_task(bucket.acquire()), store.took)

    assert store.refunds == 0
    assert store.tokens() == -1
    assert not sleep.started.is_set()


async def test_callers_asking_at_once_share_a_take_and_wait_as_if_served_in_turn() -> None:
    clock = FakeClock()
    store = MemoryRateStore(clock)
    bucket = shared(store, rate_per_minute=60, burst=2)

    waits = await asyncio.gather(*(bucket.acquire() for _ in range(5)))

    assert store.takes == [5]
    assert list(waits) == [0, 0, 1, 2, 3]
    assert store.tokens() == -3


async def test_a_caller_cancelled_before_its_take_is_sent_is_left_out_of_it() -> None:
    clock = FakeClock()
    store = MemoryRateStore(clock)
    store.take_gate = asyncio.Event()
    bucket = shared(store, rate_per_minute=60, burst=5)
    first = asyncio.create_task(bucket.acquire())
    await store.took.wait()
    queued = [asyncio.create_task(bucket.acquire()) for _ in range(3)]
    await asyncio.sleep(0)
    queued[1].cancel()

    store.take_gate.set()
    waits = await asyncio.gather(first, queued[0], queued[2])

    assert list(waits) == [0, 0, 0]
    assert store.takes == [1, 2]
    assert store.tokens() == 2


async def test_a_caller_cancelled_while_its_take_is_in_flight_gets_its_token_back() -> None:
    clock = FakeClock()
    store = MemoryRateStore(clock)
    store.take_gate = asyncio.Event()
    bucket = shared(store, rate_per_minute=60, burst=3)
    waiter = asyncio.create_task(bucket.acquire())
    await store.took.wait()

    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    store.take_gate.set()
    await store.refunding.wait()
    await asyncio.sleep(0)

    assert store.takes == [1]
    assert store.refunds == 1
    assert store.tokens() == 3
