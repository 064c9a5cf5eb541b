"""A kill while swaps are on their way to the chain.

The chain lands them anyway, and the restarted engine confirms each with the signature it
first sent, sending nothing again. An order killed after committing its signature but
before the chain saw it waits for that signature's expiry, then lands once with a new one.
"""

from __future__ import annotations

from uuid import UUID

import aiohttp

from orderengine.domain import Order, OrderStatus
from orderengine.repository import Repository
from orderengine.venues.chain import Chain
from orderengine.venues.values import TransactionState
from tests.engine_process import StartEngine
from tests.polling import eventually


async def test_swaps_in_flight_at_a_kill_are_confirmed_with_their_first_signature(
    start_engine: StartEngine, repository: Repository, chain: Chain
) -> None:
    engine = await start_engine(
        latency_scale=0.5, failure_rate=0, concurrency=4, seed=3, blockhash_ttl_s=2, lease_s=2
    )
    async with aiohttp.ClientSession() as session:
        ids = [UUID(order_id) for order_id in await engine.submit(session, 8)]

    async def several_sent() -> bool:
        """Two orders submitted, one of whose swaps the chain has taken and not landed yet.

        Waiting for the chain too keeps a busy machine from killing the engine in the moment
        between committing the signatures and sending them, when no swap is in flight yet;
        a swap not landed yet has a good part of its latency left before it is confirmed.
        """
        orders = [await repository.get_order(order_id) for order_id in ids]
        submitted = [order for order in orders if order.status is OrderStatus.SUBMITTED]
        return len(submitted) >= 2 and any([await _in_flight(chain, o) for o in submitted])

    await eventually(several_sent, interval_s=0.005)
    await engine.kill()
    submitted = [
        order
        for order in [await repository.get_order(order_id) for order_id in ids]
        if order.status is OrderStatus.SUBMITTED and order.tx_hash is not None
    ]
    sent = {
        order.order_id: order.tx_hash
        for order in submitted
        if order.tx_hash is not None and await chain.find(order.tx_hash) is not None
    }
    await engine.start()

    async def all_finished() -> bool:
        return not await repository.unfinished()

    await eventually(all_finished)
    landed = await chain.landed_signatures(ids)
    assert sent
    for order_id, signature in sent.items():
        order = await repository.get_order(order_id)
        events = await repository.events(order_id)
        assert order.status is OrderStatus.CONFIRMED, order
        assert order.tx_hash == signature
        assert landed[order_id] == [signature]
        assert [e.status for e in events].count(OrderStatus.SUBMITTED) == 1
    for order_id in ids:
        assert len(landed[order_id]) == 1, "an order that never reached the chain lands once"


async def _in_flight(chain: Chain, order: Order) -> bool:
    """Whether the chain took the order's swap and has not landed it yet."""
    if order.tx_hash is None:
        return False
    found = await chain.find(order.tx_hash)
    return found is not None and found.state is TransactionState.PENDING
