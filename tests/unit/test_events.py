"""The event hub: every watcher gets every event; a slow one falls behind alone."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from orderengine.domain import OrderEvent, OrderStatus
from orderengine.events import EventHub, FellBehind


def event(order_id: uuid.UUID, seq: int) -> OrderEvent:
    return OrderEvent(
        order_id=order_id, seq=seq, status=OrderStatus.PENDING, attempt=1, at=datetime.now(UTC)
    )


async def test_a_subscriber_that_falls_behind_is_told_and_publishing_never_blocks() -> None:
    hub = EventHub(buffer=3)
    order_id = uuid.uuid4()
    with hub.subscribe(order_id) as slow, hub.subscribe(order_id) as fast:
        received = []
        for seq in range(1, 10):
            hub.publish(event(order_id, seq))
            received.append((await fast.next()).seq)

        assert received == list(range(1, 10))
        assert [(await slow.next()).seq for _ in range(3)] == [1, 2, 3]
        with pytest.raises(FellBehind):
            await slow.next()
