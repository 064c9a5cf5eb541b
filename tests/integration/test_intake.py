"""Group commit: orders submitted together are committed together, each with its own answer."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from uuid import UUID

from orderengine.domain import NewOrder, Order, OrderRequest
from orderengine.errors import IdempotencyConflict
from orderengine.intake import Intake
from orderengine.limiter import SubmitRate
from orderengine.repository import Outcome, Repository


def new(amount: str = "1", key: str | None = None) -> NewOrder:
    request = OrderRequest(
        type="market", token_in="SOL", token_out="USDC", amount_in=Decimal(amount)
    )
    return NewOrder(request=request, idempotency_key=key, digest=amount if key else None)


class CountingRepository(Repository):
    """The real repository, counting the batches it commits."""

    batches: list[int]

    async def create_orders(
        self,
        batch: Sequence[NewOrder],
        ids: Sequence[UUID] | None = None,
        rate: SubmitRate | None = None,
    ) -> list[Outcome]:
        self.batches.append(len(batch))
        return await super().create_orders(batch, ids, rate)


async def test_concurrent_submissions_share_commits_and_keep_their_own_outcomes(
    database_url: str,
) -> None:
    repository = await CountingRepository.connect(database_url, 4, 5.0)
    repository.batches = []
    created: list[Order] = []
    intake = Intake(repository, created.append, max_batch=20)
    submissions = [new(str(n + 1)) for n in range(50)] + [new("7", "k"), new("8", "k")]

    try:
        outcomes = await asyncio.gather(
            *(intake.commit(submission) for submission in submissions), return_exceptions=True
        )
        unfinished = await repository.unfinished()
    finally:
        await repository.close()

    assert sum(repository.batches) == 52
    assert len(repository.batches) < 52
    assert max(repository.batches) <= 20
    for submission, outcome in zip(submissions[:51], outcomes, strict=False):
        assert isinstance(outcome, tuple)
        order, was_created = outcome
        assert was_created
        assert order.amount_in == submission.request.amount_in
    assert isinstance(outcomes[51], IdempotencyConflict)
    assert len(created) == 51
    assert unfinished == [order.order_id for order in created]


async def test_created_orders_are_the_orders_read_back(repository: Repository) -> None:
    """A created order is made from what was asked, not read back: the two must agree."""
    in_an_hour = datetime.now(timezone(timedelta(hours=2))) + timedelta(hours=1)
    limit = OrderRequest.model_validate(
        {
            "type": "limit",
            "tokenIn": "SOL",
            "tokenOut": "USDC",
            "amountIn": "2.50",
            "limitPrice": "151.5",
            "expiresAt": in_an_hour.isoformat(),
        }
    )
    sniper = OrderRequest.model_validate(
        {"type": "sniper", "tokenIn": "USDC", "tokenOut": "NEWCOIN", "amountIn": "10"}
    )
    await repository.create_orders([NewOrder(request=limit, awaits="price")])
    await repository.watches.watch_pairs(10.0)
    await repository.watches.watch_pairs(10.0)
    await repository.watches.watched_price("SOL", "USDC", Decimal("150.25"), 50)
    batch = [
        NewOrder(request=new("1.50").request, idempotency_key="k-1", digest="d", owner="alice"),
        NewOrder(request=limit, awaits="price", expires_at=limit.expires_at, owner="alice"),
        NewOrder(request=sniper, awaits="listing", expires_at=in_an_hour),
    ]

    outcomes = await repository.create_orders(batch)

    made = [outcome[0] for outcome in outcomes if isinstance(outcome, tuple) and outcome[1]]
    assert len(made) == 3
    assert made[1].best_price == Decimal("150.25")
    for order in made:
        stored = await repository.get_order(order.order_id)
        assert order == stored
        assert order.model_dump_json(by_alias=True) == stored.model_dump_json(by_alias=True)
