"""Token buckets: the pace of swap attempts, of each key's submissions, and more.

`TokenBucket` keeps its tokens in memory and paces one process: `rate_per_minute` on
average, `burst` at once. It paces what a client sends on a socket (its frames and its
messages, `sockets.py`) and the live venues' HTTP requests (`venues/factory.py`); tests of
the engine give it one to pace attempts.

Swap attempts: `SharedTokenBucket` keeps their tokens in a store all engines share (one row
of PostgreSQL, through `bucket_store.py`), so that engines on one database together start no
more attempts than one would. The engine sees either bucket as a `Limiter`.

Submissions: `SubmitRate` is how fast each key (owner) may submit, from a bucket of its own
that every engine on the database shares.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final, Protocol

import structlog

from orderengine.errors import TooManyRequests

log = structlog.get_logger(__name__)

ATTEMPTS_BUCKET = "attempts"
"""The name of the shared bucket every engine draws its execution attempts from."""
BURST_MINUTES: Final = 0.1
"""A key may submit this share of a minute's limit at once."""


class Limiter(Protocol):
    """What paces attempts: `acquire` returns once the caller may start one."""

    async def acquire(self) -> float:
        """Take one token, waiting as long as the rate requires; the seconds waited."""
        ...


class RateStore(Protocol):
    """Where a shared bucket's tokens live; `BucketStore` is one.

    `take_rate_token` refills the bucket `name` for the time elapsed since it was last
    touched, at `per_second` and up to `burst` (a new bucket starts with `burst`), takes
    `count` tokens, and returns the tokens left: negative is a debt, repaid after
    `-tokens / per_second` seconds. It is atomic: concurrent takers are served one after the
    other. `return_rate_token` gives one token back.
    """

    async def take_rate_token(
        self, name: str, per_second: float, burst: int, count: int = 1
    ) -> float: ...

    async def return_rate_token(self, name: str) -> None: ...


class TokenBucket:
    """A bucket that lends: a caller short of a token waits until its debt is repaid.

    Each caller takes a token at once, going into debt if none is left, and then waits
    until its debt is repaid; callers are served first come, first served, with no lock. A
    caller that would rather go without than wait takes one only if one is left
    (`take_at_once`).

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
        self._refill()
        self._tokens -= 1
        wait = -self._tokens / self._per_second if self._tokens < 0 else 0.0
        if wait > 0:
            try:
                await self._sleep(wait)
            except asyncio.CancelledError:
                self._tokens += 1
                raise
        return wait

    def take_at_once(self) -> bool:
        """Take one token if one is left, neither waiting nor going into debt; whether taken."""
        self._refill()
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self._capacity, self._tokens + (now - self._updated) * self._per_second)
        self._updated = now


class SharedTokenBucket:
    """The same lending bucket, its tokens kept in a store every engine shares.

    Each `acquire` takes a token from the store, going into debt if none is left, then
    waits out its debt here. The store serves takers one at a time, so debts, and waits,
    follow the order in which tokens were taken, whichever engine took them. Callers here
    share round trips: the first takes its token at once, and those who ask while a take is
    in flight are taken together as soon as it returns, in one statement, each with the
    debt it would have had one after the other (as new orders are committed, `intake.py`).

    A caller cancelled while waiting gives its token back; the refund is shielded, so the
    cancellation does not cut it short, and the cancelled caller returns once it is done
    (unless cancelled again, when the refund still finishes on its own). A failed refund is
    logged, and the token stays spent: engines then start fewer attempts, never more. A
    caller cancelled while its token is being taken gives it back once the take returns;
    when the take fails, whether the store took it is unknown, and nothing is given back,
    erring the same safe way.

    Errors of the store (`DatabaseUnavailable`, from the `BucketStore`) reach the caller: no
    token was taken, or it is unknown whether one was.
    """

    def __init__(
        self,
        store: RateStore,
        rate_per_minute: float,
        burst: int,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._store = store
        self._per_second = rate_per_minute / 60
        self._burst = burst
        self._sleep = sleep
        self._refunds: set[asyncio.Task[None]] = set()
        """Refunds under way, held so that none is collected before it is done."""
        self._asking: list[asyncio.Future[float]] = []
        """Callers waiting for the next take, in the order they asked."""
        self._taker: asyncio.Task[None] | None = None

    async def acquire(self) -> float:
        """Take one token, waiting as long as the rate requires; the seconds waited."""
        tokens = await self._take()
        wait = -tokens / self._per_second if tokens < 0 else 0.0
        if wait > 0:
            try:
                await self._sleep(wait)
            except asyncio.CancelledError:
                await self._give_back()
                raise
        return wait

    async def _take(self) -> float:
        """The tokens left once this caller's token is taken, with those asked meanwhile.

        Cancelled once its token was taken, and before it heard so, it gives the token back.
        """
        asked: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._asking.append(asked)
        if self._taker is None or self._taker.done():
            self._taker = asyncio.create_task(self._take_asked())
        try:
            return await asked
        except asyncio.CancelledError:
            if asked.done() and not asked.cancelled() and asked.exception() is None:
                await self._give_back()
            raise

    async def _take_asked(self) -> None:
        """Take the tokens of everyone asking, one statement at a time, until nobody asks.

        A caller cancelled before its take was sent is left out of it; one cancelled while it
        was in flight has its token given back once the take returns.
        """
        while self._asking:
            asking = [asked for asked in self._asking if not asked.done()]
            self._asking = []
            if not asking:
                continue
            try:
                left = await self._store.take_rate_token(
                    ATTEMPTS_BUCKET, self._per_second, self._burst, len(asking)
                )
            except BaseException as error:
                for asked in asking:
                    if not asked.done():
                        asked.set_exception(error)
                if isinstance(error, asyncio.CancelledError):
                    raise
                continue
            for behind, asked in enumerate(reversed(asking)):
                if asked.done():
                    self._refund_later()
                else:
                    asked.set_result(left + behind)

    async def _give_back(self) -> None:
        await asyncio.shield(self._refund_later())

    def _refund_later(self) -> asyncio.Task[None]:
        """Give one token back, in a task of its own, held until it is done."""
        refund = asyncio.create_task(self._refund())
        self._refunds.add(refund)
        refund.add_done_callback(self._refunds.discard)
        return refund

    async def _refund(self) -> None:
        try:
            await self._store.return_rate_token(ATTEMPTS_BUCKET)
        except Exception as error:
            log.warning("rate_token_not_returned", bucket=ATTEMPTS_BUCKET, error=repr(error))


@dataclass(frozen=True)
class SubmitRate:
    """How fast each key (owner) may submit orders: `per_minute` on average, a tenth at once.

    Each owner has one bucket for every engine on the database, so that a client spreading
    its orders over several engines is limited as by one. It is taken from in the statement
    that stores the orders (`Repository.create_orders`), so a limit costs no round trip of
    its own, and a submission refused leaves the bucket as it was.
    """

    per_minute: float

    @property
    def per_second(self) -> float:
        return self.per_minute / 60

    @property
    def burst(self) -> float:
        """The submissions a full bucket holds: a tenth of a minute's, at least one."""
        return max(1.0, self.per_minute * BURST_MINUTES)

    def refusal(self, tokens: float) -> TooManyRequests:
        """The answer to a submission refused by a bucket holding `tokens` (fewer than one)."""
        return TooManyRequests(
            f"this key submitted more than {self.per_minute:g} orders a minute; retry shortly",
            retry_after_s=math.ceil((1 - tokens) / self.per_second),
        )
