"""Status changes asked for together are committed together, each with its own outcome."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from decimal import Decimal

import asyncpg

from orderengine.domain import (
    NewOrder,
    Order,
    OrderRequest,
    OrderStatus,
    RoutingFailed,
)
from orderengine.errors import StaleOrder
from orderengine.repository import Change, Repository

S = OrderStatus
REQUEST = OrderRequest(type="market", token_in="SOL", token_out="USDC", amount_in=Decimal(1))
DETAILS = RoutingFailed(error="no venue", unavailable={})


class Counting(Repository):
    """The real repository, counting the statements that commit status changes."""

    statements: list[int]

    async def _changed_rows(self, changes: Sequence[Change]) -> list[asyncpg.Record]:
        self.statements.append(len(changes))
        return await super()._changed_rows(changes)


async def counting(database_url: str) -> Counting:
    repository = await Counting.connect(database_url, 4, 5.0)
    repository.statements = []
    return repository


async def accepted(repository: Repository, count: int) -> list[Order]:
    outcomes = await repository.create_orders([NewOrder(request=REQUEST) for _ in range(count)])
    orders = []
    for outcome in outcomes:
        assert not isinstance(outcome, Exception)
        orders.append(outcome[0])
    return orders


async def test_changes_asked_for_together_share_statements_and_each_gets_its_order(
    database_url: str,
) -> None:
    repository = await counting(database_url)
    try:
        orders = await accepted(repository, 20)

        moved = await asyncio.gather(
            *(repository.transition(order, S.ROUTING, DETAILS, dex="raydium") for order in orders)
        )
        stored = [await repository.get_order(order.order_id) for order in orders]
        events = [await repository.events(order.order_id) for order in orders]
    finally:
        await repository.close()

    assert sum(repository.statements) == 20
    assert len(repository.statements) < 20, "changes asked for meanwhile go together"
    for order, (changed, event), row, history in zip(orders, moved, stored, events, strict=True):
        assert changed.order_id == order.order_id
        assert (changed.status, changed.last_seq, changed.dex) == (S.ROUTING, 2, "raydium")
        assert row == changed
        assert (event.order_id, event.seq, event.status) == (order.order_id, 2, S.ROUTING)
        assert event.details == DETAILS.stored()
        assert [e.seq for e in history] == [1, 2]


async def test_a_stale_change_fails_alone_and_the_others_in_its_statement_commit(
    database_url: str,
) -> None:
    repository = await counting(database_url)
    try:
        fresh, stale = await accepted(repository, 2)
        await repository.transition(stale, S.ROUTING, DETAILS)
        repository.statements.clear()

        outcomes = await asyncio.gather(
            repository.transition(fresh, S.ROUTING, DETAILS),
            repository.transition(stale, S.ROUTING, DETAILS),
            return_exceptions=True,
        )
        stale_now = await repository.get_order(stale.order_id)
    finally:
        await repository.close()

    assert repository.statements == [2]
    changed, refused = outcomes
    assert not isinstance(changed, BaseException)
    assert changed[0].status is S.ROUTING
    assert isinstance(refused, StaleOrder)
    assert stale_now.last_seq == 2, "the stale view changed nothing"


async def test_a_change_the_store_refuses_fails_alone_and_the_others_commit_again_alone(
    database_url: str,
) -> None:
    repository = await counting(database_url)
    try:
        orders = await accepted(repository, 3)
        repository.statements.clear()

        outcomes = await asyncio.gather(
            repository.transition(orders[0], S.ROUTING, DETAILS),
            repository.transition(orders[1], S.PENDING, DETAILS, attempt=2**31),
            repository.transition(orders[2], S.ROUTING, DETAILS),
            return_exceptions=True,
        )
        stored = [await repository.get_order(order.order_id) for order in orders]
    finally:
        await repository.close()

    assert repository.statements == [3, 1, 1, 1], "refused together, then each alone"
    first, poisoned, last = outcomes
    assert isinstance(poisoned, asyncpg.exceptions.DataError)
    assert not isinstance(first, BaseException)
    assert not isinstance(last, BaseException)
    assert [order.status for order in stored] == [S.ROUTING, S.PENDING, S.ROUTING]
    assert stored[1].last_seq == 1, "the refused change wrote nothing"


async def test_a_change_through_a_status_gives_its_event_the_attempt_it_was_in(
    database_url: str,
) -> None:
    repository = await counting(database_url)
    try:
        [order] = await accepted(repository, 1)

        moved, events = await repository.transition_through(
            order, [(S.ROUTING, DETAILS)], S.PENDING, DETAILS, attempt=2, retry_after_s=1.0
        )
        stored = await repository.events(order.order_id)

        assert moved.attempt == 2
        assert [(e.seq, e.status, e.attempt) for e in events] == [
            (2, S.ROUTING, 1),
            (3, S.PENDING, 2),
        ]
        assert stored[1:] == events
        assert repository.statements == [1]
    finally:
        await repository.close()


async def test_committed_events_are_told_before_the_callers_resume(
    repository: Repository,
) -> None:
    """Each event once, as its statement returns: a turn sooner than the caller could tell."""
    orders = await accepted(repository, 3)
    resumed: list[bool] = []
    told: list[tuple[int, bool]] = []
    repository.on_committed(
        lambda events: told.extend((event.seq, bool(resumed)) for event in events)
    )

    async def move(order: Order) -> None:
        await repository.transition(order, S.ROUTING, DETAILS, dex="raydium")
        resumed.append(True)

    await asyncio.gather(*(move(order) for order in orders))

    assert told == [(2, False)] * 3


async def test_a_change_counts_as_committed_when_telling_its_events_fails(
    repository: Repository,
) -> None:
    (order,) = await accepted(repository, 1)

    def broken(events: object) -> None:
        raise RuntimeError("a watcher's bug")

    repository.on_committed(broken)
    moved, event = await repository.transition(order, S.ROUTING, DETAILS, dex="raydium")

    assert (moved.status, event.seq) == (S.ROUTING, 2)
    assert (await repository.get_order(order.order_id)).status is S.ROUTING
