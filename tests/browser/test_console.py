"""The console in a real browser, as a user drives it.

Orders of every type placed through the page, other clients' orders appearing, timelines, a
cancel, a listing firing a sniper, and keys. Each test fails on any SEVERE entry in the
browser's log: a script error, a refused request, a Content-Security-Policy violation.
"""

from __future__ import annotations

from uuid import uuid4

import pytest
from selenium.webdriver.common.keys import Keys

from orderengine.wire import EXECUTE
from tests.browser.page import ConsolePage
from tests.harness import StartApp
from tests.streams import MARKET, submit

pytestmark = pytest.mark.xdist_group("browser")
"""One worker runs them all, on one browser."""

KEY = "alice-key-0123456789"
WRONG = "mallory-key-0123456789"


async def place(console: ConsolePage, kind: str, **fields: str) -> str:
    """Place an order of `kind` through the form, with `fields` typed in; its id."""
    known = await console.rows()
    await console.order_type(kind)
    for field, value in fields.items():
        await console.type(f"#order-form [name={field}]", value)
    await console.click("#submit-order")
    return await console.new_row(known)


async def test_orders_of_each_type_are_placed_followed_and_cancelled(
    start_app: StartApp, console: ConsolePage
) -> None:
    client = await start_app()
    await console.open(client)

    await console.find("#preview .quote.chosen")
    assert len(await console.script("return document.querySelectorAll('#preview .quote')")) == 2
    market = await place(console, "market", amountIn="1.5")
    await console.row_status(market, "confirmed")
    filled = await place(console, "limit", amountIn="1", limitPrice="1")
    await console.row_status(filled, "confirmed")
    waiting = await place(console, "limit", amountIn="1", limitPrice="1000000")
    await console.row_status(waiting, "pending")
    other = await submit(client, MARKET)
    await console.row_status(other, "confirmed")

    await console.shows(f'#orders tr[data-order-id="{waiting}"]', "pending · price")
    await console.find('#chart[data-limits="1"]')
    await console.until(
        lambda d: int(d.find_element("id", "chart").get_attribute("data-executions") or 0) >= 3
    )

    await console.click(f'#orders tr[data-order-id="{waiting}"] button.cancel')
    await console.row_status(waiting, "failed")
    await console.click(f'#orders tr[data-order-id="{waiting}"]')
    await console.find("#timeline-body .detail.failed.cancelled")
    await console.click("#timeline-close")

    await console.click(f'#orders tr[data-order-id="{market}"]')
    await console.find('#timeline-body li.event[data-status="confirmed"]')
    # On a loaded machine the order may outlive its blockhash (2 s at a latency scale of
    # 0) and be retried: the timeline then shows each attempt, each routing with its quotes.
    routing = '#timeline-body li.event[data-status="routing"]'
    quotes = await console.script(
        f"return [...document.querySelectorAll('{routing}')].map(e => ["
        "e.querySelectorAll('.quote').length, e.querySelectorAll('.quote.chosen').length])"
    )
    assert quotes
    assert all(counts == [2, 1] for counts in quotes)
    assert "better than" in await console.text(f"{routing} .reason")
    events = "#timeline-body li.event"
    statuses = await console.script(
        f"return [...document.querySelectorAll('{events}')].map(e => e.dataset.status)"
    )
    assert statuses[0] == "pending"
    assert statuses[-4:] == ["routing", "building", "submitted", "confirmed"]
    assert await console.errors() == []


async def test_a_sniper_placed_on_the_page_fires_when_the_page_lists_its_token(
    start_app: StartApp, console: ConsolePage
) -> None:
    client = await start_app()
    token = "B" + uuid4().hex[:8].upper()
    await console.open(client)

    sniper = await place(console, "sniper", tokenOut=token, amountIn="0.5", slippageBps="500")
    await console.row_status(sniper, "pending")
    await console.shows(f'#orders tr[data-order-id="{sniper}"]', "pending · listing")
    await console.shows("#preview", "the sniper will wait")

    await console.type("#listing-token", token)
    await console.click("#submit-listing")
    await console.row_status(sniper, "confirmed")
    await console.click(f'#orders tr[data-order-id="{sniper}"]')

    routing = '#timeline-body li.event[data-status="routing"]'
    await console.find(f'{routing} .quote.chosen[data-dex="meteora"]')
    assert "raydium" in await console.text(routing)
    await console.find(f'#pair-tabs [data-pair="SOL→{token}"]')
    assert await console.errors() == []


async def test_with_keys_the_page_asks_for_one_and_keeps_it_for_the_tab(
    start_app: StartApp, console: ConsolePage
) -> None:
    client = await start_app(api_keys={"alice": KEY})
    await console.open(client, live=False)

    await console.find("#key-dialog[open]")
    await console.type("#key-input", WRONG)
    await console.click("#key-dialog button[type=submit]")
    await console.shows("#key-error", "refused")
    await console.type("#key-input", KEY)
    await console.click("#key-dialog button[type=submit]")
    await console.until(lambda d: console.feed_state(d) == "live")
    assert await console.session_item("orderengine.key") == KEY

    response = await client.post(EXECUTE, json=MARKET, headers={"Authorization": f"Bearer {KEY}"})
    order_id = (await response.json())["orderId"]
    await console.row_status(order_id, "confirmed")
    await console.reload()
    await console.until(lambda d: console.feed_state(d) == "live")
    await console.row_status(order_id, "confirmed")
    assert not await console.script("return document.getElementById('key-dialog').open")

    refused = await console.errors()
    assert refused, "the wrong key was refused"
    assert all("401 (Unauthorized)" in message for message in refused), refused


async def test_the_page_says_what_is_wrong_with_what_was_typed(
    start_app: StartApp, console: ConsolePage
) -> None:
    client = await start_app()
    await console.open(client)

    await console.type("#order-form [name=amountIn]", "100000000")
    await console.shows("#preview .error", "amountIn:")
    await console.order_type("limit")
    await console.type("#order-form [name=amountIn]", "1")
    await console.type("#order-form [name=limitPrice]", "1")
    await console.type("#order-form [name=expiresIn]", "soon")
    await console.click("#submit-order")
    await console.shows("#order-error", "expires in: a whole number of seconds")

    refused = await console.errors()
    assert all("422" in message for message in refused), refused


async def test_with_keys_the_key_dialog_cannot_be_dismissed(
    start_app: StartApp, console: ConsolePage
) -> None:
    client = await start_app(api_keys={"alice": KEY})
    await console.open(client, live=False)
    await console.find("#key-dialog[open]")

    key_input = await console.find("#key-input")
    await console.run(key_input.send_keys, Keys.ESCAPE)

    assert await console.script("return document.getElementById('key-dialog').open")


async def test_the_chart_quotes_each_pair_at_its_newest_order_and_keeps_six_tabs(
    start_app: StartApp, console: ConsolePage
) -> None:
    client = await start_app()
    await console.open(client)
    await console.find('#pair-tabs [data-pair="SOL→USDC"]')
    for _ in range(7):
        token = "C" + uuid4().hex[:8].upper()
        listing = {
            "dex": "meteora",
            "token": token,
            "quoteToken": "SOL",
            "price": "0.0001",
            "liquidity": "5000",
        }
        assert (await client.post("/api/simulation/listings", json=listing)).status == 201
        await submit(client, {**MARKET, "tokenOut": token, "amountIn": "0.01", "slippageBps": 500})
    await submit(client, {**MARKET, "amountIn": "2.5"})

    await console.until(
        lambda d: d.execute_script(
            "return performance.getEntriesByType('resource')"
            ".some(e => e.name.includes('tokenOut=USDC&amountIn=2.5'))"
        )
    )
    await console.until(
        lambda d: len(d.find_elements("css selector", "#pair-tabs [data-pair]")) == 6
    )
    tabs = await console.script(
        "return [...document.querySelectorAll('#pair-tabs [data-pair]')].map(t => t.dataset.pair)"
    )
    assert tabs[0] == "SOL→USDC"
    assert await console.errors() == []
