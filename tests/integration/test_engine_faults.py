"""The engine under faults.

Stale views, unknown outcomes, database errors, lost wake-ups, stored retry times, and a
stop while an attempt waits for a rate token.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Unpack
from uuid import UUID

import asyncpg
import pytest
from solders.keypair import Keypair
from structlog.testing import capture_logs

from orderengine.domain import (
    EventDetails,
    NewOrder,
    Order,
    OrderEvent,
    OrderRequest,
    OrderStatus,
    TransitionFields,
)
from orderengine.engine import Engine
from orderengine.errors import (
    DatabaseUnavailable,
    InvalidTransition,
    StaleOrder,
    SwapRejected,
    VenueError,
)
from orderengine.events import EventHub
from orderengine.keys import ENGINE, REPOSITORY
from orderengine.limiter import TokenBucket
from orderengine.metrics import Metrics
from orderengine.repository import Change, Changed, Repository
from orderengine.transaction import Transaction
from orderengine.venues.chain import Chain
from orderengine.venues.endpoint import EndpointError
from orderengine.venues.factory import simulated_venues
from orderengine.venues.values import Execution, Quote
from orderengine.venues.venue import VenueFactory
from tests.harness import StartApp, fast_settings, read_once
from tests.polling import eventually
from tests.streams import MARKET, stream, submit, wait_terminal
from tests.venues import Gate, Wrapped, wrapping

S = OrderStatus
REQUEST = OrderRequest(type="market", token_in="SOL", token_out="USDC", amount_in=Decimal(1))


async def accepted(repository: Repository) -> Order:
    [outcome] = await repository.create_orders([NewOrder(request=REQUEST)])
    assert not isinstance(outcome, Exception)
    return outcome[0]


async def test_a_stale_view_is_refused_and_writes_nothing(repository: Repository) -> None:
    view = await accepted(repository)
    current, _ = await repository.transition(view, S.ROUTING, dex="raydium")

    with pytest.raises(StaleOrder):
        await repository.transition(view, S.ROUTING, dex="meteora")
    with pytest.raises(StaleOrder):
        await repository.transition(view, S.FAILED, error="from an outdated read")

    stored = await repository.get_order(view.order_id)
    assert stored.status is S.ROUTING
    assert stored.dex == "raydium"
    assert stored.error is None
    assert [event.seq for event in await repository.events(view.order_id)] == [1, 2]
    assert current.last_seq == 2


async def test_a_forbidden_transition_is_refused_before_any_write(repository: Repository) -> None:
    order = await accepted(repository)

    with pytest.raises(InvalidTransition):
        await repository.transition(order, S.CONFIRMED)

    assert len(await repository.events(order.order_id)) == 1


class LostAnswer(Wrapped):
    """Sends the swap (or not), then loses the answer: the outcome is unknown to the engine."""

    sent = True

    async def execute(self, transaction: Transaction) -> Execution:
        if self.sent:
            await self.inner.execute(transaction)
        raise ConnectionResetError("connection reset by peer")


class NeverSent(LostAnswer):
    sent = False


@pytest.mark.parametrize("kind", [LostAnswer, NeverSent])
async def test_an_unknown_outcome_is_reconciled_never_resent_blindly(
    start_app: StartApp, chain: Chain, kind: type[LostAnswer]
) -> None:
    client = await start_app(venues=wrapping(kind))

    events = await stream(client, await submit(client))

    submitted = [event["txHash"] for event in events if event["status"] == "submitted"]
    confirmed = events[-1]
    landed = await chain.landed_signatures([UUID(confirmed["orderId"])])
    if kind is NeverSent:
        assert confirmed["status"] == "failed"
        assert "expired without landing" in confirmed["error"]
        assert all(
            event["reconciled"]
            for event in events
            if event["status"] == "pending" and event["seq"] > 1
        )
        assert landed[UUID(confirmed["orderId"])] == []
    else:
        assert confirmed["status"] == "confirmed"
        assert confirmed["reconciled"] is True
        assert submitted == [confirmed["txHash"]]
        assert landed[UUID(confirmed["orderId"])] == submitted


class Unbuildable(Wrapped):
    """A venue that refuses to build the swap: its quote is gone."""

    error: type[VenueError] = SwapRejected

    async def build(
        self, order_id: UUID, quote: Quote, min_amount_out: Decimal, signer: Keypair
    ) -> Transaction:
        raise self.error(f"{self.name} cannot build this swap now")


class Unreachable(Unbuildable):
    """A venue whose builder cannot be reached: Jupiter's swap endpoint down."""

    error = EndpointError


@pytest.mark.parametrize("kind", [Unbuildable, Unreachable])
async def test_a_swap_the_venue_cannot_build_is_a_failed_attempt_never_sent(
    start_app: StartApp, chain: Chain, kind: type[Unbuildable]
) -> None:
    client = await start_app(venues=wrapping(kind), max_attempts=2)

    events = await stream(client, await submit(client))

    statuses = [event["status"] for event in events]
    assert statuses == ["pending", "routing", "pending", "routing", "failed"]
    assert "cannot build this swap now" in events[-1]["error"]
    assert events[2]["error"] == f"{events[1]['dex']} cannot build this swap now"
    assert [event["attempt"] for event in events] == [1, 1, 2, 2, 2]
    landed = await chain.landed_signatures([UUID(events[0]["orderId"])])
    assert landed[UUID(events[0]["orderId"])] == []


class FailingChanges(Repository):
    """The real repository, whose first `failures_left` status changes fail (`failure`)."""

    failures_left = 0

    def failure(self) -> Exception:
        return DatabaseUnavailable("database unavailable")

    async def changing(self, order: Order, status: OrderStatus) -> None:
        """Before each status change that does not fail, what a test would see then."""

    async def transition_through(
        self,
        order: Order,
        passed: Sequence[tuple[OrderStatus, EventDetails]],
        status: OrderStatus,
        details: EventDetails,
        **fields: Unpack[TransitionFields],
    ) -> tuple[Order, list[OrderEvent]]:
        if self.failures_left > 0:
            self.failures_left -= 1
            raise self.failure()
        await self.changing(order, status)
        return await super().transition_through(order, passed, status, details, **fields)


class FlakyRepository(FailingChanges):
    """The real repository, whose first few status changes fail with a data error."""

    failures_left = 2

    def failure(self) -> Exception:
        return asyncpg.DataError("value out of range for type numeric")


@asynccontextmanager
async def engine_on(
    repository: Repository,
    database_url: str,
    limiter: TokenBucket | None = None,
    venues_of: VenueFactory = simulated_venues,
    **overrides: Any,
) -> AsyncIterator[Engine]:
    settings = fast_settings(database_url, **overrides)
    async with venues_of(settings) as venues:
        engine = Engine(
            settings, repository, venues, EventHub(64), Metrics(), Keypair(), limiter=limiter
        )
        await engine.start()
        try:
            yield engine
        finally:
            await engine.stop()


async def finished(repository: Repository, order_id: UUID) -> Order:
    async def terminal() -> bool:
        return (await repository.get_order(order_id)).status.terminal

    await eventually(terminal, limit_s=20)
    return await repository.get_order(order_id)


async def test_a_worker_survives_a_database_error_that_is_not_a_lost_connection(
    database_url: str,
) -> None:
    repository = await FlakyRepository.connect(database_url, 4, 5.0)
    try:
        async with engine_on(repository, database_url, concurrency=1) as engine:
            first, _ = await engine.submit(REQUEST)
            second, _ = await engine.submit(REQUEST)

            done = [await finished(repository, order.order_id) for order in (first, second)]

            assert [order.status for order in done] == [S.CONFIRMED, S.CONFIRMED]
            assert engine.workers_alive == 1
            assert repository.failures_left == 0
    finally:
        await repository.close()


class ReleasesLost(FailingChanges):
    """The real repository, whose first status change and first two releases meet an outage."""

    failures_left = 1
    releases_lost = 2

    async def release(self, order_ids: Sequence[UUID], retry_after_s: float | None = None) -> None:
        if self.releases_lost > 0:
            self.releases_lost -= 1
            raise DatabaseUnavailable("database unavailable")
        await super().release(order_ids, retry_after_s)


async def test_a_lease_given_up_in_an_outage_is_given_back_when_the_database_answers(
    database_url: str,
) -> None:
    """The order is taken up again then, not when its lease (a minute here) runs out.

    The release is tried again before each claim, and while it fails the dispatcher sleeps
    no longer than the database timeout, not a whole sweep (half a minute here).
    """
    repository = await ReleasesLost.connect(database_url, 4, 5.0)
    try:
        with capture_logs() as logs:
            async with engine_on(
                repository, database_url, concurrency=1, lease_s=60, sweep_s=30, db_timeout_s=1.0
            ) as engine:
                order, _ = await engine.submit(REQUEST)
                done = await finished(repository, order.order_id)
    finally:
        await repository.close()

    assert done.status is S.CONFIRMED
    assert repository.releases_lost == 0
    lost = [line["event"] for line in logs if line["event"].endswith("not_released")]
    assert lost == ["lease_not_released", "leases_not_released"]


class AnswerLostAfterTheReclaim(FailingChanges):
    """The real repository, whose release after an outage commits but is answered too late.

    The first status change meets an outage; the release that sets the order aside commits,
    and its answer, lost, comes only once the order was claimed again.
    """

    failures_left = 1
    answer_lost = True
    claimed = 0
    released_since = 0
    wake: Callable[[], None] = staticmethod(lambda: None)
    owners_at_submit: list[UUID | None]

    async def claim(self, limit: int, lease_s: float) -> list[Order]:
        orders = await super().claim(limit, lease_s)
        self.claimed += len(orders)
        return orders

    async def changing(self, order: Order, status: OrderStatus) -> None:
        if status is OrderStatus.SUBMITTED:
            # Time for a release sent after the lost answer, if any, to land first.
            for _ in range(25):
                if self.released_since:
                    break
                await asyncio.sleep(0.02)
            async with self._connection() as connection:
                owner = await connection.fetchval(
                    "SELECT lease_owner FROM orders WHERE id = $1", order.order_id
                )
            self.owners_at_submit.append(owner)

    async def release(self, order_ids: Sequence[UUID], retry_after_s: float | None = None) -> None:
        await super().release(order_ids, retry_after_s)
        if not self.answer_lost:
            self.released_since += 1
            return
        self.answer_lost = False
        while self.claimed < 2:
            self.wake()
            await asyncio.sleep(0.02)
        raise DatabaseUnavailable("database unavailable")


async def test_a_release_whose_answer_comes_after_the_order_was_claimed_again_ends_nothing(
    database_url: str,
) -> None:
    """The newer lease stays the engine's: in the database when its swap is submitted."""
    repository = await AnswerLostAfterTheReclaim.connect(database_url, 4, 5.0)
    repository.owners_at_submit = []
    try:
        async with engine_on(
            repository, database_url, concurrency=2, lease_s=60, db_timeout_s=1.0
        ) as engine:
            repository.wake = engine.wake
            order, _ = await engine.submit(REQUEST)
            done = await finished(repository, order.order_id)
    finally:
        await repository.close()

    assert done.status is S.CONFIRMED
    assert repository.owners_at_submit == [repository.owner]


class HeldClaims(Repository):
    """The real repository, whose claims commit, then keep their answer until it is let go.

    As an answer on its way while the engine begins to stop: the leases are taken already.
    """

    claimed: asyncio.Event
    answer: asyncio.Event

    async def claim(self, limit: int, lease_s: float) -> list[Order]:
        orders = await super().claim(limit, lease_s)
        if orders:
            self.claimed.set()
            await self.answer.wait()
        return orders


async def test_a_stop_while_a_claim_is_answered_gives_its_leases_back(
    database_url: str, repository: Repository
) -> None:
    held = await HeldClaims.connect(database_url, 4, 5.0)
    held.claimed, held.answer = asyncio.Event(), asyncio.Event()
    try:
        async with engine_on(held, database_url, concurrency=1) as engine:
            order = await accepted(repository)
            engine.wake()
            await asyncio.wait_for(held.claimed.wait(), 10)

            stopping = asyncio.create_task(engine.stop())
            await asyncio.sleep(0)  # the stop has begun: the dispatcher is cancelled
            held.answer.set()
            await asyncio.wait_for(stopping, 30)
    finally:
        await held.close()

    left = await repository.get_order(order.order_id)
    assert left.status is S.PENDING
    lease = await read_once(
        database_url, "SELECT lease_owner FROM orders WHERE id = $1", order.order_id
    )
    assert lease["lease_owner"] is None, "the claim's lease was given back, not left to run out"


class WatchedBucket(TokenBucket):
    """A token bucket that says when a caller starts waiting, and when a wait is given up."""

    def __init__(self) -> None:
        super().__init__(rate_per_minute=1, burst=1)
        self.waiting = asyncio.Event()
        self.given_up = asyncio.Event()

    async def acquire(self) -> float:
        if self._tokens < 1:
            self.waiting.set()
        try:
            return await super().acquire()
        except asyncio.CancelledError:
            self.given_up.set()
            raise


async def waiting_for_a_token(
    engine: Engine, repository: Repository, bucket: WatchedBucket
) -> Order:
    """An order whose worker waits a minute for a rate token: the first took the only one."""
    first, _ = await engine.submit(REQUEST)
    await finished(repository, first.order_id)
    second, _ = await engine.submit(REQUEST)
    await asyncio.wait_for(bucket.waiting.wait(), 10)
    return second


async def test_a_stop_leaves_an_attempt_waiting_for_a_rate_token_untouched(
    repository: Repository, database_url: str
) -> None:
    bucket = WatchedBucket()
    async with engine_on(
        repository, database_url, limiter=bucket, concurrency=2, shutdown_grace_s=600
    ) as engine:
        second = await waiting_for_a_token(engine, repository, bucket)

        async with asyncio.timeout(30):
            await engine.stop()

    order = await repository.get_order(second.order_id)
    assert order.status is S.PENDING
    assert [event.seq for event in await repository.events(second.order_id)] == [1]


async def test_a_cancel_ends_the_wait_for_a_rate_token_of_its_order(
    repository: Repository, database_url: str
) -> None:
    """The rate would keep the worker waiting a minute for an order that will not be sent."""
    bucket = WatchedBucket()
    async with engine_on(repository, database_url, limiter=bucket, concurrency=2) as engine:
        second = await waiting_for_a_token(engine, repository, bucket)

        with capture_logs() as logs:
            await engine.cancel(second.order_id)
            await asyncio.wait_for(bucket.given_up.wait(), 5)

    dropped = [log for log in logs if log["event"] == "attempt_dropped"]
    assert [log["reason"] for log in dropped] == ["cancelled"]
    assert [event.status for event in await repository.events(second.order_id)] == [
        S.PENDING,
        S.FAILED,
    ]


async def test_a_lease_lost_ends_the_wait_for_a_rate_token_of_its_order(
    repository: Repository, database_url: str
) -> None:
    """Another engine holds the order now: it is not this one's to route."""
    bucket = WatchedBucket()
    async with engine_on(
        repository, database_url, limiter=bucket, concurrency=2, lease_s=0.6
    ) as engine:
        second = await waiting_for_a_token(engine, repository, bucket)

        await read_once(
            database_url,
            "UPDATE orders SET lease_owner = gen_random_uuid() WHERE id = $1 RETURNING id",
            second.order_id,
        )
        await asyncio.wait_for(bucket.given_up.wait(), 5)

    assert [event.status for event in await repository.events(second.order_id)] == [S.PENDING]


class HeldBucket(TokenBucket):
    """A token bucket that gives its first token only once told to."""

    def __init__(self) -> None:
        super().__init__(rate_per_minute=60_000, burst=100)
        self.waiting = asyncio.Event()
        self.given = asyncio.Event()

    async def acquire(self) -> float:
        self.waiting.set()
        await self.given.wait()
        return await super().acquire()


def met_limit_until(expires_at: datetime) -> OrderRequest:
    """A limit order whose price is met at once, that expires at `expires_at`."""
    return OrderRequest.model_validate(
        {
            "type": "limit",
            "tokenIn": "SOL",
            "tokenOut": "USDC",
            "amountIn": "1",
            "limitPrice": "0.0001",
            "expiresAt": expires_at.isoformat(),
        }
    )


async def test_an_order_whose_expiry_comes_while_its_attempt_waits_is_never_sent(
    repository: Repository, database_url: str
) -> None:
    bucket = HeldBucket()
    expires_at = datetime.now(UTC) + timedelta(seconds=1)
    request = met_limit_until(expires_at)
    async with engine_on(repository, database_url, limiter=bucket, concurrency=1) as engine:
        order, _ = await engine.submit(request)
        await asyncio.wait_for(bucket.waiting.wait(), 10)
        await asyncio.sleep((expires_at - datetime.now(UTC)).total_seconds() + 0.05)
        bucket.given.set()
        ended = await finished(repository, order.order_id)

    assert ended.status is S.FAILED
    assert ended.tx_hash is None
    events = await repository.events(order.order_id)
    assert S.SUBMITTED not in [event.status for event in events]
    assert events[-1].details.get("expired") is True


class SlowToSubmit(Repository):
    """A store whose commit of `submitted` answers only once `until` has passed."""

    until = datetime.max.replace(tzinfo=UTC)

    async def _commit_changes(self, changes: Sequence[Change]) -> list[Changed | Exception]:
        outcomes = await super()._commit_changes(changes)
        if any(change.steps[-1] is S.SUBMITTED for change in changes):
            await asyncio.sleep(max(0.0, (self.until - datetime.now(UTC)).total_seconds()))
        return outcomes


async def test_an_order_whose_expiry_comes_while_submitted_is_committed_is_never_sent(
    database_url: str,
) -> None:
    repository = await SlowToSubmit.connect(database_url, 4, 5.0)
    expires_at = datetime.now(UTC) + timedelta(seconds=2)  # time enough to route, under load
    repository.until = expires_at + timedelta(seconds=0.05)
    request = met_limit_until(expires_at)
    try:
        async with engine_on(repository, database_url, concurrency=1) as engine:
            order, _ = await engine.submit(request)
            ended = await finished(repository, order.order_id)
        statuses = [event.status for event in await repository.events(order.order_id)]
        sent = (
            await read_once(
                database_url,
                "SELECT count(*) FROM chain.transactions WHERE signature = $1",
                ended.tx_hash,
            )
        )[0]
    finally:
        await repository.close()

    assert ended.status is S.FAILED
    assert ended.error is not None
    assert "expired" in ended.error
    assert statuses[-2:] == [S.SUBMITTED, S.FAILED]
    assert sent == 0


async def test_a_restart_honours_the_retry_time_stored_with_the_order(
    start_app: StartApp, repository: Repository
) -> None:
    waiting = await accepted(repository)
    waiting, _ = await repository.transition(waiting, S.ROUTING, dex="raydium")
    await repository.transition(
        waiting, S.PENDING, attempt=2, error="blockhash not found", retry_after_s=3600
    )
    due = (await accepted(repository)).order_id

    client = await start_app()
    await wait_terminal(client, str(due))
    health = await (await client.get("/health")).json()

    order = await repository.get_order(waiting.order_id)
    assert order.status is S.PENDING
    assert order.next_attempt_at is not None
    assert len(await repository.events(waiting.order_id)) == 3
    assert health["backlog"] == 1
    backlog = await repository.waiting()
    assert backlog.due == 1
    assert backlog.next_due_s is not None
    assert backlog.next_due_s > 3500


async def test_the_sweep_takes_up_an_order_nothing_woke(
    start_app: StartApp, repository: Repository
) -> None:
    client = await start_app(sweep_s=0.05)
    repository.owner = client.app[REPOSITORY].owner
    order = await accepted(repository)

    final = await wait_terminal(client, str(order.order_id))

    assert final["status"] == "confirmed"


async def test_health_reports_workers_and_the_oldest_unfinished_order(
    start_app: StartApp, repository: Repository
) -> None:
    client = await start_app(concurrency=3, sweep_s=3600)
    await accepted(repository)

    health = await (await client.get("/health")).json()

    assert health["workers"] == {"alive": 3, "configured": 3}
    assert health["oldestUnfinishedAgeS"] >= 0


async def test_health_says_stopping_while_a_stopping_engine_finishes_its_swaps(
    start_app: StartApp,
) -> None:
    gate = Gate()
    client = await start_app(concurrency=1, venues=gate.venues, shutdown_grace_s=600)
    await submit(client)
    await asyncio.wait_for(gate.waiting.wait(), 10)
    assert (await client.get("/health")).status == 200

    stopping = asyncio.create_task(client.app[ENGINE].stop())
    try:
        reply = await client.get("/health")
        health = await reply.json()
        refused = await client.post("/api/orders/execute", json=MARKET)
    finally:
        gate.opened.set()
        await asyncio.wait_for(stopping, 30)

    assert reply.status == 503
    assert health["status"] == "stopping"
    assert health["workers"] == {"alive": 1, "configured": 1}, "its swap in flight goes on"
    assert refused.status == 503


class Unrenewable(Repository):
    """The real repository, whose lease renewals never reach the database."""

    async def renew(self, order_ids: Sequence[UUID], lease_s: float) -> set[UUID]:
        raise DatabaseUnavailable("database unavailable")


async def test_no_swap_is_sent_on_a_lease_that_ran_out_unrenewed(database_url: str) -> None:
    proceed = asyncio.Event()
    held: list[bool] = []

    class FirstBlockhashWaits(Wrapped):
        async def build(
            self, order_id: UUID, quote: Quote, min_amount_out: Decimal, signer: Keypair
        ) -> Transaction:
            if not held:
                held.append(True)
                await proceed.wait()
            return await self.inner.build(order_id, quote, min_amount_out, signer)

    repository = await Unrenewable.connect(database_url, 4, 5.0)
    try:
        with capture_logs() as logs:

            async def lease_forgotten() -> bool:
                return any(line["event"] == "lease_expired_unrenewed" for line in logs)

            async with engine_on(
                repository,
                database_url,
                venues_of=wrapping(FirstBlockhashWaits),
                lease_s=0.3,
                concurrency=1,
            ) as engine:
                order, _ = await engine.submit(REQUEST)
                await eventually(lease_forgotten, limit_s=10)
                proceed.set()
                done = await finished(repository, order.order_id)
        events = await repository.events(order.order_id)
    finally:
        await repository.close()

    # The first attempt's transaction was built on a lease that had run out: it was neither
    # committed nor sent, and the attempt went back to pending unspent.
    assert done.status is S.CONFIRMED
    assert [event.status for event in events] == [
        *(S.PENDING, S.ROUTING, S.PENDING),
        *(S.ROUTING, S.BUILDING, S.SUBMITTED, S.CONFIRMED),
    ]
    assert "its lease was lost while routing" in events[2].details["recovered"]
    assert events[2].attempt == events[3].attempt == 1
    assert events[5].details["txHash"] == events[4].details["transaction"]["signature"]
