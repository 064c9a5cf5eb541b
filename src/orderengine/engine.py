"""The order state machine: claims, workers, pacing, retries, reconciliation and recovery.

PostgreSQL is the truth, and the coordinator of every engine that shares it. A dispatcher
claims due orders from the database with a lease (whoever accepted them), as many as there
are idle workers, woken by new orders (here or, through NOTIFY, on another engine), by a
worker coming free, by the next retry falling due, or by the periodic sweep. A worker acts on
the claimed order's stored status, so one code path serves a fresh order, a retry, an order
recovered after a crash (this engine's or another's) and one interrupted by the database
going away:

- `pending` (or `routing`/`building`, left by a crash of an earlier version, which
  committed them on their own): run an attempt from routing;
- `submitted`: a signature was sent; ask the venue what became of it, never send again
  until the venue says it did not land.

An attempt is routing -> building -> submitted -> confirmed, the first three committed together
just before the swap is sent (`Routed`). A rejected swap or a failed routing goes back to
`pending` with `attempt + 1` and the delay before the retry, or ends
`failed` when no attempt is left; `retry.py` decides which, and how long to wait.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import Enum
from functools import partial
from typing import Unpack
from uuid import UUID

import structlog
from solders.keypair import Keypair
from structlog.contextvars import bound_contextvars

from orderengine.domain import (
    Awaited,
    Building,
    BuiltTransaction,
    Confirmed,
    EventDetails,
    Expired,
    Failed,
    NewOrder,
    Order,
    OrderEvent,
    OrderRequest,
    OrderStatus,
    Recovered,
    RetryScheduled,
    RoutingFailed,
    Submitted,
    TransitionFields,
    Waiting,
)
from orderengine.errors import (
    DatabaseUnavailable,
    NoRoute,
    OrderEngineError,
    QueueFull,
    ShuttingDown,
    SlippageExceeded,
    StaleOrder,
    SwapRejected,
    TooManyRequests,
    Unavailable,
    VenueError,
)
from orderengine.events import EventHub
from orderengine.intake import Intake
from orderengine.leases import Leases
from orderengine.limiter import Limiter, SharedTokenBucket, SubmitRate
from orderengine.metrics import Metrics
from orderengine.model import EXACT
from orderengine.notifications import EVENTS_CHANNEL, Announcer
from orderengine.repository import Backlog, Repository
from orderengine.retry import GiveUp, RetryPolicy
from orderengine.router import Decision, Router
from orderengine.settings import Settings
from orderengine.transaction import min_amount_out
from orderengine.venues.values import Dex, Execution, TransactionState
from orderengine.venues.venue import Venue
from orderengine.watchers import ListingWatcher, PriceWatcher

log = structlog.get_logger(__name__)

COUNT_EVERY_S = 1.0
"""How stale the count of waiting orders (the backlog, for backpressure) may grow while every
worker is busy; between counts it follows the orders accepted and claimed here."""
FRESH_COUNT_S = 0.1
"""How young a count must be for an order to be refused for a full queue without another."""


class Paced(Enum):
    """How a worker's wait for a rate token ended (`Engine._pace`)."""

    TAKEN = "taken"
    EXPIRED = "expired"
    """The order's expiry came first."""
    DROPPED = "dropped"
    """The order is no longer this engine's to work."""


@dataclass(frozen=True)
class Routed:
    """An attempt's routing event, not committed on its own.

    It is committed with the change the attempt comes to next (its swap sent, or refused
    before sending, put off, or the attempt stood down), so that an attempt costs one commit
    fewer: nothing but building and signing would come between the two commits. `dex` is
    the venue chosen, if one was; the order records it with that change.
    """

    details: EventDetails
    dex: Dex | None = None

    @property
    def steps(self) -> list[tuple[OrderStatus, EventDetails]]:
        """The status the attempt passes through, with its event."""
        return [(OrderStatus.ROUTING, self.details)]

    def fields(self, **fields: Unpack[TransitionFields]) -> TransitionFields:
        """`fields`, with the venue chosen when there is one."""
        if self.dex is not None:
            fields["dex"] = self.dex
        return fields


class Engine:
    """Owns the dispatcher, the workers and the watchers.

    Every status change a worker commits goes through `_move`, and the repository announces
    its events (`Repository.on_committed`). The others are announced here: a cancel and the
    expiries the dispatcher finds (`_committed`), and a price watcher's reports
    (`_published`).
    """

    def __init__(
        self,
        settings: Settings,
        repository: Repository,
        venues: Mapping[Dex, Venue],
        hub: EventHub,
        metrics: Metrics,
        signer: Keypair,
        limiter: Limiter | None = None,
    ) -> None:
        self._settings = settings
        self._repository = repository
        self._venues = dict(venues)
        self._router = Router(
            list(venues.values()), settings.quote_timeout_s, settings.max_price_impact_pct
        )
        self._hub = hub
        self._metrics = metrics
        self._limiter = limiter or SharedTokenBucket(
            repository.buckets, settings.rate_per_minute, settings.rate_burst
        )
        self._retry = RetryPolicy(settings)
        self._signer = signer
        self._leases = Leases(settings.lease_s)
        self._queue: asyncio.Queue[Order] = asyncio.Queue()
        """Orders claimed and waiting for a worker of this engine."""
        self._wake = asyncio.Event()
        """Set when there may be work to claim: an order accepted or released, a worker free."""
        self._waiting = 0
        """Unfinished orders nobody works on, as last counted, plus those accepted since: an
        order accepted while the count was being taken is counted twice rather than not at
        all, so the backlog errs towards refusing early."""
        self._accepted_count = 0
        """Orders accepted that are due at once, here or on the engines heard from: those
        accepted while a count is taken are added to it."""
        self._counted_at = float("-inf")
        self._counted_after = 0
        """`_accepted_count` when the last count began."""
        self._look_at = float("-inf")
        """When, on the loop's clock, the last count said the dispatcher should look again."""
        self._recount: asyncio.Future[None] | None = None
        """A count taken before refusing an order, shared by the submissions that wait on it."""
        self._committing = 0
        """Submissions being committed now: they count against the backlog already."""
        self._workers: list[asyncio.Task[None]] = []
        self._busy: set[asyncio.Task[None]] = set()
        """Workers holding an order now; at shutdown only these get the grace period."""
        self._holding: dict[asyncio.Task[None], UUID] = {}
        """The order each busy worker holds."""
        self._pacing: set[asyncio.Task[None]] = set()
        """Workers waiting for a rate token: at shutdown they stop, their order untouched."""
        self._dropping: dict[asyncio.Task[None], str] = {}
        """Pacing workers told to give their order up (`_drop_paced`), and why."""
        self._background: list[asyncio.Task[None]] = []
        self._claiming: asyncio.Future[list[Order]] | None = None
        """The claim under way, if any: `stop` waits for it, so that its leases are known."""
        self._watchers: list[asyncio.Task[None]] = []
        self._closing = False
        self._intake = Intake(
            repository,
            self._accepted,
            settings.intake_batch,
            rate=SubmitRate(settings.key_submit_per_minute),
        )
        self._announcer = Announcer(repository.owner, partial(repository.notify, EVENTS_CHANNEL))
        repository.on_committed(self._published)
        self._prices = PriceWatcher(
            repository.watches,
            self._router,
            poll_s=settings.price_poll_ms * settings.latency_scale / 1000,
            lease_s=settings.lease_s,
            event_bps=settings.price_event_bps,
            on_events=self._published,
            on_woken=self.wake,
        )
        self._listings = ListingWatcher(
            repository.watches, self._venues.values(), every_s=settings.sweep_s, on_woken=self.wake
        )

    # ---- intake -------------------------------------------------------------------------

    @property
    def backlog(self) -> int:
        """Accepted orders waiting for a worker or a retry, or being committed now."""
        return self._waiting + self._queue.qsize() + self._committing

    async def submit(
        self,
        request: OrderRequest,
        key: str | None = None,
        digest: str | None = None,
        owner: str | None = None,
    ) -> tuple[Order, bool]:
        """Commit an order as pending and wake the dispatcher; `(order, created)`.

        Nothing is queued in memory: the dispatcher claims the order from the database, like
        any other (`_accepted`).

        A limit order waits for its price, and a sniper for a venue to list its pair (unless
        one does already); both until their expiry. `owner` is the name of the API key
        submitting it, which also scopes the idempotency key `key`. Refused with nothing
        written while shutting down, while the backlog is full or while its key is over its
        rate; a resend is answered with its order all the same
        (`_resent_or`). Every `Unavailable` raised here means nothing was created; an order
        the database will not store fails alone (see `intake.py`).
        """
        new = NewOrder(
            request=request,
            idempotency_key=key,
            digest=digest,
            awaits=None if self._closing else await self._awaits(request),
            expires_at=self._expiry(request),
            owner=owner,
        )
        refusal = self._refusal()
        if isinstance(refusal, QueueFull):
            await self._count_again()
            refusal = self._refusal()
        if refusal is not None:
            return await self._resent_or(new, refusal)
        try:
            return await self._commit(new)
        except TooManyRequests as limited:
            return await self._resent_or(new, limited)

    async def _commit(self, new: NewOrder) -> tuple[Order, bool]:
        """Commit `new` with the intake; counted in the backlog meanwhile.

        Counted before its first await: nothing runs between `_refusal`'s look at the
        backlog and the count.
        """
        self._committing += 1
        try:
            return await self._intake.commit(new)
        finally:
            self._committing -= 1

    async def _count_again(self) -> None:
        """Count the waiting orders anew, unless a count is younger than `FRESH_COUNT_S`.

        Before an order is refused for a full queue: between counts the backlog follows only
        this engine's orders, so it may stay full after the orders were cancelled, or taken
        by other engines, for as long as this engine's dispatcher sleeps. A young count is
        taken again all the same if orders were accepted since it began: it may have
        counted them twice. Submissions that find the queue full together share one count;
        one the store cannot answer leaves the backlog as it was.
        """
        young = asyncio.get_running_loop().time() - self._counted_at < FRESH_COUNT_S
        if young and self._accepted_count == self._counted_after:
            return
        if self._recount is None or self._recount.done():
            self._recount = asyncio.ensure_future(self._count_if_reachable())
        await asyncio.shield(self._recount)

    async def _count_if_reachable(self) -> None:
        with contextlib.suppress(OrderEngineError):
            await self._count_waiting()

    async def _resent_or(self, new: NewOrder, refusal: OrderEngineError) -> tuple[Order, bool]:
        """`new`'s order if it is a resend, else `refusal` raised.

        A client that lost the answer to its order learns the order's id, whatever would
        refuse a new one. Looked up only for a refused order with an `Idempotency-Key`, in
        its submitter's own task; a lookup the store cannot answer gives the refusal.
        """
        resent = await self._repository.resent(new)
        if resent is None or isinstance(resent, DatabaseUnavailable):
            raise refusal
        if isinstance(resent, Exception):
            raise resent
        return resent

    def _refusal(self) -> Unavailable | None:
        """Why a new order may not be accepted now, if it may not: a stop, or a full queue.

        Whatever its type: an order that will wait may be due at the next look at its price
        (a limit already met), so that orders let past a full queue as waiting ones could
        fill it a hundredfold.
        """
        if self._closing:
            return ShuttingDown("the engine is shutting down; retry shortly", retry_after_s=5)
        if self.backlog >= self._settings.queue_limit:
            return QueueFull(
                f"{self.backlog} orders are waiting; retry later",
                retry_after_s=self._drain_time_s(),
            )
        return None

    async def _awaits(self, request: OrderRequest) -> Awaited | None:
        """What a new order waits for: its price (limit), a listing (sniper), or nothing."""
        if request.type == "limit":
            return "price"
        if request.type == "sniper":
            listed = await self._listings.listed()
            return None if frozenset((request.token_in, request.token_out)) in listed else "listing"
        return None

    def _expiry(self, request: OrderRequest) -> datetime | None:
        """When a waiting order gives up: as requested, or after the default time to live."""
        if not request.waits:
            return None
        ttl_s = min(self._settings.order_ttl_s, self._settings.max_order_ttl_s)
        default = datetime.now(UTC) + timedelta(seconds=ttl_s)
        return request.expires_at or default

    def _accepted(self, order: Order) -> None:
        """A new order is committed: tell its watchers, and wake the dispatcher.

        The dispatcher claims an order that is due, and learns when a waiting one expires. A
        sniper that starts waiting has the listings checked once more: a listing committed
        while the order was, whose own check could not see it, is not missed.
        """
        self._metrics.accepted.inc()
        waiting = Waiting.first(order)
        event = OrderEvent(
            order_id=order.order_id,
            seq=1,
            status=OrderStatus.PENDING,
            attempt=1,
            at=order.created_at,
            details=waiting.stored() if waiting else {},
        )
        self._hub.publish(event)
        if order.awaits == "listing":
            self._listings.poke()
        if order.awaits is None:
            self._waiting += 1
            self._accepted_count += 1
        self.wake()

    def wake(self) -> None:
        """There may be orders to claim: new ones, released ones (here or on another engine)."""
        self._wake.set()

    def heard_orders(self, accepted: int) -> None:
        """Another engine made orders available, `accepted` of them new ones due at once.

        Those count in this engine's backlog too, until its next count: the queue limit is
        the whole database's, and engines accepting together would each fill it otherwise.
        """
        self._waiting += accepted
        self._accepted_count += accepted
        self.wake()

    @property
    def venues(self) -> Mapping[Dex, Venue]:
        """The venues this engine routes between, by name."""
        return self._venues

    def listing_added(self) -> None:
        """Another engine listed a pair: wake the snipers it serves, soon."""
        self._listings.poke()

    async def listed(self) -> None:
        """A venue of this engine listed a pair: wake the snipers it serves before returning.

        So a listing's answer comes once its snipers are due, and being claimed. If the
        database fails the check, it is left to the listing watcher to try again.
        """
        try:
            await self._listings.check()
        except OrderEngineError as error:
            log.warning("snipers_not_woken", error=error.message)
            self._listings.poke()

    def _drain_time_s(self) -> int:
        per_second = min(self._settings.rate_per_minute / 60, float(self._settings.concurrency))
        return max(1, round(self.backlog / per_second))

    # ---- lifecycle ----------------------------------------------------------------------

    @property
    def stopping(self) -> bool:
        """Whether `stop` was called: no order is taken and no swap started any more."""
        return self._closing

    @property
    def workers_alive(self) -> int:
        """Workers still running: each survives any error of the orders it handles."""
        return sum(not worker.done() for worker in self._workers)

    async def start(self) -> None:
        """Start the workers, the dispatcher, the lease renewer and the two watchers.

        The dispatcher claims orders for the workers, the renewer renews their leases, and the
        watchers watch the prices limit orders wait for and the listings snipers wait for.
        """
        unfinished = len(await self._repository.unfinished())
        if unfinished:
            log.info("unfinished_orders", count=unfinished)
        self._workers = [
            asyncio.create_task(self._work(), name=f"worker-{n}")
            for n in range(self._settings.concurrency)
        ]
        self._background = [
            asyncio.create_task(self._dispatch(), name="dispatcher"),
            asyncio.create_task(self._renew(), name="renewer"),
        ]
        self._watchers = [
            asyncio.create_task(self._prices.run(), name="price-watcher"),
            asyncio.create_task(self._listings.run(), name="listing-watcher"),
        ]

    async def stop(self) -> None:
        """Start no swap after this call; let swaps in flight finish within the grace period.

        Idle workers, and workers still waiting for a rate token (whose order is left as it
        was), stop at once, and every lease but those of the swaps in flight is given back
        then, the other engines woken, so they continue those orders without waiting for the
        leases to run out. The leases of swaps in flight are renewed until they are done, and
        given back after. Stopping a stopped engine does nothing.
        """
        if self._closing:
            return
        self._closing = True
        dispatcher, renewer = self._background
        dispatcher.cancel()
        for watcher in self._watchers:
            watcher.cancel()
        await asyncio.gather(*self._watchers, return_exceptions=True)
        if self._claiming is not None:
            await asyncio.gather(self._claiming, return_exceptions=True)
        await self._prices.stop()
        stopped = [w for w in self._workers if w not in self._busy or w in self._pacing]
        for worker in stopped:
            worker.cancel()
        in_flight = self._busy - self._pacing
        await asyncio.gather(dispatcher, *stopped, return_exceptions=True)
        await self._release_all(keep={self._holding[w] for w in in_flight if w in self._holding})
        if in_flight:
            log.info("draining", in_flight=len(in_flight))
            await asyncio.wait(in_flight, timeout=self._settings.shutdown_grace_s)
        for worker in self._workers:
            worker.cancel()
        renewer.cancel()
        await asyncio.gather(*self._workers, *self._background, return_exceptions=True)
        await self._release_all()
        await self._intake.close()
        await self._announcer.close()
        log.info("engine_stopped")

    async def _release_all(self, keep: set[UUID] | None = None) -> None:
        await self._give_back_unreleased()
        held = [order_id for order_id in self._leases.held() if order_id not in (keep or ())]
        if not held:
            return
        try:
            await self._repository.release(held)
        except OrderEngineError as error:
            log.warning("leases_not_released", count=len(held), error=error.message)
            return
        for order_id in held:
            self._leases.released(order_id)
        log.info("leases_released", count=len(held))

    # ---- dispatching --------------------------------------------------------------------

    async def _dispatch(self) -> None:
        """Claim due orders for idle workers until the engine stops.

        Before each claim it gives back the leases whose release the database missed, and
        while some are left it sleeps `ORDERENGINE_DB_TIMEOUT_S` at most. Between claims it
        sleeps until woken, until the next retry falls due, or for one sweep at most: a lost
        wake-up costs latency, never an order.
        """
        while not self._closing:
            self._wake.clear()
            try:
                await self._give_back_unreleased()
                idle, claimed = await self._claim()
                if idle and claimed == idle:
                    continue
                sleep_s = await self._tend_backlog(idle)
                if self._leases.unreleased():
                    sleep_s = min(sleep_s, self._settings.db_timeout_s)
            except DatabaseUnavailable as error:
                log.warning("claim_failed", error=error.message)
                await asyncio.sleep(self._settings.db_timeout_s)
                continue
            except Exception:
                log.exception("dispatch_failed")
                await asyncio.sleep(self._settings.db_timeout_s)
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), sleep_s)

    async def _claim(self) -> tuple[int, int]:
        """Claim orders for the idle workers; how many were idle, and how many got one."""
        idle = self._settings.concurrency - len(self._busy) - self._queue.qsize()
        if idle <= 0:
            return 0, 0
        asked_at = self._leases.now()
        self._claiming = asyncio.ensure_future(self._claimed(idle, asked_at))
        claimed = await asyncio.shield(self._claiming)
        for order in claimed:
            self._queue.put_nowait(order)
        self._waiting = max(0, self._waiting - len(claimed))
        self._metrics.queued.set(self._queue.qsize())
        return idle, len(claimed)

    async def _claimed(self, idle: int, asked_at: float) -> list[Order]:
        """Claim up to `idle` orders and record their leases, even if the dispatcher is stopped.

        A claim that commits leases them to this engine: were the dispatcher cancelled before
        they were recorded, `stop` could not give them back, and they would wait for the
        leases to run out. So the claim runs apart, shielded, and `stop` waits for it.
        """
        claimed = await self._repository.claim(idle, self._leases.lease_s)
        self._leases.taken((order.order_id for order in claimed), asked_at)
        return claimed

    async def _tend_backlog(self, idle: int) -> float:
        """Count, release expired leases, end expired orders; how long the dispatcher sleeps.

        The count is `_count_waiting`'s. When it finds leases that ran out unrenewed, they are
        given back, or orders whose expiry came, they are ended (`_expire_due`), and the
        dispatcher does not sleep: the leases given back are claimed at once. Otherwise it
        wakes for the next retry, the next lease of a dead engine to run out, the next expiry,
        or the sweep, whichever comes first; at once for a retry that fell due between the
        claim and the count, which would otherwise wait for the sweep.

        While every worker is busy, each finished order wakes the dispatcher, so the count (a
        scan of the unfinished orders) is taken at most every `COUNT_EVERY_S`. In between the
        dispatcher sleeps until the time the last count set, or until the next count is due,
        not for a whole sweep: an expiry or a retry that falls due meanwhile, of an order
        accepted or set aside since the count, is late by `COUNT_EVERY_S` at most.
        """
        now = asyncio.get_running_loop().time()
        next_count = self._counted_at + COUNT_EVERY_S
        if not idle and now < min(next_count, self._look_at):
            return min(next_count, self._look_at) - now
        sleep_s = await self._after_count()
        self._look_at = now + sleep_s
        return sleep_s

    async def _after_count(self) -> float:
        """`_tend_backlog`'s work once it counts: how long to sleep."""
        backlog = await self._count_waiting()
        if backlog.expired_leases:
            released = await self._repository.release_expired()
            log.info("expired_leases_released", count=released)
            return 0
        if backlog.next_expiry_s is not None and backlog.next_expiry_s <= 0:
            await self._expire_due()
            return 0
        due_in = [s for s in (backlog.next_due_s, backlog.next_expiry_s) if s is not None]
        return min([self._settings.sweep_s, *(max(0.0, s) for s in due_in)])

    async def _count_waiting(self) -> Backlog:
        """Count the orders nobody works on, and what they wait for.

        The count is part of the `backlog`, beyond which new orders are refused.
        """
        now = asyncio.get_running_loop().time()
        accepted_before = self._accepted_count
        backlog = await self._repository.waiting()
        self._counted_at = now
        self._counted_after = accepted_before
        self._waiting = backlog.due + self._accepted_count - accepted_before
        return backlog

    async def _expire_due(self) -> None:
        """End every pending order whose expiry has come: one statement, however many."""
        for order, event in await self._repository.expire():
            self._committed(order, [event])
            log.info("order_expired", order_id=str(order.order_id), error=order.error)

    async def _renew(self) -> None:
        """Renew the leases this engine holds, a few times per lease length, until cancelled.

        It runs on while the engine stops, for the swaps still in flight. A lease whose time
        ran out unrenewed (the database was out of reach) is forgotten: its order may be
        taken over, so no swap is started on it (`_send` checks).
        """
        while True:
            await asyncio.sleep(self._leases.renew_every_s)
            expired = self._leases.expired()
            for order_id in expired:
                log.warning("lease_expired_unrenewed", order_id=str(order_id))
                self._leases.released(order_id)
            self._drop_paced(expired, "lease expired unrenewed")
            held = self._leases.held()
            if not held:
                continue
            asked_at = self._leases.now()
            try:
                kept = await self._repository.renew(held, self._leases.lease_s)
            except Exception as error:
                log.warning("lease_renewal_failed", error=str(error))
                continue
            lost = self._leases.renewed(kept, held, asked_at)
            if lost:
                log.warning("leases_lost", count=len(lost))
                self._drop_paced(lost, "lease lost")

    async def _set_aside(self, order_id: UUID, delay_s: float | None) -> None:
        """Give the order's lease back, to be claimed here or on another engine.

        It is due again after `delay_s`, or when its stored retry time says if that is None.
        """
        claim = self._leases.claim(order_id)
        try:
            await self._repository.release([order_id], delay_s)
        except OrderEngineError as error:
            log.warning("lease_not_released", error=error.message)
            self._leases.release_failed(order_id, delay_s, claim)
        else:
            self._leases.released(order_id, claim)
        self.wake()

    async def _give_back_unreleased(self) -> None:
        """Release the leases given up while the database was out of reach.

        Until then the database holds them for this engine, and nobody would take their
        orders up before the leases ran out. A lease that ran out and was taken since, here
        or elsewhere, is not this engine's any more: the release leaves it alone. A release
        that fails again is tried before the next claim.
        """
        for delay_s, order_ids in self._leases.unreleased().items():
            try:
                await self._repository.release(order_ids, delay_s)
            except Exception as error:
                log.warning("leases_not_released", count=len(order_ids), error=repr(error))
                return
            for order_id in order_ids:
                self._leases.released(order_id)

    # ---- workers ------------------------------------------------------------------------

    async def _work(self) -> None:
        """Take claimed orders until the engine stops; no error ends a worker."""
        task = asyncio.current_task()
        assert task is not None
        while not self._closing:
            order = await self._queue.get()
            self._busy.add(task)
            self._holding[task] = order.order_id
            self._metrics.queued.set(self._queue.qsize())
            self._metrics.executing.inc()
            try:
                with bound_contextvars(order_id=str(order.order_id)):
                    await self._process(order)
            except Exception:
                log.exception("worker_error", order_id=str(order.order_id))
                await self._set_aside(order.order_id, self._retry.backoff_s(1))
            finally:
                self._metrics.executing.dec()
                self._busy.discard(task)
                self._holding.pop(task, None)
                self.wake()

    async def _process(self, order: Order) -> None:
        """Advance one order as far as it goes now; a database outage only delays it."""
        try:
            await self._advance(order)
        except DatabaseUnavailable as error:
            delay = self._settings.db_timeout_s
            log.warning("database_unavailable", error=error.message, retry_in_s=delay)
            await self._set_aside(order.order_id, delay)
        except StaleOrder as error:
            log.info("stale_view", error=error.message)
            await self._set_aside(order.order_id, None)
        except Exception:
            log.exception("order_processing_crashed")
            await self._after_crash(order.order_id)

    async def _advance(self, order: Order) -> None:
        """Act on the order's stored status; one whose expiry has come and was never sent ends."""
        if order.expired(datetime.now(UTC)):
            await self._expire(order)
        elif order.status is OrderStatus.SUBMITTED:
            await self._reconcile(order)
        elif not order.status.terminal:
            await self._attempt(order)

    async def _expire(self, order: Order) -> None:
        expired = Expired.of(order)
        await self._move(order, OrderStatus.FAILED, expired, error=expired.error, release=True)
        log.info("order_expired", expires_at=str(order.expires_at))

    async def _after_crash(self, order_id: UUID) -> None:
        """After an unexpected error, try the order again later.

        An order that keeps crashing before its swap was sent ends `failed` rather than loop
        forever; a sent one is only ever reconciled, since its swap may have landed. Its
        crashes are counted in the store (`Repository.count_crash`), so that neither another
        engine nor a restart starts the count again.
        """
        crashes = 1
        try:
            crashes = await self._repository.count_crash(order_id)
            if self._retry.gives_up_after_crashes(crashes):
                order = await self._repository.get_order(order_id)
                if order.status is not OrderStatus.SUBMITTED and not order.status.terminal:
                    error = f"internal error after {crashes} tries; logged with the order id"
                    failed = Failed(error=error)
                    await self._move(order, OrderStatus.FAILED, failed, error=error, release=True)
                    return
        except OrderEngineError as error:
            log.warning("crashed_order_not_failed", error=error.message)
        await self._set_aside(order_id, self._retry.backoff_s(crashes))

    # ---- one attempt --------------------------------------------------------------------

    async def _attempt(self, order: Order) -> None:
        """Pace, route, build, send: one attempt, from wherever a crash left it.

        An order whose expiry comes while it waits for a rate token ends then, the token
        untaken: the rate may keep a worker waiting far longer than the order may wait.
        """
        paced = await self._pace(order.expires_at)
        if self._closing or paced is Paced.DROPPED:
            return
        if paced is Paced.EXPIRED:
            await self._expire(order)
            return
        if order.status is not OrderStatus.PENDING:
            order = await self._resume(order)
        decision = await self._route(order)
        if decision is not None:
            await self._send(order, decision)

    async def _pace(self, deadline: datetime | None) -> Paced:
        """Wait for a rate token until `deadline` at most.

        At shutdown the wait is cancelled and nothing was written. A wait that reaches the
        deadline is given up, as is one whose order is no longer this engine's to work
        (`_drop_paced`): the limiter takes no token for either.
        """
        task = asyncio.current_task()
        assert task is not None
        self._pacing.add(task)
        try:
            left_s = None if deadline is None else (deadline - datetime.now(UTC)).total_seconds()
            async with asyncio.timeout(None if left_s is None else max(0.0, left_s)):
                await self._limiter.acquire()
            return Paced.TAKEN
        except TimeoutError:
            return Paced.EXPIRED
        except asyncio.CancelledError:
            if task not in self._dropping or self._closing:
                raise
            task.uncancel()
            log.info("attempt_dropped", reason=self._dropping[task])
            return Paced.DROPPED
        finally:
            self._pacing.discard(task)
            self._dropping.pop(task, None)

    def _drop_paced(self, order_ids: Collection[UUID], reason: str) -> None:
        """Stop the workers waiting for a rate token for orders no longer this engine's.

        `order_ids` were cancelled, or their leases lost. Their workers' tokens stay in the
        bucket, for the orders after them; no venue is asked for a quote, and no worker kept
        waiting, for an order that will not be sent.
        """
        if self._closing:
            return
        for task in self._pacing:
            if self._holding.get(task) in order_ids and task not in self._dropping:
                self._dropping[task] = reason
                task.cancel()

    async def _route(self, order: Order) -> Decision | None:
        """Ask every venue; the decision, or None when the attempt goes no further.

        None when no venue could quote, which ends the attempt, or when the best price for
        the order's own amount is under its limit, which sends it back to waiting with no
        attempt spent. The routing event carries their quotes and the choice, or why there
        is none; it is committed with the change the attempt comes to next (`Routed`). A
        sniper takes the venues that quoted within its window.
        """
        window_s = self._sniper_window_s if order.type == "sniper" else None
        try:
            decision = await self._router.route(
                order.token_in, order.token_out, order.amount_in, window_s=window_s
            )
        except NoRoute as error:
            failed = RoutingFailed(error=error.message, unavailable=error.details or {})
            self._metrics.attempts.labels(error.code).inc()
            await self._retry_or_fail(order, error.message, routed=Routed(failed))
            return None
        if not reaches_limit(order, decision):
            await self._wait_for_price(order, decision)
            return None
        self._metrics.routed.labels(decision.best.dex).inc()
        return decision

    async def _wait_for_price(self, order: Order, decision: Decision) -> None:
        """Back to waiting: the price reached the limit for the watcher's amount, not this one.

        The watcher wakes it again no sooner than a few polls later, so that an order whose
        own amount stays under its limit is not routed, and told so, at every poll.
        """
        best = decision.best
        limit = order.limit_price
        assert limit is not None, "only an order with a limit waits for its price"
        reason = (
            f"for {format(order.amount_in, 'f')} {order.token_in} the best net price is"
            f" {format(best.price, 'f')} on {best.dex}, under the limit {format(limit, 'f')}"
        )
        waiting = Waiting(waiting="price", limit_price=limit, best_price=best.price, reason=reason)
        await self._move(
            order,
            OrderStatus.PENDING,
            waiting,
            awaits="price",
            best_price=best.price,
            retry_after_s=self._prices.recheck_s,
            release=True,
        )
        log.info("waiting_for_price", reason=reason)

    @property
    def _sniper_window_s(self) -> float:
        return self._settings.sniper_window_ms * self._settings.latency_scale / 1000

    async def _send(self, order: Order, decision: Decision) -> None:
        """Build the transaction, commit `submitted` with its signature, then send it once.

        `routing`, `building` and `submitted` are committed together, once the transaction is
        built and signed and just before it is sent: the store never holds an order in
        `routing` or `building` that this engine runs, and an attempt costs one commit. A
        crash after that commit, or an answer that never comes, is resolved by
        reconciliation, never by resending: only a definite rejection lets a new swap go.
        """
        routed = Routed(decision.details(), decision.best.dex)
        if self._closing:
            await self._stand_down(order, "the engine stopped", routed)
            return
        venue = self._venues[decision.best.dex]
        minimum = min_amount_out(decision.best, order.slippage_bps, limit_floor(order))
        try:
            transaction = await venue.build(order.order_id, decision.best, minimum, self._signer)
        except VenueError as error:
            self._metrics.attempts.labels(error.code).inc()
            await self._retry_or_fail(order, error.message, routed=routed)
            return
        built = BuiltTransaction(
            signature=transaction.signature,
            min_amount_out=transaction.min_amount_out,
            instructions=transaction.instructions,
        )
        if self._closing:
            await self._stand_down(order, "the engine stopped", routed)
            return
        if not self._leases.holds(order.order_id):
            # It ran out unrenewed, or a renewal found it gone: the order was cancelled, or
            # taken over once it ran out. The renewal loop has warned of either.
            log.info("lease_lost_before_sending")
            await self._stand_down(order, "its lease was lost", routed)
            return
        if order.expired(datetime.now(UTC)):
            # Its expiry came while the attempt waited for a rate token, routed or built.
            await self._expire(order)
            return
        sent = Submitted(
            tx_hash=transaction.signature,
            dex=venue.name,
            expires_at=transaction.expires_at,
            last_valid_block_height=transaction.last_valid_block_height,
        )
        order = await self._move(
            order,
            OrderStatus.SUBMITTED,
            sent,
            passed=[*routed.steps, (OrderStatus.BUILDING, Building(transaction=built))],
            dex=venue.name,
            tx_hash=transaction.signature,
            tx_expires_at=transaction.expires_at,
            tx_last_valid_block_height=transaction.last_valid_block_height,
            tx_blockhash=transaction.blockhash,
        )
        if order.expires_at is not None and order.expires_at <= datetime.now(UTC):
            # Its expiry came while `submitted` was being committed: the swap is not sent.
            await self._expire(order)
            return
        try:
            execution = await venue.execute(transaction)
        except SwapRejected as error:
            self._metrics.attempts.labels(error.code).inc()
            waits = isinstance(error, SlippageExceeded) and order.limit_price is not None
            await self._retry_or_fail(order, error.message, wait_for_price=waits)
            return
        except Exception as error:
            self._metrics.attempts.labels("unknown").inc()
            log.warning("outcome_unknown", tx_hash=transaction.signature, error=repr(error))
            await self._set_aside(order.order_id, self._retry.backoff_s(1))
            return
        await asyncio.shield(self._confirm(order, execution))

    async def _stand_down(self, order: Order, why: str, routed: Routed) -> None:
        """Put back an attempt this engine will not send: `pending`, attempt unspent.

        Its routing is committed with the change, and the lease goes with it, so the next
        start or another engine takes it up.
        """
        details = Recovered(recovered=f"{why} while routing; routing again")
        await self._move(
            order, OrderStatus.PENDING, details, passed=routed.steps, **routed.fields(release=True)
        )

    async def _resume(self, order: Order) -> Order:
        """An order found in `routing` or `building` was interrupted: show it, start over."""
        details = Recovered(recovered=f"interrupted while {order.status}; routing again")
        log.info("order_resumed", interrupted_in=str(order.status))
        return await self._move(order, OrderStatus.PENDING, details)

    async def _reconcile(self, order: Order) -> None:
        """Resolve a sent signature with its venue: landed, still pending, or safe to retry.

        Orders sent before expiry times were stored count as expiring when they were sent.
        """
        assert order.tx_hash is not None, "a submitted order has a signature"
        assert order.dex is not None, "a submitted order has a venue"
        expires_at = order.tx_expires_at or order.updated_at
        venue = self._venues[order.dex]
        status = await venue.transaction_status(
            order.tx_hash, expires_at, order.tx_last_valid_block_height, order.tx_blockhash
        )
        log.info("reconciled", tx_hash=order.tx_hash, state=str(status.state))
        if status.state is TransactionState.LANDED:
            assert status.execution is not None
            await self._confirm(order, status.execution, reconciled=True)
        elif status.state is TransactionState.PENDING:
            sent_ago_s = (datetime.now(UTC) - order.updated_at).total_seconds()
            await self._set_aside(order.order_id, self._retry.pending_s(sent_ago_s))
        elif status.state is TransactionState.REJECTED:
            reason = status.error or f"transaction {order.tx_hash} was rejected"
            waits = status.slipped and order.limit_price is not None
            await self._retry_or_fail(order, reason, reconciled=True, wait_for_price=waits)
        else:
            reason = f"transaction {order.tx_hash} expired without landing"
            await self._retry_or_fail(order, reason, reconciled=True)

    async def _confirm(
        self, order: Order, execution: Execution, *, reconciled: bool = False
    ) -> None:
        details = Confirmed.of(execution, reconciled=reconciled)
        await self._move(order, OrderStatus.CONFIRMED, details, execution=execution, release=True)
        self._metrics.attempts.labels("confirmed").inc()
        log.info(
            "order_confirmed",
            dex=execution.dex,
            tx_hash=execution.tx_hash,
            amount_out=str(execution.amount_out),
        )

    async def _retry_or_fail(
        self,
        order: Order,
        reason: str,
        *,
        routed: Routed | None = None,
        reconciled: bool = False,
        wait_for_price: bool = False,
    ) -> None:
        """Schedule the next attempt, or fail the order when none is left.

        An attempt that ended before anything was sent comes with its `routed`, committed
        with the change. With `wait_for_price` (a limit order's swap refused for slippage)
        the next attempt waits for the price again instead of a delay. Either way the lease
        is given up with the change.
        """
        flag = reconciled or None
        passed = routed.steps if routed else []
        with_venue = routed.fields if routed else TransitionFields
        step = self._retry.after_failure(order.attempt, reason)
        if isinstance(step, GiveUp):
            failed = Failed(error=step.error, reconciled=flag)
            await self._move(
                order,
                OrderStatus.FAILED,
                failed,
                passed=passed,
                **with_venue(error=step.error, release=True),
            )
            log.warning("order_failed", error=step.error)
            return
        if wait_for_price:
            waiting = Waiting(waiting="price", limit_price=order.limit_price, reason=reason)
            await self._move(
                order,
                OrderStatus.PENDING,
                waiting,
                attempt=step.attempt,
                error=reason,
                awaits="price",
                release=True,
            )
            log.info("order_waits_for_price_again", error=reason)
            return
        retry = RetryScheduled(error=reason, retry_in_ms=step.retry_in_ms, reconciled=flag)
        await self._move(
            order,
            OrderStatus.PENDING,
            retry,
            passed=passed,
            **with_venue(
                attempt=step.attempt, error=reason, retry_after_s=step.delay_s, release=True
            ),
        )
        log.info("order_retry_scheduled", error=reason, retry_in_ms=step.retry_in_ms)

    async def _move(
        self,
        order: Order,
        status: OrderStatus,
        details: EventDetails,
        *,
        passed: Sequence[tuple[OrderStatus, EventDetails]] = (),
        **fields: Unpack[TransitionFields],
    ) -> Order:
        """Commit a status change from `order`, the worker's view; the order as it now is.

        With `passed`, the change goes through those statuses first, each with its event, in
        the same commit (`Repository.transition_through`). The events are committed with the
        change, and the repository hands them to the watchers as its statement returns
        (`Repository.on_committed`), before this resumes.
        """
        claim = self._leases.claim(order.order_id)
        moved, events = await self._repository.transition_through(
            order, passed, status, details, **fields
        )
        self._count_end(moved, events)
        if fields.get("release", False):
            self._leases.released(order.order_id, claim)
            self.wake()
        return moved

    def _published(self, events: list[OrderEvent]) -> None:
        """Tell the watchers here and the other engines of committed events."""
        for event in events:
            self._hub.publish(event)
            self._announcer.announce(event.order_id, event.seq)

    def _committed(self, order: Order, events: list[OrderEvent]) -> None:
        """Tell the watchers here and the other engines of committed events; count an end.

        For what is committed outside the status changes' groups (a cancel, an expiry); those
        the repository tells itself (`_move`).
        """
        self._published(events)
        self._count_end(order, events)

    def _count_end(self, order: Order, events: list[OrderEvent]) -> None:
        """Count an order that ended, and how long it took."""
        if order.status.terminal:
            self._metrics.finished.labels(str(order.status)).inc()
            ended_at = events[-1].at
            self._metrics.order_seconds.observe((ended_at - order.created_at).total_seconds())

    async def cancel(self, order_id: UUID) -> Order:
        """End an order nothing was sent for `failed`, for its client (`Repository.cancel`)."""
        order, event = await self._repository.cancel(order_id)
        self._drop_paced({order_id}, "cancelled")
        self._committed(order, [event])
        log.info("order_cancelled", order_id=str(order_id), attempt=order.attempt)
        return order

    async def preview(self, token_in: str, token_out: str, amount_in: Decimal) -> Decision:
        """What routing would decide for this swap now; `NoRoute` when no venue quotes.

        The attempt's router, deadline and price-impact cap; no rate token, nothing written.
        """
        return await self._router.route(token_in, token_out, amount_in)


def reaches_limit(order: Order, decision: Decision) -> bool:
    """Whether the best quote pays at least the order's limit price for its whole amount."""
    floor = limit_floor(order)
    return floor is None or decision.best.amount_out >= floor


def limit_floor(order: Order) -> Decimal | None:
    """The least output an order with a limit price accepts: its amount times that price.

    Exact: a limit price may have more digits than the default 28 would keep.
    """
    if order.limit_price is None:
        return None
    return EXACT.multiply(order.amount_in, order.limit_price)
