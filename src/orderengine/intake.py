"""Group commit of new orders: one statement and one transaction for many submissions.

The first submission is committed at once, with no added wait. Submissions that arrive while
a commit is in flight queue up and are committed together as soon as it returns, so under
load each commit (and each WAL flush) carries many orders, and alone an order waits for
nobody.

What a submitter is told is always true:

- `201` only after its order's commit, and the engine is told of it (`on_created`) whether or
  not the submitter is still waiting. A batch is one statement, its own transaction. A key
  already used is looked up after it commits, so a `200` or `409` names an order that exists
  (orders are never deleted); a `503` if that look-up cannot reach the store, as the
  submission created nothing.
- `503` only when nothing was created: the store could not be reached before the batch's
  statement was sent, or the batch's outcome was read back and its orders are not there.
- A request that cannot be stored for a reason of its own fails alone. When a batch's
  statement fails for any reason other than the store being out of reach, its orders are
  committed again one by one, so that only the poisoned one fails: `400` when the store
  refused one of its values, else `500`, logged with its cause.

A statement whose answer is lost (the connection dropped, or a timeout, after it was sent)
leaves the batch's outcome unknown. The order ids are chosen here before the statement, so the
outcome is read back by id before anyone is answered; the statement holds a lock until it
commits, which the read-back waits for, so a commit still under way is seen rather than
missed; and the read-back waits first for the server process the statement was sent to to
end, so that one still unread there (a frozen server) cannot begin after it. Orders
found are handed on and answered `201` exactly as after an acknowledged commit; when none is
found, the batch answers `503`.

When the store cannot be reached for that read-back, the read-back is tried again, backing
off up to `SETTLE_RETRY_CAP_S`, for as long as it takes, and those submitters keep waiting.
Each try is bounded by the store's own timeout, but there is no overall limit, on purpose:
until the store answers, no answer would be true. A `503` would invite a retry that
duplicates an order that may exist; a `201` would promise one that may not. The read-back runs
beside the committer, so other submissions are still committed, or refused with a prompt
`503` while the store is away. A submitter's own timeout bounds its wait, which then ends like
any lost response (what Idempotency-Key is for). If the engine stops first, `close()` answers
those still waiting with a `500` naming their order ids (never a `503`), and whichever of
them were committed are claimed like any other unfinished order, by another engine or at
the next start.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import NamedTuple
from uuid import UUID, uuid4

import asyncpg
import structlog

from orderengine.domain import NewOrder, Order
from orderengine.errors import (
    BadRequest,
    DatabaseUnavailable,
    OrderEngineError,
)
from orderengine.limiter import SubmitRate
from orderengine.repository import CommitUnanswered, Outcome, Repository

log = structlog.get_logger(__name__)


class Waiter(NamedTuple):
    """A submission waiting for its batch: its order, its answer, and when it came."""

    new: NewOrder
    answer: asyncio.Future[tuple[Order, bool]]
    since: float
    """The event loop's clock when it was submitted."""


CONNECT_FLOOR_S = 0.05
"""The least time an attempt to open the store's connection is given, however late."""
SETTLE_RETRY_S = 0.05
"""The first wait before reading back again a batch whose outcome is unknown."""
SETTLE_RETRY_CAP_S = 2.0
"""The longest wait between read-backs: each failure doubles the wait, up to this."""

REFUSED_BY_STORE = (
    "this order cannot be stored: the database refused one of its values (in the body or "
    "the Idempotency-Key); nothing was created"
)


class Intake:
    """Commits submitted orders in batches of at most `max_batch`.

    `on_created` is called for each new order right after its commit, whether or not the
    submitter is still waiting, so the engine hears of every accepted order. With a `rate`,
    each owner's submissions are limited to it, in the batch's statement.
    """

    def __init__(
        self,
        repository: Repository,
        on_created: Callable[[Order], None],
        max_batch: int,
        *,
        rate: SubmitRate | None = None,
    ) -> None:
        self._repository = repository
        self._on_created = on_created
        self._max_batch = max_batch
        self._rate = rate
        self._waiting: list[Waiter] = []
        self._committer: asyncio.Task[None] | None = None
        self._settling: dict[asyncio.Task[None], tuple[list[Waiter], list[UUID]]] = {}
        """Batches whose statement went unanswered, being read back: their waiters and ids."""

    async def commit(self, new: NewOrder) -> tuple[Order, bool]:
        """Commit one order with whatever else is waiting; `(order, created)`."""
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[tuple[Order, bool]] = loop.create_future()
        self._waiting.append(Waiter(new, answer, loop.time()))
        if self._committer is None or self._committer.done():
            self._committer = asyncio.create_task(self._commit_waiting())
        return await answer

    async def close(self) -> None:
        """Stop reading back unanswered commits; their submitters learn the outcome is unknown.

        Not a `503`: their orders may exist. Those that do are unfinished orders, claimed like
        any other.
        """
        settling, self._settling = self._settling, {}
        for task in settling:
            task.cancel()
        await asyncio.gather(*settling, return_exceptions=True)
        for batch, ids in settling.values():
            for waiter, order_id in zip(batch, ids, strict=True):
                if not waiter.answer.done():
                    waiter.answer.set_exception(
                        OrderEngineError(
                            "the engine stopped before it learnt whether this order was "
                            "stored; look it up by its id",
                            details={"orderId": str(order_id)},
                        )
                    )

    async def _commit_waiting(self) -> None:
        while self._waiting:
            if not await self._connected():
                continue
            batch = self._waiting[: self._max_batch]
            del self._waiting[: self._max_batch]
            await self._commit_batch(batch)

    async def _connected(self) -> bool:
        """Whether the store's connection is open, else those waiting are refused.

        An attempt to open it gets what is left of the oldest submission's time
        (`Repository.timeout_s` from its submission): behind a batch that the store did not
        answer, a submission would otherwise wait that batch's timeout, then a whole one more
        for a connection to a store that still does not answer. Nothing of theirs was sent,
        so a `503` is true.
        """
        left = (
            self._waiting[0].since + self._repository.timeout_s - asyncio.get_running_loop().time()
        )
        try:
            await self._repository.open_intake(max(left, CONNECT_FLOOR_S))
        except DatabaseUnavailable as error:
            waiting, self._waiting = self._waiting, []
            _fail(waiting, error)
            return False
        return True

    async def _commit_batch(self, batch: list[Waiter]) -> None:
        ids = [uuid4() for _ in batch]
        try:
            outcomes = await self._repository.create_orders(
                [waiter.new for waiter in batch], ids, self._rate
            )
        except CommitUnanswered as error:
            log.warning("intake_commit_unanswered", orders=len(batch), error=repr(error.__cause__))
            self._settle_later(batch, ids, error.server_pid)
        except DatabaseUnavailable as error:
            _fail(batch, error)
        except Exception as error:
            if len(batch) == 1:
                _fail(batch, _refusal(error, ids[0]))
                return
            log.warning("intake_batch_failed", orders=len(batch), error=type(error).__name__)
            for waiter in batch:
                await self._commit_batch([waiter])
        else:
            self._answer(batch, outcomes)

    def _answer(self, batch: Sequence[Waiter], outcomes: Sequence[Outcome]) -> None:
        for waiter, outcome in zip(batch, outcomes, strict=True):
            answer = waiter.answer
            if isinstance(outcome, OrderEngineError):
                if not answer.done():
                    answer.set_exception(outcome)
                continue
            order, created = outcome
            if created:
                self._created(order)
            if not answer.done():
                answer.set_result(outcome)

    def _created(self, order: Order) -> None:
        """Queue a committed order; a failure here must not cost the others their answers."""
        try:
            self._on_created(order)
        except Exception:
            log.exception("created_order_not_queued", order_id=str(order.order_id))

    # ---- a commit whose answer was lost -------------------------------------------------

    def _settle_later(self, batch: list[Waiter], ids: list[UUID], server_pid: int) -> None:
        task = asyncio.create_task(self._settle(batch, ids, server_pid), name="intake-settle")
        self._settling[task] = (batch, ids)
        task.add_done_callback(lambda done: self._settling.pop(done, None))

    async def _settle(self, batch: list[Waiter], ids: list[UUID], server_pid: int) -> None:
        """Answer a batch whose statement went unanswered by what the store holds."""
        found = await self._read_back(ids, server_pid)
        log.info("intake_commit_read_back", orders=len(batch), committed=bool(found))
        if not found:
            _fail(
                batch,
                DatabaseUnavailable(
                    "the database lost the commit of this order; nothing was created",
                    retry_after_s=1,
                ),
            )
            return
        retry: list[Waiter] = []
        for waiter, order_id in zip(batch, ids, strict=True):
            order = found.get(order_id)
            if order is None:
                retry.append(waiter)
            else:
                self._answer([waiter], [(order, True)])
        # The batch committed, so these kept their key's earlier order: their answer comes
        # from looking it up again, as for any later submission of that key.
        for waiter in retry:
            await self._commit_batch([waiter])

    async def _read_back(self, ids: list[UUID], server_pid: int) -> dict[UUID, Order]:
        """The orders of `ids` that exist, asking until the store answers."""
        delay = SETTLE_RETRY_S
        while True:
            try:
                return await self._repository.created_orders(ids, server_pid)
            except DatabaseUnavailable as error:
                log.warning("intake_read_back_failed", error=error.message, retry_in_s=delay)
            except Exception:
                log.exception("intake_read_back_crashed", retry_in_s=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, SETTLE_RETRY_CAP_S)


def _fail(batch: Sequence[Waiter], error: BaseException) -> None:
    for waiter in batch:
        if not waiter.answer.done():
            waiter.answer.set_exception(error)


def _refusal(error: Exception, order_id: UUID) -> Exception:
    """What to answer an order that could not be stored on its own.

    A value the store refuses is the request's fault (400); the value itself is not echoed.
    Anything else is the engine's: the error goes on to be logged and answered 500.
    """
    if isinstance(error, OrderEngineError):
        return error
    if isinstance(error, asyncpg.DataError | asyncpg.CheckViolationError):
        log.warning(
            "order_refused_by_database",
            order_id=str(order_id),
            error=type(error).__name__,
            sqlstate=error.sqlstate,
        )
        return BadRequest(REFUSED_BY_STORE)
    log.error("order_not_stored", order_id=str(order_id), error=type(error).__name__)
    return error
