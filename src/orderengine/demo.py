"""`python -m orderengine demo`: five orders at once, watched live in the terminal.

It talks to a running engine over its public API, as any client would, and starts one (and
stops it after) if none answers at the URL. Each order is followed on its own socket; a row
per order shows its status, the venue chosen, both venues' quotes, the price it executed at
and the time it spent in each status, until every order has ended. `--limit` places limit
orders around the current price (those above it wait, then expire); `--sniper` places sniper
orders for a token no venue lists yet, then lists it, and they fire.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal
from urllib.parse import urlsplit

import aiohttp
from rich.console import Console
from rich.live import Live
from rich.table import Table

Kind = Literal["market", "limit", "sniper"]
START_TIMEOUT_S = 60.0
LIMIT_EXPIRY_S = 15
"""A demo limit order the price does not reach expires after this long, so the demo ends."""
LIMIT_STEPS = ("0.98", "0.99", "1.00", "1.01", "1.02")
"""The demo's limit prices, as shares of the current best price: some fill, some wait."""


@dataclass
class Row:
    """What the table shows of one order, from its events."""

    order_id: str
    kind: str
    status: str = "pending"
    dex: str = ""
    quotes: dict[str, str] = field(default_factory=dict)
    price: str = ""
    waiting: str = ""
    times: list[tuple[str, datetime]] = field(default_factory=list)

    @property
    def ended(self) -> bool:
        return self.status in ("confirmed", "failed")

    def take(self, event: dict[str, Any]) -> None:
        """Update the row with one event of the order."""
        self.status = event["status"]
        self.times.append((event["status"], datetime.fromisoformat(event["at"])))
        self.waiting = str(event.get("waiting") or "")
        for quote in event.get("quotes", ()):
            self.quotes[quote["dex"]] = quote["amountOut"]
        self.dex = event.get("dex", self.dex)
        self.price = event.get("executedPrice", self.price) or event.get("error", "")

    def durations(self) -> str:
        """Seconds spent in each status it has left, in order: `p 0.21 r 0.20 b 0.00 s 2.50`."""
        spans = zip(self.times, self.times[1:], strict=False)
        return " ".join(
            f"{status[0]} {(until - since).total_seconds():.2f}"
            for (status, since), (_, until) in spans
        )


def table(rows: list[Row]) -> Table:
    """The live table: one row per order."""
    shown = Table(title="orderengine demo", expand=True)
    for column in ("order", "type", "status", "venue", "raydium out", "meteora out", "price"):
        shown.add_column(column, no_wrap=True, overflow="ellipsis")
    shown.add_column("seconds in each status")
    for row in rows:
        status = f"{row.status} ({row.waiting})" if row.waiting and not row.ended else row.status
        shown.add_row(
            row.order_id[:8],
            row.kind,
            status,
            row.dex,
            row.quotes.get("raydium", ""),
            row.quotes.get("meteora", ""),
            row.price,
            row.durations(),
        )
    return shown


async def run(url: str, key: str | None, kind: Kind, count: int, console: Console) -> int:
    """Place `count` orders of `kind` on the engine at `url` and show them until all end.

    Starts an engine if none answers there. 0 when every order ended; 1 if the engine
    refused one, or the quote or the listing the demo needs.
    """
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with (
        aiohttp.ClientSession(base_url=url, headers=headers) as session,
        _engine(session, url, console),
    ):
        orders = await _place(session, kind, count)
        if orders is None:
            console.print("the engine refused the demo; see its answer above")
            return 1
        rows = [Row(order["orderId"], kind) for order in orders]
        with Live(table(rows), console=console, refresh_per_second=8) as live:
            await asyncio.gather(
                *(
                    _follow(session, o["ws"], r, live, rows)
                    for o, r in zip(orders, rows, strict=True)
                )
            )
            live.update(table(rows))
    return 0


async def _place(
    session: aiohttp.ClientSession, kind: Kind, count: int
) -> list[dict[str, Any]] | None:
    """Submit the orders at once; None if the engine refused one, the others then cancelled.

    Sniper orders are placed first, then their token is listed: were the listing refused,
    they would wait for it until they expire, so they are cancelled.
    """
    bodies = await _bodies(session, kind, count)
    if bodies is None:
        return None
    answers = await asyncio.gather(*(_submit(session, body) for body in bodies))
    placed = [answer for answer in answers if answer is not None]
    refused = len(placed) < len(answers)
    if not refused and kind == "sniper":
        refused = not await _list(session, bodies[0]["tokenOut"])
    if refused:
        await asyncio.gather(*(_cancel(session, answer["orderId"]) for answer in placed))
        return None
    return placed


async def _bodies(
    session: aiohttp.ClientSession, kind: Kind, count: int
) -> list[dict[str, Any]] | None:
    """The orders' bodies; None if the engine refused to quote the limit orders' price."""
    base = {
        "type": kind,
        "tokenIn": "SOL",
        "tokenOut": "USDC",
        "amountIn": "1.5",
        "slippageBps": 100,
    }
    if kind == "market":
        return [base] * count
    if kind == "sniper":
        token = "DEMO" + secrets.token_hex(3).upper()
        return [{**base, "tokenOut": token, "amountIn": "0.5", "slippageBps": 500}] * count
    best = await _best_price(session)
    if best is None:
        return None
    expires_at = (datetime.now(UTC) + timedelta(seconds=LIMIT_EXPIRY_S)).isoformat()
    return [
        {
            **base,
            "limitPrice": format((best * Decimal(step)).quantize(Decimal("0.01")), "f"),
            "expiresAt": expires_at,
        }
        for step in (LIMIT_STEPS * count)[:count]
    ]


async def _best_price(session: aiohttp.ClientSession) -> Decimal | None:
    """The best venue's price of the demo's swap now; None if the engine did not quote it."""
    query = {"tokenIn": "SOL", "tokenOut": "USDC", "amountIn": "1.5"}
    async with session.get("/api/quotes", params=query) as response:
        preview = await _answer(response)
    if response.status != 200 or not preview["quotes"]:
        _show_refusal(preview)
        return None
    return max(Decimal(quote["price"]) for quote in preview["quotes"])


async def _submit(session: aiohttp.ClientSession, body: dict[str, Any]) -> dict[str, Any] | None:
    async with session.post("/api/orders/execute", json=body) as response:
        answer = await _answer(response)
    if response.status in (200, 201):
        return dict(answer)
    _show_refusal(answer)
    return None


async def _list(session: aiohttp.ClientSession, token: str) -> bool:
    """List `token` on the simulated venues; whether the engine did."""
    listing = {
        "dex": "meteora",
        "token": token,
        "quoteToken": "SOL",
        "price": "0.0001",
        "liquidity": "5000",
    }
    async with session.post("/api/simulation/listings", json=listing) as response:
        answer = await _answer(response)
    if response.status != 201:
        _show_refusal(answer)
    return response.status == 201


async def _cancel(session: aiohttp.ClientSession, order_id: str) -> None:
    """Cancel a placed order; one that has gone too far to be is left to end."""
    async with session.delete(f"/api/orders/{order_id}"):
        pass


async def _answer(response: aiohttp.ClientResponse) -> Any:
    """The answer's JSON, or its text when it is not JSON (a proxy's error page, say)."""
    text = await response.text()
    try:
        return json.loads(text)
    except ValueError:
        return text


def _show_refusal(answer: Any) -> None:
    print(answer if isinstance(answer, str) else json.dumps(answer), file=sys.stderr)


async def _follow(
    session: aiohttp.ClientSession, ws_path: str, row: Row, live: Live, rows: list[Row]
) -> None:
    """Take the order's events from its socket into its row until it ends."""
    async with session.ws_connect(ws_path) as ws:
        async for message in ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                break
            row.take(message.json())
            live.update(table(rows))
            if row.ended:
                break


@contextlib.asynccontextmanager
async def _engine(
    session: aiohttp.ClientSession, url: str, console: Console
) -> AsyncIterator[None]:
    """Use the engine at `url`, or start one there (and stop it with SIGTERM after)."""
    if await _answers(session):
        yield
        return
    console.print(f"no engine answered at {url}: starting one")
    port = str(urlsplit(url).port or 8080)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "orderengine",
        env={**os.environ, "ORDERENGINE_PORT": port},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        await _until_answering(session, process)
        yield
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            await process.wait()


async def _until_answering(
    session: aiohttp.ClientSession, process: asyncio.subprocess.Process
) -> None:
    async with asyncio.timeout(START_TIMEOUT_S):
        while not await _answers(session):
            if process.returncode is not None:
                raise RuntimeError(f"the engine exited with status {process.returncode}")
            await asyncio.sleep(0.2)


async def _answers(session: aiohttp.ClientSession) -> bool:
    try:
        async with session.get("/health") as response:
            return response.status == 200
    except aiohttp.ClientError:
        return False
