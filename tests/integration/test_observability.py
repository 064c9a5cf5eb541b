"""What an operator watches: liveness with database state, and Prometheus metrics."""

from __future__ import annotations

from tests.harness import Client
from tests.streams import stream, submit


async def test_health_reports_the_database(client: Client) -> None:
    response = await client.get("/health")

    assert response.status == 200
    assert await response.json() == {
        "status": "ok",
        "database": "ok",
        "workers": {"alive": 10, "configured": 10},
        "backlog": 0,
        "oldestUnfinishedAgeS": None,
    }


async def test_metrics_count_orders_and_routing_decisions(client: Client) -> None:
    events = await stream(client, await submit(client))

    text = await (await client.get("/metrics")).text()

    assert "orderengine_orders_accepted_total 1.0" in text
    assert 'orderengine_orders_finished_total{status="confirmed"} 1.0' in text
    assert f'orderengine_routed_total{{dex="{events[-1]["dex"]}"}} 1.0' in text
