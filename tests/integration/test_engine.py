"""The engine under load and under failure: concurrency cap, retries, terminal failure."""

from __future__ import annotations

import asyncio

from structlog.contextvars import merge_contextvars
from structlog.testing import capture_logs

from orderengine.domain import NewOrder, OrderRequest
from orderengine.repository import Repository
from tests.harness import StartApp
from tests.streams import MARKET, statuses, stream, submit, wait_terminal
from tests.venues import ConcurrencyProbe, Nonsense, Rejections, wrapping

REQUEST = OrderRequest.model_validate(MARKET)


async def test_concurrency_cap_holds_with_30_queued_orders(start_app: StartApp) -> None:
    probe = ConcurrencyProbe(expected=3)
    client = await start_app(venues=probe.venues, concurrency=3)

    ids = await asyncio.gather(*(submit(client) for _ in range(30)))
    orders = await asyncio.gather(*(wait_terminal(client, order_id) for order_id in ids))

    assert [order["status"] for order in orders] == ["confirmed"] * 30
    assert probe.executed == 30
    assert probe.peak == 3


async def test_two_failed_attempts_then_success_show_both_retries_with_growing_delays(
    start_app: StartApp,
) -> None:
    client = await start_app(venues=Rejections(2).venues, max_attempts=3)

    events = await stream(client, await submit(client))

    assert statuses(events) == [
        "pending",
        *("routing", "building", "submitted", "pending"),
        *("routing", "building", "submitted", "pending"),
        *("routing", "building", "submitted", "confirmed"),
    ]
    retries = [event for event in events[1:] if event["status"] == "pending"]
    assert [retry["attempt"] for retry in retries] == [2, 3]
    assert all(retry["error"] == "blockhash not found" for retry in retries)
    assert 0 < retries[0]["retryInMs"] < retries[1]["retryInMs"]
    assert events[-1]["attempt"] == 3
    signatures = {event["txHash"] for event in events if event["status"] == "submitted"}
    assert len(signatures) == 3


async def test_three_failures_end_failed_with_the_reason_stored(start_app: StartApp) -> None:
    client = await start_app(venues=Rejections(3).venues, max_attempts=3)

    order_id = await submit(client)
    events = await stream(client, order_id)
    order = await (await client.get(f"/api/orders/{order_id}")).json()

    assert statuses(events).count("failed") == 1
    assert events[-1]["status"] == "failed"
    assert events[-1]["attempt"] == 3
    assert "blockhash not found" in events[-1]["error"]
    assert order["status"] == "failed"
    assert order["error"] == events[-1]["error"]


async def test_five_orders_at_once_run_concurrently_and_log_every_quote_and_decision(
    start_app: StartApp,
) -> None:
    probe = ConcurrencyProbe(expected=5)
    client = await start_app(venues=probe.venues)

    with capture_logs(processors=[merge_contextvars]) as logs:
        ids = await asyncio.gather(*(submit(client, MARKET) for _ in range(5)))
        await asyncio.gather(*(wait_terminal(client, order_id) for order_id in ids))

    assert probe.peak == 5
    for order_id in ids:
        lines = [line for line in logs if line.get("order_id") == order_id]
        quotes = [line for line in lines if line["event"] == "quote"]
        decisions = [line for line in lines if line["event"] == "route_decided"]
        assert {line["dex"] for line in quotes} == {"raydium", "meteora"}
        assert {line["log_level"] for line in quotes} == {"debug"}, "the routing event keeps them"
        assert len(decisions) == 1
        assert decisions[0]["log_level"] == "info"
        assert "better than" in decisions[0]["reason"]


async def test_an_order_that_keeps_crashing_before_it_is_sent_ends_failed(
    start_app: StartApp,
) -> None:
    client = await start_app(venues=wrapping(Nonsense), max_attempts=2)

    with capture_logs() as logs:
        order_id = await submit(client)
        events = await stream(client, order_id)

    # A crash leaves nothing of its attempt: the routing is committed with what comes next.
    assert statuses(events) == ["pending", "failed"]
    assert "internal error" in events[-1]["error"]
    assert [line["event"] for line in logs].count("order_processing_crashed") == 2
    assert "???" not in events[-1]["error"]


async def test_an_order_that_crashed_before_this_start_goes_on_from_its_count(
    start_app: StartApp, repository: Repository
) -> None:
    [outcome] = await repository.create_orders([NewOrder(request=REQUEST)])
    assert isinstance(outcome, tuple)
    order, _ = outcome
    await repository.count_crash(order.order_id)
    await repository.count_crash(order.order_id)

    with capture_logs() as logs:
        client = await start_app(venues=wrapping(Nonsense), max_attempts=3)
        events = await stream(client, str(order.order_id))

    # Two crashes (on another engine, or before a restart) and one here: three in all.
    assert statuses(events) == ["pending", "failed"]
    assert "after 3 tries" in events[-1]["error"]
    assert [line["event"] for line in logs].count("order_processing_crashed") == 1
