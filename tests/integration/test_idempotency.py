"""Idempotency-Key: a client may resend a POST safely, at once or after a restart."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone

import pytest

from tests.harness import Client, StartApp
from tests.streams import MARKET, submit
from tests.venues import Gate


async def test_same_key_sent_ten_times_at_once_makes_one_order(start_app: StartApp) -> None:
    client = await start_app()
    headers = {"Idempotency-Key": "order-42"}

    answers = await asyncio.gather(
        *(client.post("/api/orders/execute", json=MARKET, headers=headers) for _ in range(10))
    )
    bodies = [await answer.json() for answer in answers]

    assert sorted(answer.status for answer in answers) == [200] * 9 + [201]
    assert len({body["orderId"] for body in bodies}) == 1
    assert all(body == bodies[0] for body in bodies)
    listing = await (await client.get("/api/orders")).json()
    assert len(listing["orders"]) == 1


async def test_same_key_with_another_body_is_409(start_app: StartApp) -> None:
    client = await start_app()
    headers = {"Idempotency-Key": "order-43"}
    first = await client.post("/api/orders/execute", json=MARKET, headers=headers)

    other = await client.post(
        "/api/orders/execute", json={**MARKET, "amountIn": "2"}, headers=headers
    )

    assert first.status == 201
    assert other.status == 409
    error = (await other.json())["error"]
    assert error["code"] == "idempotency_conflict"
    assert error["details"]["orderId"] == (await first.json())["orderId"]


async def test_an_amount_written_another_way_is_the_same_body(start_app: StartApp) -> None:
    client = await start_app()
    headers = {"Idempotency-Key": "order-44"}
    first = await client.post(
        "/api/orders/execute", json={**MARKET, "amountIn": "1.5"}, headers=headers
    )

    again = [
        await client.post(
            "/api/orders/execute", json={**MARKET, "amountIn": amount}, headers=headers
        )
        for amount in ("1.50", "1.500000", "15e-1", 1.5)
    ]

    assert first.status == 201
    assert [answer.status for answer in again] == [200] * 4
    order_id = (await first.json())["orderId"]
    assert [(await answer.json())["orderId"] for answer in again] == [order_id] * 4


async def test_an_expiry_written_in_another_offset_is_the_same_body(
    start_app: StartApp,
) -> None:
    client = await start_app()
    headers = {"Idempotency-Key": "order-46"}
    expiry = (datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=0)
    body = {**MARKET, "type": "limit", "limitPrice": "1000000"}
    first = await client.post(
        "/api/orders/execute", json={**body, "expiresAt": expiry.isoformat()}, headers=headers
    )

    elsewhere = expiry.astimezone(timezone(timedelta(hours=2))).isoformat()
    again = await client.post(
        "/api/orders/execute", json={**body, "expiresAt": elsewhere}, headers=headers
    )

    assert first.status == 201
    assert again.status == 200
    assert (await again.json())["orderId"] == (await first.json())["orderId"]


async def test_keys_outlive_a_restart(start_app: StartApp) -> None:
    headers = {"Idempotency-Key": "order-44"}
    before = await (await start_app()).post("/api/orders/execute", json=MARKET, headers=headers)

    again = await (await start_app()).post("/api/orders/execute", json=MARKET, headers=headers)

    assert again.status == 200
    assert (await again.json()) == (await before.json())


async def test_without_a_key_every_post_is_a_new_order(start_app: StartApp) -> None:
    client = await start_app()

    answers = [await client.post("/api/orders/execute", json=MARKET) for _ in range(2)]

    assert [answer.status for answer in answers] == [201, 201]
    assert len({(await answer.json())["orderId"] for answer in answers}) == 2


@pytest.mark.parametrize("key", ["clé-45", "", "k" * 256])
async def test_a_key_that_is_not_1_to_255_printable_ascii_characters_is_400(
    client: Client, key: str
) -> None:
    refused = await client.post(
        "/api/orders/execute", json=MARKET, headers={"Idempotency-Key": key}
    )

    error = (await refused.json())["error"]
    assert refused.status == 400
    assert error["message"] == "Idempotency-Key must be 1 to 255 printable ASCII characters"
    listing = await (await client.get("/api/orders")).json()
    assert listing["orders"] == []


async def test_a_resend_over_its_key_s_rate_is_answered_with_its_order(
    start_app: StartApp,
) -> None:
    """A client that lost the first answer learns its order's id, whatever the rate says."""
    key = "alice-key-0123456789"
    client = await start_app(api_keys={"alice": key}, key_submit_per_minute=6)
    headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": "lost-answer"}
    first = await client.post("/api/orders/execute", json=MARKET, headers=headers)
    new = await client.post(
        "/api/orders/execute", json=MARKET, headers={**headers, "Idempotency-Key": "new"}
    )

    resent = await client.post("/api/orders/execute", json=MARKET, headers=headers)

    assert (first.status, new.status, resent.status) == (201, 429, 200)
    assert (await resent.json())["orderId"] == (await first.json())["orderId"]


async def test_a_resend_does_not_spend_its_key_s_rate(start_app: StartApp) -> None:
    """Three submissions at once, then one every two seconds: the resends take none."""
    key = "alice-key-0123456789"
    client = await start_app(api_keys={"alice": key}, key_submit_per_minute=30)
    auth = {"Authorization": f"Bearer {key}"}
    resend = {**auth, "Idempotency-Key": "lost-answer"}
    first = await client.post("/api/orders/execute", json=MARKET, headers=resend)
    resent = [
        await client.post("/api/orders/execute", json=MARKET, headers=resend) for _ in range(2)
    ]

    new = [await client.post("/api/orders/execute", json=MARKET, headers=auth) for _ in range(2)]

    assert first.status == 201
    assert [answer.status for answer in resent] == [200, 200]
    assert [answer.status for answer in new] == [201, 201]


async def test_a_resend_to_a_full_queue_is_answered_with_its_order(start_app: StartApp) -> None:
    gate = Gate()
    client = await start_app(venues=gate.venues, concurrency=1, queue_limit=2)
    await submit(client)
    await gate.waiting.wait()
    headers = {"Idempotency-Key": "queued"}
    first = await client.post("/api/orders/execute", json=MARKET, headers=headers)
    for _ in range(3):  # the backlog errs towards refusing early: the queue may fill sooner
        full = await client.post("/api/orders/execute", json=MARKET)
        if full.status == 503:
            break

    resent = await client.post("/api/orders/execute", json=MARKET, headers=headers)
    other = await client.post(
        "/api/orders/execute", json={**MARKET, "amountIn": "2"}, headers=headers
    )

    assert (first.status, full.status, resent.status, other.status) == (201, 503, 200, 409)
    assert (await resent.json())["orderId"] == (await first.json())["orderId"]
    gate.opened.set()
