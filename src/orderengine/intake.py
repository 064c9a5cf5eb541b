"""Group commit of new orders: one statement and one transaction for many submissions.

The first submission is committed at once, with no added wait. Submissions that arrive while
a commit is in flight queue up and are committed together as soon as it returns, so under
load each commit (and each WAL flush) carries many orders, and alone an order waits for
nobody. A `201` is still only answered after its order's commit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from orderengine.domain import NewOrder, Order
from orderengine.errors import IdempotencyConflict
from orderengine.repository import Repository

Waiter = tuple[NewOrder, "asyncio.Future[tuple[Order, bool]]"]


class Intake:
    """Commits submitted orders in batches of at most `max_batch`.

    `on_created` is called for each new order right after its commit, whether or not the
    submitter is still waiting, so an accepted order is always queued.
    """

    def __init__(
        self, repository: Repository, on_created: Callable[[Order], None], max_batch: int
    ) -> None:
        self._repository = repository
        self._on_created = on_created
        self._max_batch = max_batch
        self._waiting: list[Waiter] = []
        self._committer: asyncio.Task[None] | None = None

    async def commit(self, new: NewOrder) -> tuple[Order, bool]:
        """Commit one order with whatever else is waiting; `(order, created)`."""
        answer: asyncio.Future[tuple[Order, bool]] = asyncio.get_running_loop().create_future()
        self._waiting.append((new, answer))
        if self._committer is None or self._committer.done():
            self._committer = asyncio.create_task(self._commit_waiting())
        return await answer

    async def _commit_waiting(self) -> None:
        while self._waiting:
            batch = self._waiting[: self._max_batch]
            del self._waiting[: self._max_batch]
            await self._commit_batch(batch)

    async def _commit_batch(self, batch: list[Waiter]) -> None:
        try:
            outcomes = await self._repository.create_orders([new for new, _ in batch])
        except Exception as error:
            for _, answer in batch:
                if not answer.done():
                    answer.set_exception(error)
            return
        for (_, answer), outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, IdempotencyConflict):
                if not answer.done():
                    answer.set_exception(outcome)
                continue
            order, created = outcome
            if created:
                self._on_created(order)
            if not answer.done():
                answer.set_result(outcome)
