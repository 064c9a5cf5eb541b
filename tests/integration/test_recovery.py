"""Start-up recovery from each state a crash can leave an order in, set up precisely."""

from __future__ import annotations

from decimal import Decimal
from uuid import UUID

from solders.keypair import Keypair

from orderengine.domain import NewOrder, Order, OrderRequest, OrderStatus
from orderengine.repository import Repository
from orderengine.transaction import build, min_amount_out
from orderengine.venues.chain import Chain
from orderengine.venues.raydium import Raydium
from tests.harness import StartApp, read_once
from tests.polling import eventually
from tests.streams import statuses, stream

S = OrderStatus
SIGNER = Keypair()
REQUEST = OrderRequest(type="market", token_in="SOL", token_out="USDC", amount_in=Decimal(1))


async def accepted(repository: Repository) -> UUID:
    [outcome] = await repository.create_orders([NewOrder(request=REQUEST)])
    assert not isinstance(outcome, Exception)
    return outcome[0].order_id


async def crashed_in(repository: Repository, *path: OrderStatus) -> Order:
    order = await repository.get_order(await accepted(repository))
    for status in path:
        order, _ = await repository.transition(order, status, dex="raydium")
    return order


async def sent(repository: Repository, chain: Chain, *, landed: bool) -> tuple[UUID, str]:
    """An order left in `submitted`; its swap landed on the venue's chain, or was never sent.

    The engine learns that one never sent did not land once its blockhash has expired, which
    at a latency scale of 0 is `MIN_BLOCKHASH_TTL_S` after it was issued.
    """
    order = await crashed_in(repository, S.ROUTING, S.BUILDING)
    venue = Raydium(chain, latency_scale=0, failure_rate=0, volatility_bps=0, seed=1)
    quote = await venue.quote("SOL", "USDC", Decimal(1))
    minimum = min_amount_out(quote, 100)
    transaction = build(order.order_id, quote, minimum, SIGNER, await venue.recent_blockhash())
    if landed:
        await venue.execute(transaction)
    await repository.transition(
        order,
        S.SUBMITTED,
        tx_hash=transaction.signature,
        tx_expires_at=transaction.expires_at,
    )
    return order.order_id, transaction.signature


async def test_orders_interrupted_before_sending_run_again_showing_the_recovery(
    start_app: StartApp, repository: Repository
) -> None:
    in_routing = (await crashed_in(repository, S.ROUTING)).order_id
    in_building = (await crashed_in(repository, S.ROUTING, S.BUILDING)).order_id

    client = await start_app()

    for order_id in (in_routing, in_building):
        events = await stream(client, str(order_id))
        resumed = events[-5]
        assert statuses(events)[-5:] == ["pending", "routing", "building", "submitted", "confirmed"]
        assert resumed["status"] == "pending"
        assert "interrupted while" in resumed["recovered"]
        assert [event["seq"] for event in events] == list(range(1, len(events) + 1))
        assert {event["attempt"] for event in events} == {1}


async def test_a_sent_swap_that_landed_is_confirmed_without_sending_again(
    start_app: StartApp, repository: Repository, chain: Chain
) -> None:
    order_id, signature = await sent(repository, chain, landed=True)

    client = await start_app()
    events = await stream(client, str(order_id))

    assert statuses(events) == ["pending", "routing", "building", "submitted", "confirmed"]
    assert events[-1]["reconciled"] is True
    assert events[-1]["txHash"] == signature
    assert (await chain.landed_signatures([order_id]))[order_id] == [signature]


async def test_a_sent_swap_that_never_landed_is_retried_with_a_new_signature(
    start_app: StartApp, repository: Repository, chain: Chain
) -> None:
    order_id, dropped = await sent(repository, chain, landed=False)

    client = await start_app()
    events = await stream(client, str(order_id))

    retry = events[4]
    assert retry["status"] == "pending"
    assert retry["attempt"] == 2
    assert retry["reconciled"] is True
    assert dropped in retry["error"]
    assert statuses(events)[-1] == "confirmed"
    landed = (await chain.landed_signatures([order_id]))[order_id]
    assert len(landed) == 1
    assert landed != [dropped]
    assert landed == [events[-1]["txHash"]]


async def test_a_sent_swap_long_unlanded_is_asked_after_less_often(
    start_app: StartApp, repository: Repository, chain: Chain, database_url: str
) -> None:
    """Sent 40 s ago, still able to land: asked after in about 10 s, not in 20 ms."""
    order_id, _ = await sent(repository, chain, landed=False)
    await read_once(
        database_url,
        """
        UPDATE orders SET updated_at = clock_timestamp() - interval '40 seconds',
                          tx_expires_at = clock_timestamp() + interval '1 hour'
        WHERE id = $1 RETURNING id
        """,
        order_id,
    )

    await start_app(retry_base_ms=20, retry_cap_ms=60_000)

    async def asked_again_in_s() -> float | None:
        row = await read_once(
            database_url,
            """
            SELECT EXTRACT(EPOCH FROM next_attempt_at - clock_timestamp()) AS wait_s, lease_owner
            FROM orders WHERE id = $1
            """,
            order_id,
        )
        set_aside = row["lease_owner"] is None and row["wait_s"] is not None
        return float(row["wait_s"]) if set_aside else None

    async def set_aside() -> bool:
        return await asked_again_in_s() is not None

    await eventually(set_aside, limit_s=10)
    wait_s = await asked_again_in_s()

    assert wait_s is not None
    assert 9 < wait_s < 15
    assert (await repository.get_order(order_id)).status is S.SUBMITTED


async def test_unfinished_orders_are_taken_up_in_the_order_they_were_accepted(
    start_app: StartApp, repository: Repository
) -> None:
    ids = [await accepted(repository) for _ in range(6)]

    client = await start_app(concurrency=1)
    for order_id in ids:
        await stream(client, str(order_id))

    started = [(await repository.events(order_id))[1].at for order_id in ids]
    assert started == sorted(started)
