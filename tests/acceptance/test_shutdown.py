"""SIGTERM: stop intake, finish what is in flight, close sockets with 1001, exit 0."""

from __future__ import annotations

import signal
from uuid import UUID

import aiohttp

from orderengine.domain import OrderStatus
from orderengine.repository import Repository
from tests.engine_process import StartEngine
from tests.polling import eventually
from tests.streams import MARKET


async def test_sigterm_drains_in_flight_swaps_and_leaves_the_rest_pending(
    start_engine: StartEngine, repository: Repository
) -> None:
    engine = await start_engine(latency_scale=0.3, failure_rate=0, concurrency=2, seed=5)
    async with aiohttp.ClientSession() as session:
        ids = [UUID(order_id) for _ in range(8) for order_id in await engine.submit(session, 1)]

        async def some_submitted() -> bool:
            orders = [await repository.get_order(order_id) for order_id in ids]
            return any(order.status is OrderStatus.SUBMITTED for order in orders)

        await eventually(some_submitted)
        watcher = await session.ws_connect(
            engine.url.replace("http", "ws") + f"/api/orders/execute?orderId={ids[-1]}"
        )
        engine.signal(signal.SIGTERM)
        # Swaps in flight: sent, or about to be. An order seen in `routing` or `building` now
        # may stand down (back to `pending`, nothing sent) or may have committed `submitted`
        # before the engine saw the signal; either is right, so only these must end.
        in_flight_at_stop = [
            order_id
            for order_id in ids
            if (await repository.get_order(order_id)).status is OrderStatus.SUBMITTED
        ]

        refused: list[aiohttp.ClientResponse] = []

        async def intake_closed() -> bool:
            async with session.post(f"{engine.url}/api/orders/execute", json=MARKET) as answer:
                if answer.status == 503:
                    refused.append(answer)
                    return True
                return False

        await eventually(intake_closed, limit_s=5)
        async for _ in watcher:
            pass
        exit_code = await engine.wait()

    assert exit_code == 0
    assert refused[0].headers["Retry-After"].isdigit()
    assert watcher.close_code == 1001
    after = {order_id: (await repository.get_order(order_id)).status for order_id in ids}
    assert in_flight_at_stop
    assert all(after[order_id].terminal for order_id in in_flight_at_stop)
    assert set(after.values()) <= {OrderStatus.PENDING, OrderStatus.CONFIRMED}
    assert after[ids[-1]] is OrderStatus.PENDING

    await engine.start()

    async def all_done() -> bool:
        return not await repository.unfinished()

    await eventually(all_done)
    engine.signal(signal.SIGTERM)
    assert await engine.wait() == 0
