"""The database going away under load: 503s rather than hangs, and nothing lost."""

from __future__ import annotations

import asyncio
from pathlib import Path
from uuid import UUID

import pytest

from orderengine.repository import Repository
from orderengine.venues.chain import Chain
from tests import database_server
from tests.harness import StartApp
from tests.polling import eventually
from tests.streams import MARKET, submit


async def test_a_database_restart_under_load_loses_no_order(
    start_app: StartApp,
    repository: Repository,
    chain: Chain,
    embedded_data_dir: Path | None,
) -> None:
    if embedded_data_dir is None:
        pytest.skip("restarts only the embedded server, not one of TEST_DATABASE_URL")
    client = await start_app(latency_scale=0.05, concurrency=4, db_timeout_s=0.5)
    ids = [UUID(await submit(client)) for _ in range(12)]
    unfinished_at_outage = await repository.unfinished()

    await asyncio.to_thread(database_server.stop, embedded_data_dir)
    try:
        refused = await client.post("/api/orders/execute", json=MARKET)
        health = await client.get("/health")
        refused_body = await refused.json()
    finally:
        await asyncio.to_thread(database_server.start, embedded_data_dir)

    assert unfinished_at_outage
    assert refused.status == 503
    assert refused.headers["Retry-After"].isdigit()
    assert refused_body["error"]["code"] == "database_unavailable"
    assert health.status == 503

    async def all_terminal() -> bool:
        orders = [await (await client.get(f"/api/orders/{i}")).json() for i in ids]
        return all(order.get("status") in ("confirmed", "failed") for order in orders)

    await eventually(all_terminal, limit_s=30, interval_s=0.1)
    landed = await chain.landed_signatures(ids)
    for order_id in ids:
        order = await repository.get_order(order_id)
        assert order.status.value == "confirmed"
        assert landed[order_id] == [order.tx_hash]
    assert (await client.post("/api/orders/execute", json=MARKET)).status == 201
