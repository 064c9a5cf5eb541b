"""A token bucket that paces swap attempts: `rate_per_minute` on average, `burst` at once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


class TokenBucket:
    """A bucket that lends: a caller short of a token waits until its debt is repaid.

    Each caller takes a token at once, going into debt if none is left, and then waits
    until its debt is repaid; callers are served first come, first served, with no lock.

    The clock and the sleep are injectable so that tests can run on a fake clock.
    """

    def __init__(
        self,
        rate_per_minute: float,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._per_second = rate_per_minute / 60
        self._capacity = float(burst)
        self._tokens = float(burst)
        self._clock = clock
        self._sleep = sleep
        self._updated = clock()

    async def acquire(self) -> float:
        """Take one token, waiting as long as the rate requires; the seconds waited."""
        now = self._clock()
        self._tokens = min(self._capacity, self._tokens + (now - self._updated) * self._per_second)
        self._updated = now
        self._tokens -= 1
        wait = -self._tokens / self._per_second if self._tokens < 0 else 0.0
        if wait > 0:
            try:
                await self._sleep(wait)
            except asyncio.CancelledError:
                self._tokens += 1
                raise
        return wait
