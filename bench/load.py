"""The load generator every intake measurement here uses: clients POSTing one order body.

The engine (bench/throughput.py) and the yardsticks (bench/yardsticks.py) are measured with
these same clients, so that their figures differ only by the server: C concurrent clients,
each POSTing the market order of `tests.streams.MARKET` to `/api/orders/execute` and waiting
for the answer before sending the next, over one connection pool per server.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import aiohttp

from tests.streams import MARKET

ORDER_PATH: Final = "/api/orders/execute"
REQUEST_TIMEOUT_S: Final = 30.0
PERCENTILES: Final = (50, 95, 99)
WARMUP_ORDERS: Final = 200


@dataclass(frozen=True)
class Intake:
    elapsed_s: float
    latencies_s: list[float]
    statuses: Counter[str]

    @property
    def accepted(self) -> int:
        return self.statuses["201"]

    @property
    def accepted_per_s(self) -> float:
        return self.accepted / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def summary(self) -> dict[str, Any]:
        """The figures, for a JSON file: latencies in milliseconds."""
        return {
            "responses": dict(sorted(self.statuses.items())),
            "wall_s": round(self.elapsed_s, 4),
            "accepted_per_s": round(self.accepted_per_s, 1),
            "latency_ms": milliseconds(self.latencies_s),
        }


def client_session(base_url: str, connections: int) -> aiohttp.ClientSession:
    """A session to one server, with at most `connections` connections open to it."""
    return aiohttp.ClientSession(
        base_url=base_url,
        connector=aiohttp.TCPConnector(limit=connections),
        timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S),
    )


async def post_order(session: aiohttp.ClientSession) -> str:
    """POST one order; its HTTP status, or the name of the error if there was no answer."""
    try:
        async with session.post(ORDER_PATH, json=MARKET) as reply:
            await reply.read()
            return str(reply.status)
    except (aiohttp.ClientError, TimeoutError) as error:
        return type(error).__name__


async def run_intake(
    sessions: Sequence[aiohttp.ClientSession], orders: int, concurrency: int
) -> Intake:
    """POST `orders` orders from `concurrency` clients drawing from one shared iterator.

    Client i sends through `sessions[i % len(sessions)]`: one session per server.
    """
    tickets = iter(range(orders))
    latencies: list[float] = []
    statuses: Counter[str] = Counter()

    async def client(session: aiohttp.ClientSession) -> None:
        for _ in tickets:
            began = time.perf_counter()
            status = await post_order(session)
            latencies.append(time.perf_counter() - began)
            statuses[status] += 1

    began = time.perf_counter()
    async with asyncio.TaskGroup() as group:
        for n in range(min(concurrency, orders)):
            group.create_task(client(sessions[n % len(sessions)]))
    return Intake(time.perf_counter() - began, latencies, statuses)


async def intake_of(base_url: str, orders: int, clients: int) -> Intake:
    """`run_intake` against one server, through a pool of as many connections as clients.

    `WARMUP_ORDERS` go first, not counted, so that every server is measured as it runs
    once warm: the clients' connections open, and each of the server's statements prepared on
    its database connections.
    """
    async with client_session(base_url, clients) as session:
        await run_intake([session], WARMUP_ORDERS, clients)
        return await run_intake([session], orders, clients)


def percentiles(values: Sequence[float]) -> dict[int, float] | None:
    """p50, p95 and p99 (inclusive method: within the observed range), None if empty."""
    if not values:
        return None
    if len(values) == 1:
        return dict.fromkeys(PERCENTILES, values[0])
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return {p: cuts[p - 1] for p in PERCENTILES}


def format_percentiles(values: Sequence[float], scale: float, unit: str) -> str:
    found = percentiles(values)
    if found is None:
        return "n/a"
    return " / ".join(f"{found[p] * scale:.1f}" for p in PERCENTILES) + f" {unit}"


def milliseconds(latencies_s: Sequence[float]) -> dict[str, float] | None:
    """p50, p95 and p99 of latencies in seconds, in milliseconds, for a JSON file."""
    found = percentiles(latencies_s)
    if found is None:
        return None
    return {f"p{p}": round(value * 1000, 3) for p, value in found.items()}
