"""DELETE /api/orders/{id}: a cancel wins only while nothing was sent, and never half-way.

An order is held at each status by venues that wait on cue: quotes (the order is `pending`
while its worker asks the venues), blockhashes (`routing`: the decision is committed, nothing
built), swaps (`submitted`). A `building` order is held by another engine: a second repository
that claimed it and stopped there, as a worker between its two commits would be.
"""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import aiohttp
import pytest
from solders.keypair import Keypair

from orderengine.domain import CANCELLED_ERROR, NewOrder, OrderRequest, OrderStatus
from orderengine.errors import StaleOrder
from orderengine.repository import Repository
from orderengine.transaction import Transaction
from orderengine.venues.chain import Chain
from orderengine.venues.values import Quote
from orderengine.venues.venue import Venue
from tests.harness import UNKNOWN_ID, Client, StartApp, read_once
from tests.polling import eventually
from tests.streams import read_until_closed, statuses, submit, wait_terminal
from tests.venues import Down, Gate, Rejections, Wrapped, wrapping

S = OrderStatus
HELD = {"quote_timeout_s": 30.0}
"""Settings for venues held on cue: a held quote must not time out meanwhile."""


class Hold:
    """Holds every call it is awaited in until released; tells when the first one waits."""

    def __init__(self) -> None:
        self.waiting = asyncio.Event()
        self.released = asyncio.Event()

    async def __call__(self) -> None:
        self.waiting.set()
        await self.released.wait()


class HeldQuotes(Wrapped):
    """Quotes wait for the hold: the order stays `pending` while its worker routes it."""

    def __init__(self, inner: Venue, hold: Hold) -> None:
        super().__init__(inner)
        self.hold = hold

    async def quote(self, token_in: str, token_out: str, amount_in: Decimal) -> Quote:
        await self.hold()
        return await super().quote(token_in, token_out, amount_in)


class HeldBlockhash(Wrapped):
    """Builds wait for the hold: the order is routed, its transaction unbuilt.

    Its routing is committed with what comes next, so the store still shows it `pending`.
    """

    def __init__(self, inner: Venue, hold: Hold) -> None:
        super().__init__(inner)
        self.hold = hold

    async def build(
        self, order_id: UUID, quote: Quote, min_amount_out: Decimal, signer: Keypair
    ) -> Transaction:
        await self.hold()
        return await super().build(order_id, quote, min_amount_out, signer)


async def cancel(client: Client, order_id: str) -> tuple[int, dict[str, Any]]:
    response = await client.delete(f"/api/orders/{order_id}")
    body: dict[str, Any] = await response.json()
    return response.status, body


async def get(client: Client, order_id: str) -> dict[str, Any]:
    response = await client.get(f"/api/orders/{order_id}")
    assert response.status == 200
    body: dict[str, Any] = await response.json()
    return body


async def workers_idle(client: Client) -> None:
    """Wait until no worker holds an order (a released worker has given its order up)."""

    async def idle() -> bool:
        text = await (await client.get("/metrics")).text()
        return "\norderengine_executing_orders 0.0\n" in text

    await eventually(idle, limit_s=10)


def assert_cancelled(body: dict[str, Any], before: list[str]) -> None:
    """The answer to a cancel that won: failed, saying so, after the statuses `before`."""
    assert body["status"] == "failed"
    assert body["error"] == CANCELLED_ERROR
    assert body["nextAttemptAt"] is None
    assert statuses(body["events"]) == [*before, "failed"]
    assert [event["seq"] for event in body["events"]] == list(range(1, len(before) + 2))
    last = body["events"][-1]
    assert last["cancelled"] is True
    assert last["error"] == CANCELLED_ERROR
    assert last["attempt"] == body["attempt"]


async def test_a_pending_order_is_cancelled_and_its_socket_closes_after_the_failed_event(
    start_app: StartApp, chain: Chain
) -> None:
    hold = Hold()
    client = await start_app(
        venues=wrapping(lambda venue: HeldQuotes(venue, hold)), ws_idle_check_s=60, **HELD
    )
    order_id = await submit(client)
    await hold.waiting.wait()

    async with client.ws_connect(f"/api/orders/execute?orderId={order_id}") as ws:
        first = await ws.receive_json(timeout=10)
        assert (first["seq"], first["status"]) == (1, "pending")
        reading = asyncio.create_task(read_until_closed(ws, limit_s=10))
        status, body = await cancel(client, order_id)
        rest = await reading
    assert ws.close_code == aiohttp.WSCloseCode.OK

    assert status == 200
    assert_cancelled(body, ["pending"])
    assert body == await get(client, order_id)
    assert [first, *rest] == body["events"]
    metrics = await (await client.get("/metrics")).text()
    assert 'orderengine_orders_finished_total{status="failed"} 1.0' in metrics

    hold.released.set()
    await workers_idle(client)
    assert await get(client, order_id) == body
    assert await chain.landed_signatures([UUID(order_id)]) == {UUID(order_id): []}


async def test_an_order_waiting_for_its_retry_is_cancelled(
    start_app: StartApp, chain: Chain
) -> None:
    client = await start_app(venues=Rejections(1).venues, retry_base_ms=60_000, retry_cap_ms=60_000)
    order_id = await submit(client)

    async def waiting_for_retry() -> bool:
        order = await get(client, order_id)
        return (order["status"], order["attempt"]) == ("pending", 2)

    await eventually(waiting_for_retry, limit_s=10)
    assert (await get(client, order_id))["nextAttemptAt"] is not None

    status, body = await cancel(client, order_id)

    assert status == 200
    assert_cancelled(body, ["pending", "routing", "building", "submitted", "pending"])
    assert body["attempt"] == 2
    assert await chain.landed_signatures([UUID(order_id)]) == {UUID(order_id): []}


async def test_a_cancel_while_the_swap_is_built_leaves_the_worker_nothing_to_send(
    start_app: StartApp, chain: Chain
) -> None:
    hold = Hold()
    client = await start_app(venues=wrapping(lambda venue: HeldBlockhash(venue, hold)))
    order_id = await submit(client)
    await hold.waiting.wait()
    assert (await get(client, order_id))["status"] == "pending"

    status, body = await cancel(client, order_id)
    hold.released.set()
    await workers_idle(client)

    assert status == 200
    assert_cancelled(body, ["pending"])
    assert await get(client, order_id) == body
    assert await chain.landed_signatures([UUID(order_id)]) == {UUID(order_id): []}


async def test_a_cancel_wins_over_a_worker_of_another_engine_between_building_and_submitted(
    repository: Repository, start_app: StartApp, database_url: str
) -> None:
    request = OrderRequest(type="market", token_in="SOL", token_out="USDC", amount_in=Decimal(1))
    [outcome] = await repository.create_orders([NewOrder(request=request)])
    assert not isinstance(outcome, Exception)
    [claimed] = await repository.claim(1, lease_s=60)
    routed, _ = await repository.transition(claimed, S.ROUTING, dex="raydium")
    built, _ = await repository.transition(routed, S.BUILDING)
    client = await start_app()
    order_id = str(built.order_id)

    status, body = await cancel(client, order_id)

    assert status == 200
    assert_cancelled(body, ["pending", "routing", "building"])
    with pytest.raises(StaleOrder):
        await repository.transition(
            built,
            S.SUBMITTED,
            tx_hash="never-sent",
            tx_expires_at=datetime.now(UTC) + timedelta(minutes=1),
        )
    assert await get(client, order_id) == body
    lease = await read_once(
        database_url,
        "SELECT lease_owner, lease_expires_at FROM orders WHERE id = $1",
        built.order_id,
    )
    assert dict(lease) == {"lease_owner": None, "lease_expires_at": None}


async def test_a_submitted_order_is_not_cancelled_and_its_swap_lands(
    start_app: StartApp, chain: Chain
) -> None:
    gate = Gate()
    client = await start_app(venues=gate.venues)
    order_id = await submit(client)
    await gate.waiting.wait()

    status, body = await cancel(client, order_id)

    assert status == 409
    assert body["error"]["code"] == "order_not_cancellable"
    assert body["error"]["details"] == {"orderId": order_id, "status": "submitted"}
    assert "submitted" in body["error"]["message"]
    gate.opened.set()
    confirmed = await wait_terminal(client, order_id)
    assert confirmed["status"] == "confirmed"
    assert "failed" not in statuses(confirmed["events"])
    landed = await chain.landed_signatures([UUID(order_id)])
    assert landed == {UUID(order_id): [confirmed["txHash"]]}

    status, body = await cancel(client, order_id)
    assert status == 409
    assert body["error"]["details"] == {"orderId": order_id, "status": "confirmed"}


async def test_a_second_cancel_is_too_late(start_app: StartApp) -> None:
    hold = Hold()
    client = await start_app(venues=wrapping(lambda venue: HeldQuotes(venue, hold)), **HELD)
    order_id = await submit(client)
    await hold.waiting.wait()

    first, cancelled = await cancel(client, order_id)
    second, body = await cancel(client, order_id)
    hold.released.set()

    assert (first, second) == (200, 409)
    assert body["error"]["code"] == "order_not_cancellable"
    assert body["error"]["details"] == {"orderId": order_id, "status": "failed"}
    assert await get(client, order_id) == cancelled


async def test_an_order_that_failed_on_its_own_is_not_cancelled(start_app: StartApp) -> None:
    client = await start_app(venues=wrapping(Down), max_attempts=1)
    order_id = await submit(client)
    failed = await wait_terminal(client, order_id)
    assert failed["status"] == "failed"

    status, body = await cancel(client, order_id)

    assert status == 409
    assert body["error"]["details"] == {"orderId": order_id, "status": "failed"}
    assert await get(client, order_id) == failed


@pytest.mark.parametrize(
    "wanted",
    [
        UNKNOWN_ID,
        "not-an-order-id",
        f"urn:uuid:{UNKNOWN_ID}",
        UNKNOWN_ID.replace("-", ""),
    ],
)
async def test_an_unknown_or_malformed_id_is_404(client: Client, wanted: str) -> None:
    status, body = await cancel(client, wanted)

    assert status == 404
    assert body["error"]["code"] == "order_not_found"


async def test_cancels_racing_workers_never_leave_a_swap_sent_for_a_cancelled_order(
    start_app: StartApp, chain: Chain
) -> None:
    """Many orders, each cancelled at a random moment: every outcome is one or the other.

    A cancel that won left an order with no `submitted` event and nothing on the chain; one
    that lost found the order submitted or ended, and its swap landed once.
    """
    client = await start_app(concurrency=4, latency_scale=0.02)
    delays = random.Random(11)
    order_ids = await asyncio.gather(*(submit(client) for _ in range(30)))

    async def cancel_later(order_id: str, delay_s: float) -> tuple[int, dict[str, Any]]:
        await asyncio.sleep(delay_s)
        return await cancel(client, order_id)

    answers = await asyncio.gather(
        *(cancel_later(order_id, delays.uniform(0, 0.4)) for order_id in order_ids)
    )
    finals = [await wait_terminal(client, order_id) for order_id in order_ids]
    await workers_idle(client)
    landed = await chain.landed_signatures([UUID(order_id) for order_id in order_ids])

    for order_id, (status, body), final in zip(order_ids, answers, finals, strict=True):
        events = final["events"]
        assert [event["seq"] for event in events] == list(range(1, len(events) + 1))
        assert [event["status"] in ("confirmed", "failed") for event in events].count(True) == 1
        if status == 200:
            assert final == body
            assert final["error"] == CANCELLED_ERROR
            assert "submitted" not in statuses(events)
            assert landed[UUID(order_id)] == []
        else:
            assert status == 409
            assert body["error"]["details"]["status"] in ("submitted", "confirmed", "failed")
            assert final["status"] == "confirmed"
            assert landed[UUID(order_id)] == [final["txHash"]]
