"""The order state machine: queue, workers, pacing, retries, reconciliation and recovery.

PostgreSQL is the truth and the queue is only a dispatcher. A worker reads the order's
stored status and acts on it, so one code path serves a fresh order, a retry, an order
recovered after a crash and one interrupted by the database going away:

- `pending` (or `routing`/`building`, left by a crash): run an attempt from routing;
- `submitted`: a signature was sent; ask the venue what became of it, never send again
  until the venue says it did not land.

An attempt is routing -> building -> submitted -> confirmed. A rejected swap or a failed
routing goes back to `pending` with `attempt + 1` and the delay before the retry, or ends
`failed` when no attempt is left; `retry.py` decides which, and how long to wait.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Unpack
from uuid import UUID

import structlog
from solders.keypair import Keypair
from structlog.contextvars import bound_contextvars

from orderengine.domain import (
    Building,
    BuiltTransaction,
    Confirmed,
    EventDetails,
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
)
from orderengine.errors import (
    DatabaseUnavailable,
    NoRoute,
    OrderEngineError,
    QueueFull,
    ShuttingDown,
    StaleOrder,
    SwapRejected,
)
from orderengine.events import EventHub
from orderengine.intake import Intake
from orderengine.limiter import TokenBucket
from orderengine.metrics import Metrics
from orderengine.repository import Repository
from orderengine.retry import GiveUp, RetryPolicy
from orderengine.router import Decision, Router
from orderengine.settings import Settings
from orderengine.transaction import build
from orderengine.venues.values import Dex, Execution, TransactionState
from orderengine.venues.venue import Venue

log = structlog.get_logger(__name__)


class Engine:
    """Owns the queue and the workers; every status change goes through `_move`."""

    def __init__(
        self,
        settings: Settings,
        repository: Repository,
        venues: Mapping[Dex, Venue],
        hub: EventHub,
        metrics: Metrics,
        signer: Keypair,
        limiter: TokenBucket | None = None,
    ) -> None:
        self._settings = settings
        self._repository = repository
        self._venues = dict(venues)
        self._router = Router(
            list(venues.values()), settings.quote_timeout_s, settings.max_price_impact_pct
        )
        self._hub = hub
        self._metrics = metrics
        self._limiter = limiter or TokenBucket(settings.rate_per_minute, settings.rate_burst)
        self._retry = RetryPolicy(settings)
        self._signer = signer
        self._queue: asyncio.Queue[UUID] = asyncio.Queue()
        self._queued_or_working: set[UUID] = set()
        """Orders in the queue or in a worker's hands: queueing one of them again is a no-op."""
        self._waiting: dict[UUID, asyncio.TimerHandle] = {}
        """Orders waiting out a delay (a retry's backoff, a pending signature, an outage)."""
        self._crashes: dict[UUID, int] = {}
        """Unexpected errors so far per order, forgotten once it is processed cleanly."""
        self._committing = 0
        """Submissions being committed now: they count against the backlog already."""
        self._workers: list[asyncio.Task[None]] = []
        self._busy: set[asyncio.Task[None]] = set()
        """Workers holding an order now; at shutdown only these get the grace period."""
        self._pacing: set[asyncio.Task[None]] = set()
        """Workers waiting for a rate token: at shutdown they stop, their order untouched."""
        self._sweeper: asyncio.Task[None] | None = None
        self._closing = False
        self._intake = Intake(repository, self._accepted, settings.intake_batch)

    # ---- intake -------------------------------------------------------------------------

    @property
    def backlog(self) -> int:
        """Accepted orders waiting for a worker, for a retry, or being committed now."""
        return self._queue.qsize() + len(self._waiting) + self._committing

    async def submit(
        self, request: OrderRequest, key: str | None = None, digest: str | None = None
    ) -> tuple[Order, bool]:
        """Commit an order as pending and queue it; `(order, created)`.

        Refused with nothing written while shutting down or while the backlog is full. Every
        `Unavailable` raised here means nothing was created; an order the database will not
        store fails alone (see `intake.py`).
        """
        if self._closing:
            raise ShuttingDown("the engine is shutting down; retry shortly", retry_after_s=5)
        if self.backlog >= self._settings.queue_limit:
            raise QueueFull(
                f"{self.backlog} orders are waiting; retry later",
                retry_after_s=self._drain_time_s(),
            )
        self._committing += 1
        try:
            return await self._intake.commit(
                NewOrder(request=request, idempotency_key=key, digest=digest)
            )
        finally:
            self._committing -= 1

    def _accepted(self, order: Order) -> None:
        """A new order is committed: tell its watchers and queue it."""
        self._metrics.accepted.inc()
        event = OrderEvent(
            order_id=order.order_id,
            seq=1,
            status=OrderStatus.PENDING,
            attempt=1,
            at=order.created_at,
        )
        self._hub.publish(event)
        self._enqueue(order.order_id)

    def _drain_time_s(self) -> int:
        per_second = min(self._settings.rate_per_minute / 60, float(self._settings.concurrency))
        return max(1, round(self.backlog / per_second))

    def _enqueue(self, order_id: UUID) -> None:
        """Queue an order for a worker, unless it is queued or being worked on already."""
        waiting = self._waiting.pop(order_id, None)
        if waiting is not None:
            waiting.cancel()
        if self._closing or order_id in self._queued_or_working:
            return
        self._queued_or_working.add(order_id)
        self._queue.put_nowait(order_id)
        self._metrics.queued.set(self._queue.qsize())

    def _enqueue_after(self, order_id: UUID, delay_s: float) -> None:
        """Queue an order again after a delay, without holding a worker meanwhile."""
        self._queued_or_working.discard(order_id)
        earlier = self._waiting.pop(order_id, None)
        if earlier is not None:
            earlier.cancel()
        loop = asyncio.get_running_loop()
        self._waiting[order_id] = loop.call_later(delay_s, self._enqueue, order_id)

    # ---- lifecycle ----------------------------------------------------------------------

    @property
    def workers_alive(self) -> int:
        """Workers still running: each survives any error of the orders it handles."""
        return sum(not worker.done() for worker in self._workers)

    async def start(self) -> None:
        """Take up every unfinished order, oldest first, then start the workers and the sweep."""
        found = await self._dispatch_unfinished()
        if found:
            log.info("orders_recovered", count=found)
        self._workers = [
            asyncio.create_task(self._work(), name=f"worker-{n}")
            for n in range(self._settings.concurrency)
        ]
        self._sweeper = asyncio.create_task(self._sweep(), name="sweeper")

    async def _dispatch_unfinished(self) -> int:
        """Queue each unfinished order nobody holds, or set it aside until its retry is due.

        The retry time is stored with the order, so a restart honours the delay the client
        was told. Returns how many orders were taken up.
        """
        taken = 0
        for order_id, due_in_s in await self._repository.unfinished_with_due_times():
            if order_id in self._queued_or_working or order_id in self._waiting:
                continue
            taken += 1
            if due_in_s > 0:
                self._enqueue_after(order_id, due_in_s)
            else:
                self._enqueue(order_id)
        return taken

    async def _sweep(self) -> None:
        """Every `sweep_s`, take up unfinished orders that nothing in memory will wake.

        Nothing should be missed, but a lost wake-up (an answer never read, a timer lost to
        an error) then costs one sweep of latency rather than an order left until a restart.
        """
        while not self._closing:
            await asyncio.sleep(self._settings.sweep_s)
            try:
                found = await self._dispatch_unfinished()
            except Exception as error:
                log.warning("sweep_failed", error=str(error))
                continue
            if found:
                log.info("orders_swept", count=found)

    async def stop(self) -> None:
        """Start no swap after this call; let swaps in flight finish within the grace period.

        Idle workers, and workers still waiting for a rate token (whose order is left as it
        was), stop at once. Orders not started stay in the database for the next start.
        Stopping a stopped engine does nothing.
        """
        if self._closing:
            return
        self._closing = True
        if self._sweeper is not None:
            self._sweeper.cancel()
        for handle in self._waiting.values():
            handle.cancel()
        self._waiting.clear()
        for worker in self._workers:
            if worker not in self._busy or worker in self._pacing:
                worker.cancel()
        in_flight = self._busy - self._pacing
        if in_flight:
            log.info("draining", in_flight=len(in_flight))
            await asyncio.wait(in_flight, timeout=self._settings.shutdown_grace_s)
        for worker in self._workers:
            worker.cancel()
        tasks = [*self._workers, *([self._sweeper] if self._sweeper else [])]
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._intake.close()
        log.info("engine_stopped", left_pending=self._queue.qsize())

    async def _work(self) -> None:
        """Take orders from the queue until the engine stops; no error ends a worker."""
        task = asyncio.current_task()
        assert task is not None
        while not self._closing:
            order_id = await self._queue.get()
            self._busy.add(task)
            self._metrics.queued.set(self._queue.qsize())
            self._metrics.executing.inc()
            try:
                with bound_contextvars(order_id=str(order_id)):
                    await self._process(order_id)
            except Exception:
                log.exception("worker_error", order_id=str(order_id))
                self._enqueue_after(order_id, self._retry.backoff_s(1))
            finally:
                self._metrics.executing.dec()
                self._busy.discard(task)

    async def _process(self, order_id: UUID) -> None:
        """Advance one order as far as it goes now; a database outage only delays it."""
        try:
            await self._advance(order_id)
        except DatabaseUnavailable as error:
            delay = self._settings.db_timeout_s
            log.warning("database_unavailable", error=error.message, retry_in_s=delay)
            self._enqueue_after(order_id, delay)
        except StaleOrder as error:
            log.info("stale_view", error=error.message)
            self._queued_or_working.discard(order_id)
            self._enqueue(order_id)
        except Exception:
            log.exception("order_processing_crashed")
            await self._after_crash(order_id)
        else:
            self._crashes.pop(order_id, None)

    async def _advance(self, order_id: UUID) -> None:
        """Read the order and act on its stored status."""
        order = await self._repository.get_order(order_id)
        if order.status is OrderStatus.SUBMITTED:
            await self._reconcile(order)
        elif not order.status.terminal:
            await self._attempt(order)
        self._queued_or_working.discard(order_id)

    async def _after_crash(self, order_id: UUID) -> None:
        """After an unexpected error, try the order again later.

        An order that keeps crashing before its swap was sent ends `failed` rather than loop
        forever; a sent one is only ever reconciled, since its swap may have landed.
        """
        crashes = self._crashes[order_id] = self._crashes.get(order_id, 0) + 1
        if self._retry.gives_up_after_crashes(crashes):
            try:
                order = await self._repository.get_order(order_id)
                if order.status is not OrderStatus.SUBMITTED and not order.status.terminal:
                    error = f"internal error after {crashes} tries; logged with the order id"
                    await self._move(order, OrderStatus.FAILED, Failed(error=error), error=error)
                    self._crashes.pop(order_id, None)
                    self._queued_or_working.discard(order_id)
                    return
            except OrderEngineError as error:
                log.warning("crashed_order_not_failed", error=error.message)
        self._enqueue_after(order_id, self._retry.backoff_s(crashes))

    # ---- one attempt --------------------------------------------------------------------

    async def _attempt(self, order: Order) -> None:
        """Pace, route, build, send: one attempt, from wherever a crash left it."""
        await self._pace()
        if self._closing:
            return
        if order.status is not OrderStatus.PENDING:
            order = await self._resume(order)
        routed = await self._route(order)
        if routed is not None:
            await self._send(*routed)

    async def _pace(self) -> None:
        """Wait for a rate token; at shutdown the wait is cancelled and nothing was written."""
        task = asyncio.current_task()
        assert task is not None
        self._pacing.add(task)
        try:
            await self._limiter.acquire()
        finally:
            self._pacing.discard(task)

    async def _route(self, order: Order) -> tuple[Order, Decision] | None:
        """Ask every venue; None when none could quote, which ends the attempt.

        The routing event carries their quotes and the choice, or why there is none.
        """
        try:
            decision = await self._router.route(order.token_in, order.token_out, order.amount_in)
        except NoRoute as error:
            failed = RoutingFailed(error=error.message, unavailable=error.details or {})
            order = await self._move(order, OrderStatus.ROUTING, failed)
            self._metrics.attempts.labels(error.code).inc()
            await self._retry_or_fail(order, error.message)
            return None
        order = await self._move(
            order, OrderStatus.ROUTING, decision.details(), dex=decision.best.dex
        )
        self._metrics.routed.labels(decision.best.dex).inc()
        return order, decision

    async def _send(self, order: Order, decision: Decision) -> None:
        """Build the transaction, commit `submitted` with its signature, then send it once.

        A crash after that commit, or an answer that never comes, is resolved by
        reconciliation, never by resending: only a definite rejection lets a new swap go.
        """
        venue = self._venues[decision.best.dex]
        blockhash = await venue.recent_blockhash()
        transaction = build(
            order.order_id,
            order.attempt,
            decision.best,
            order.slippage_bps,
            self._signer,
            blockhash,
        )
        built = BuiltTransaction(
            signature=transaction.signature,
            min_amount_out=transaction.min_amount_out,
            instructions=transaction.instructions,
        )
        order = await self._move(order, OrderStatus.BUILDING, Building(transaction=built))
        if self._closing:
            return
        sent = Submitted(
            tx_hash=transaction.signature, dex=venue.name, expires_at=transaction.expires_at
        )
        order = await self._move(
            order,
            OrderStatus.SUBMITTED,
            sent,
            tx_hash=transaction.signature,
            tx_expires_at=transaction.expires_at,
        )
        try:
            execution = await venue.execute(transaction)
        except SwapRejected as error:
            self._metrics.attempts.labels(error.code).inc()
            await self._retry_or_fail(order, error.message)
            return
        except Exception as error:
            self._metrics.attempts.labels("unknown").inc()
            log.warning("outcome_unknown", tx_hash=transaction.signature, error=repr(error))
            self._enqueue_after(order.order_id, self._retry.backoff_s(1))
            return
        await asyncio.shield(self._confirm(order, execution))

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
        status = await self._venues[order.dex].transaction_status(order.tx_hash, expires_at)
        log.info("reconciled", tx_hash=order.tx_hash, state=str(status.state))
        if status.state is TransactionState.LANDED:
            assert status.execution is not None
            await self._confirm(order, status.execution, reconciled=True)
        elif status.state is TransactionState.PENDING:
            self._enqueue_after(order.order_id, self._retry.backoff_s(1))
        elif status.state is TransactionState.REJECTED:
            reason = status.error or f"transaction {order.tx_hash} was rejected"
            await self._retry_or_fail(order, reason, reconciled=True)
        else:
            reason = f"transaction {order.tx_hash} expired without landing"
            await self._retry_or_fail(order, reason, reconciled=True)

    async def _confirm(
        self, order: Order, execution: Execution, *, reconciled: bool = False
    ) -> None:
        details = Confirmed.of(execution, reconciled=reconciled)
        await self._move(order, OrderStatus.CONFIRMED, details, execution=execution)
        self._metrics.attempts.labels("confirmed").inc()
        log.info(
            "order_confirmed",
            dex=execution.dex,
            tx_hash=execution.tx_hash,
            amount_out=str(execution.amount_out),
        )

    async def _retry_or_fail(self, order: Order, reason: str, *, reconciled: bool = False) -> None:
        """Schedule the next attempt, or fail the order when none is left."""
        flag = reconciled or None
        step = self._retry.after_failure(order.attempt, reason)
        if isinstance(step, GiveUp):
            failed = Failed(error=step.error, reconciled=flag)
            await self._move(order, OrderStatus.FAILED, failed, error=step.error)
            log.warning("order_failed", error=step.error)
            return
        retry = RetryScheduled(error=reason, retry_in_ms=step.retry_in_ms, reconciled=flag)
        await self._move(
            order,
            OrderStatus.PENDING,
            retry,
            attempt=step.attempt,
            error=reason,
            retry_after_s=step.delay_s,
        )
        log.info("order_retry_scheduled", error=reason, retry_in_ms=step.retry_in_ms)
        self._enqueue_after(order.order_id, step.delay_s)

    async def _move(
        self,
        order: Order,
        status: OrderStatus,
        details: EventDetails,
        **fields: Unpack[TransitionFields],
    ) -> Order:
        """Commit a status change from `order`, the worker's view; the order as it now is.

        The event is committed with the change, then handed to the watchers.
        """
        moved, event = await self._repository.transition(order, status, details, **fields)
        self._hub.publish(event)
        if status.terminal:
            self._metrics.finished.labels(str(status)).inc()
            self._metrics.order_seconds.observe((event.at - order.created_at).total_seconds())
        return moved
