"""Kill the engine for real, start it again, and check that nothing was lost or doubled."""

from __future__ import annotations

import signal
from collections import Counter
from uuid import UUID

import aiohttp
import pytest

from orderengine.repository import Repository
from orderengine.venues.chain import Chain
from tests.cluster import assert_each_order_ended_once
from tests.engine_process import StartEngine
from tests.polling import eventually

ORDERS = 50


async def statuses(repository: Repository, ids: list[UUID]) -> Counter[str]:
    return Counter([str((await repository.get_order(order_id)).status) for order_id in ids])


async def wait_until_seen(repository: Repository, ids: list[UUID], wanted: Counter[str]) -> None:
    """Until at least `wanted[status]` orders are seen in each wanted status at once."""

    async def seen() -> bool:
        now = await statuses(repository, ids)
        return all(now[status] >= count for status, count in wanted.items())

    await eventually(seen, interval_s=0.005)


async def wait_all_terminal(repository: Repository) -> None:
    async def done() -> bool:
        return not await repository.unfinished()

    await eventually(done)


KILL_POINTS = {
    "first swaps in flight": Counter({"submitted": 1, "pending": 1}),
    "a third confirmed": Counter({"confirmed": 15, "submitted": 1, "pending": 1}),
    "most confirmed": Counter({"confirmed": 35}),
}


@pytest.mark.parametrize(
    ("seed", "kill_when"), list(enumerate(KILL_POINTS.values(), 1)), ids=list(KILL_POINTS)
)
async def test_sigkill_at_any_point_loses_nothing_and_executes_nothing_twice(
    start_engine: StartEngine,
    repository: Repository,
    chain: Chain,
    seed: int,
    kill_when: Counter[str],
) -> None:
    engine = await start_engine(
        seed=seed,
        latency_scale=0.05,
        failure_rate=0.2,
        retry_base_ms=50,
        retry_cap_ms=200,
        lease_s=2,
    )
    async with aiohttp.ClientSession() as session:
        ids = [UUID(order_id) for order_id in await engine.submit(session, ORDERS)]
    await wait_until_seen(repository, ids, kill_when)

    await engine.kill()
    at_kill = await statuses(repository, ids)
    await engine.start()
    await wait_all_terminal(repository)
    engine.signal(signal.SIGTERM)
    await engine.wait()

    assert at_kill["confirmed"] + at_kill["failed"] < ORDERS, at_kill
    await assert_each_order_ended_once(repository, chain, ids)
