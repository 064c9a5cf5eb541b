"""`python -m orderengine demo` against a live engine: every order shown until it ends."""

from __future__ import annotations

import io
import json

import pytest
from rich.console import Console

from orderengine import demo
from tests.engine_process import free_port
from tests.harness import TEST_KEYPAIR, Client, StartApp


def console() -> tuple[Console, io.StringIO]:
    shown = io.StringIO()
    return Console(file=shown, width=220, force_terminal=False), shown


def url(client: Client) -> str:
    return f"http://{client.host}:{client.port}"


@pytest.mark.parametrize(("kind", "count"), [("market", 5), ("sniper", 3), ("limit", 1)])
async def test_the_demo_shows_its_orders_until_they_end(
    client: Client, kind: demo.Kind, count: int
) -> None:
    screen, shown = console()

    status = await demo.run(url(client), None, kind, count, screen)

    assert status == 0
    final = shown.getvalue()
    assert final.count("confirmed") >= count
    listed = await (await client.get("/api/orders")).json()
    assert len(listed["orders"]) == count
    assert {order["type"] for order in listed["orders"]} == {kind}


async def test_the_demo_starts_an_engine_when_none_answers(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in {
        "ORDERENGINE_DATABASE_URL": database_url,
        "ORDERENGINE_LATENCY_SCALE": "0",
        "ORDERENGINE_FAILURE_RATE": "0",
        "ORDERENGINE_KEYPAIR": str(TEST_KEYPAIR),
    }.items():
        monkeypatch.setenv(name, value)
    screen, shown = console()

    status = await demo.run(f"http://127.0.0.1:{free_port()}", None, "market", 2, screen)

    assert status == 0
    assert "starting one" in shown.getvalue()
    assert shown.getvalue().count("confirmed") >= 2


async def test_the_demo_sends_its_key(start_app: StartApp) -> None:
    key = "demo-admin-key-0123456789"
    client = await start_app(api_keys={"demo": key}, admin_keys=("demo",))
    screen, shown = console()

    status = await demo.run(url(client), key, "sniper", 2, screen)

    assert status == 0
    assert shown.getvalue().count("confirmed") >= 2
    mine = await client.get("/api/orders", headers={"Authorization": f"Bearer {key}"})
    assert len((await mine.json())["orders"]) == 2


async def test_a_demo_whose_listing_is_refused_cancels_its_snipers(
    start_app: StartApp, capsys: pytest.CaptureFixture[str]
) -> None:
    """Their token would never be listed: left alone, they would wait until they expire."""
    key = "demo-trader-key-0123456789"
    client = await start_app(api_keys={"trader": key, "ops": "demo-admin-key-0123456789"})
    screen, shown = console()

    status = await demo.run(url(client), key, "sniper", 2, screen)

    assert status == 1
    assert "refused the demo" in shown.getvalue()
    assert json.loads(capsys.readouterr().err)["error"]["code"] == "forbidden"
    mine = await client.get("/api/orders", headers={"Authorization": f"Bearer {key}"})
    orders = (await mine.json())["orders"]
    assert [order["status"] for order in orders] == ["failed", "failed"]


async def test_a_limit_demo_without_a_key_says_why_it_cannot_quote(
    start_app: StartApp, capsys: pytest.CaptureFixture[str]
) -> None:
    client = await start_app(api_keys={"trader": "demo-trader-key-0123456789"})
    screen, shown = console()

    status = await demo.run(url(client), None, "limit", 2, screen)

    assert status == 1
    assert "refused the demo" in shown.getvalue()
    assert json.loads(capsys.readouterr().err)["error"]["code"] == "unauthorized"
