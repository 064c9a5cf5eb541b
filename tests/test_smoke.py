from __future__ import annotations

from tests.conftest import Client


async def test_health(client: Client) -> None:
    response = await client.get("/health")
    assert response.status == 200
    assert (await response.json())["database"] == "ok"
