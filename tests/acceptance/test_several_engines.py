"""Several engines, one database: real `python -m orderengine` processes sharing the work.

What the engines do is read from the database as they do it (`tests/cluster.py`): which
engine holds each order's lease, how many orders are in flight, when each attempt started.
Every wait is bounded; the timing each test relies on comes from the settings it gives (the
simulated latency's bounds, the lease, the sweep), never from a sleep that happens to be long
enough.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import signal
import time
from pathlib import Path
from typing import Any
from uuid import UUID

import aiohttp

from orderengine.domain import OrderStatus
from orderengine.repository import Repository
from orderengine.venues.chain import Chain
from tests.cluster import (
    all_finished,
    assert_each_order_ended_once,
    census,
    connected,
    routing_times,
    until,
    watching,
)
from tests.engine_process import EngineProcess, StartEngine, leftover_postgres, process_exists
from tests.harness import embedded_scratch_dir
from tests.polling import eventually
from tests.streams import MARKET, read_until_closed

CALM: dict[str, Any] = {"failure_rate": 0, "price_volatility_bps": 0, "sweep_s": 0.5}
"""No simulated failures and no price moves: every order confirms on its first attempt."""


async def test_two_engines_share_the_work_each_within_its_own_concurrency(
    start_engine: StartEngine, database_url: str
) -> None:
    settings = {**CALM, "concurrency": 2, "latency_scale": 0.3}
    first, second = await asyncio.gather(
        start_engine(seed=1, **settings), start_engine(seed=2, **settings)
    )

    async with watching(database_url) as observed, aiohttp.ClientSession() as session:
        await asyncio.gather(first.submit(session, 6), second.submit(session, 6))
        async with connected(database_url) as connection:
            await all_finished(connection)

    assert 2 < observed.peak_in_flight <= 2 + 2
    assert observed.owners == {first.engine_id(), second.engine_id()}


LEASE_S = 3.0
SWEEP_S = 0.5
TAKE_OVER_SLACK_S = 1.0
"""The claim itself, and this test's reading of it, on a busy two-core machine."""


async def test_a_killed_engines_orders_are_finished_by_another_once_its_leases_expire(
    start_engine: StartEngine, database_url: str, repository: Repository, chain: Chain
) -> None:
    shared = {
        **CALM,
        "concurrency": 2,
        "lease_s": LEASE_S,
        "sweep_s": SWEEP_S,
        "blockhash_ttl_s": 1,
    }
    # The victim's swaps take 2 to 3 s, so it dies with them in flight; the survivor's take
    # at most 1 s, so it is free again before the victim's leases (renewed every second) run
    # out, at least 2 s after the kill. Their blockhashes last 1 s: a swap that never
    # reached the chain is known to be lost soon after.
    victim, survivor = await asyncio.gather(
        start_engine(seed=1, latency_scale=1.0, **shared),
        start_engine(seed=2, latency_scale=0.3, **shared),
    )
    victim_id, survivor_id = victim.engine_id(), survivor.engine_id()
    async with aiohttp.ClientSession() as session:
        ids = [UUID(order_id) for order_id in await victim.submit(session, 4)]

    async with connected(database_url) as connection:
        await until(
            connection,
            lambda seen: any(
                row.status is OrderStatus.SUBMITTED for row in seen.held_by(victim_id).values()
            ),
            limit_s=10,
        )
        await victim.kill()
        killed_at = time.monotonic()
        at_kill = (await census(connection)).held_by(victim_id)
        await until(connection, lambda seen: not seen.held_by(victim_id), limit_s=30)
        taken_over_s = time.monotonic() - killed_at
        await all_finished(connection)

    assert at_kill
    assert any(row.status is OrderStatus.SUBMITTED for row in at_kill.values())
    assert taken_over_s <= LEASE_S + SWEEP_S + TAKE_OVER_SLACK_S, taken_over_s
    await assert_each_order_ended_once(repository, chain, ids)
    for order_id, row in at_kill.items():
        order = await repository.get_order(order_id)
        after = await repository.events(order_id, after=row.last_seq)
        assert order.status is OrderStatus.CONFIRMED, order
        assert row.lease_expires_at is not None
        assert after[0].at >= row.lease_expires_at, "taken over before the lease ran out"
        if row.status is OrderStatus.SUBMITTED:
            assert after[0].details.get("reconciled") is True, after[0]
    assert survivor_id != victim_id


async def test_an_order_posted_to_one_engine_streams_completely_on_another(
    start_engine: StartEngine, database_url: str
) -> None:
    # The orders followed are checked against the store only every minute: whatever reaches
    # the socket on the second engine in time was announced by the first one's NOTIFYs. The
    # executing engine's swaps take 2 to 3 s, so the socket is open well before the order ends.
    idle = {"ws_idle_check_s": 60}
    executing, streaming = await asyncio.gather(
        start_engine(concurrency=2, latency_scale=1.0, **CALM, **idle),
        start_engine(concurrency=2, latency_scale=1.0, **CALM, **idle),
    )
    executing_id = executing.engine_id()
    async with aiohttp.ClientSession() as session:
        await executing.submit(session, 4)
        async with connected(database_url) as connection:
            seen = await until(
                connection,
                lambda seen: any(
                    not row.status.terminal for row in seen.held_by(executing_id).values()
                ),
                limit_s=10,
            )
            order_id = next(
                order_id
                for order_id, row in seen.held_by(executing_id).items()
                if not row.status.terminal
            )
            url = f"{streaming.ws_url}/api/orders/execute?orderId={order_id}"
            async with session.ws_connect(url) as ws:
                open_before_the_end = (
                    not (await census(connection)).orders[order_id].status.terminal
                )
                events = await read_until_closed(ws, limit_s=20)
                close_code = ws.close_code
            held = (await census(connection)).orders[order_id]

    assert open_before_the_end
    assert close_code == 1000
    assert [event["seq"] for event in events] == list(range(1, len(events) + 1))
    assert [event["status"] for event in events][-1] == "confirmed"
    assert [event["status"] for event in events].count("confirmed") == 1
    assert held.lease_owner is None


RATE_PER_MINUTE = 120
BURST = 2


async def test_the_rate_limit_is_shared_by_every_engine_on_the_database(
    start_engine: StartEngine, database_url: str
) -> None:
    paced = {
        **CALM,
        "concurrency": 4,
        "latency_scale": 0,
        "rate_per_minute": RATE_PER_MINUTE,
        "rate_burst": BURST,
    }
    first, second = await asyncio.gather(start_engine(**paced), start_engine(**paced))
    async with connected(database_url) as connection:
        began = await connection.fetchval("SELECT clock_timestamp()")
        async with watching(database_url) as observed, aiohttp.ClientSession() as session:
            await asyncio.gather(first.submit(session, 6), second.submit(session, 6))
            await all_finished(connection)
        started = await routing_times(connection)

    per_second = RATE_PER_MINUTE / 60
    assert len(started) >= 12
    for count, at in enumerate(started, 1):
        allowed = BURST + per_second * (at - began).total_seconds()
        assert count <= allowed + 1e-6, f"attempt {count} at {at - began} of the run"
    assert observed.owners == {first.engine_id(), second.engine_id()}


class Clients:
    """Orders submitted without pause, spread over engines, as behind a load balancer.

    An engine that does not answer, or answers 503, is passed over for the next one.
    """

    def __init__(self, engines: list[EngineProcess], every_s: float) -> None:
        self.engines = engines
        self.every_s = every_s
        self.accepted: list[UUID] = []
        self.refused = 0

    async def run(self, session: aiohttp.ClientSession) -> None:
        turn = 0
        while True:
            for offset in range(len(self.engines)):
                engine = self.engines[(turn + offset) % len(self.engines)]
                if await self._post(session, engine):
                    break
                self.refused += 1
            turn += 1
            await asyncio.sleep(self.every_s)

    async def _post(self, session: aiohttp.ClientSession, engine: EngineProcess) -> bool:
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            async with session.post(f"{engine.url}/api/orders/execute", json=MARKET) as answer:
                if answer.status == 201:
                    self.accepted.append(UUID((await answer.json())["orderId"]))
                    return True
        return False


async def test_a_rolling_restart_under_load_loses_nothing_and_lands_nothing_twice(
    start_engine: StartEngine, database_url: str, repository: Repository, chain: Chain
) -> None:
    settings = {**CALM, "concurrency": 2, "latency_scale": 0.1}
    engines = list(
        await asyncio.gather(start_engine(seed=1, **settings), start_engine(seed=2, **settings))
    )
    clients = Clients(engines, every_s=0.05)
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        load = asyncio.create_task(clients.run(session))
        try:
            for engine in engines:
                await asyncio.sleep(1)
                engine.signal(signal.SIGTERM)
                assert await engine.wait() == 0
                await engine.start()
            await asyncio.sleep(1)
        finally:
            load.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await load
    async with connected(database_url) as connection:
        done = await all_finished(connection)

    assert len(clients.accepted) > 20
    assert set(clients.accepted) <= set(done.orders)
    assert {row.status for row in done.orders.values()} == {OrderStatus.CONFIRMED}
    assert all(row.lease_owner is None for row in done.orders.values())
    await assert_each_order_ended_once(repository, chain, done.orders)


async def test_engines_on_one_data_directory_share_its_server_until_the_last_one_stops(
    tmp_path: Path,
) -> None:
    scratch = embedded_scratch_dir("oe-shared-")
    data_dir = (scratch / "postgres").resolve()
    settings = {"latency_scale": 0, "failure_rate": 0, "keypair": tmp_path / "keypair.json"}
    first = EngineProcess(data_dir, tmp_path / "first", **settings)
    second = EngineProcess(data_dir, tmp_path / "second", **settings)
    try:
        await first.start()
        await second.start()
        server = leftover_postgres(data_dir)
        assert server is not None

        first.signal(signal.SIGTERM)
        assert await first.wait() == 0
        assert leftover_postgres(data_dir) == server
        await _serves_an_order(second)

        # A killed engine keeps nobody's server running: when the last live one stops, so
        # does the server.
        await first.start()
        await second.kill()
        await _serves_an_order(first)
        first.signal(signal.SIGTERM)
        assert await first.wait() == 0
        assert leftover_postgres(data_dir) is None

        async def server_gone() -> bool:
            return not process_exists(server)

        await eventually(server_gone, limit_s=10)
    finally:
        await asyncio.gather(first.stop(), second.stop())
        shutil.rmtree(scratch, ignore_errors=True)


async def _serves_an_order(engine: EngineProcess) -> None:
    """POST an order to `engine` and follow it to its confirmation on the same engine."""
    async with aiohttp.ClientSession() as session:
        (order_id,) = await engine.submit(session, 1)
        url = f"{engine.ws_url}/api/orders/execute?orderId={order_id}"
        async with session.ws_connect(url) as ws:
            events = await read_until_closed(ws, limit_s=20)
        assert ws.close_code == 1000
    assert events[-1]["status"] == "confirmed", json.dumps(events[-1])


async def test_a_stopping_engine_keeps_the_leases_of_its_swaps_in_flight_until_they_end(
    start_engine: StartEngine, database_url: str, repository: Repository
) -> None:
    # Swaps of 4 to 6 s against leases of 2 s: the drain outlasts two leases or more, and the
    # other engine, idle, would take the order over the moment its lease ran out. A lease is
    # renewed every third of its length, so a stall of the loaded machine shorter than two
    # thirds of it loses nothing.
    leased = {**CALM, "concurrency": 1, "lease_s": 2, "sweep_s": 0.5}
    stopping, other = await asyncio.gather(
        start_engine(latency_scale=2.0, **leased), start_engine(latency_scale=0.3, **leased)
    )
    stopping_id = stopping.engine_id()
    async with aiohttp.ClientSession() as session:
        await stopping.submit(session, 2)
    async with connected(database_url) as connection:
        seen = await until(
            connection,
            lambda seen: any(
                row.status is OrderStatus.SUBMITTED for row in seen.held_by(stopping_id).values()
            ),
            limit_s=10,
        )
        (order_id,) = seen.held_by(stopping_id)
        async with watching(database_url) as observed:
            stopping.signal(signal.SIGTERM)
            assert await stopping.wait() == 0
        await all_finished(connection)

    events = await repository.events(order_id)
    assert observed.holders[order_id] == {stopping_id}
    assert [event.status for event in events][-1] is OrderStatus.CONFIRMED
    assert "reconciled" not in events[-1].details
    assert other.engine_id() != stopping_id


async def test_a_stopping_engine_hands_back_at_once_the_orders_it_has_not_started(
    start_engine: StartEngine, database_url: str
) -> None:
    # One token, then one every 5 s: of two orders one swaps (4 to 6 s), the other waits
    # for its token, leased, when the engine is told to stop.
    engine = await start_engine(
        **CALM, concurrency=2, latency_scale=2.0, rate_per_minute=12, rate_burst=1
    )
    engine_id = engine.engine_id()
    async with aiohttp.ClientSession() as session:
        await engine.submit(session, 2)
    async with connected(database_url) as connection:
        seen = await until(
            connection,
            lambda seen: (
                len(seen.held_by(engine_id)) == 2
                and any(row.status is OrderStatus.SUBMITTED for row in seen.orders.values())
            ),
            limit_s=10,
        )
        (waiting,) = (i for i, row in seen.orders.items() if row.status is OrderStatus.PENDING)
        (swapping,) = (i for i, row in seen.orders.items() if row.status is OrderStatus.SUBMITTED)
        engine.signal(signal.SIGTERM)
        handed_back = await until(
            connection, lambda seen: seen.orders[waiting].lease_owner is None, limit_s=15
        )
        assert await engine.wait() == 0
        after = await census(connection)

    assert handed_back.orders[swapping].status is OrderStatus.SUBMITTED, "only after the drain"
    assert handed_back.orders[swapping].lease_owner == engine_id
    assert after.orders[swapping].status is OrderStatus.CONFIRMED
    assert after.orders[waiting].status is OrderStatus.PENDING
    assert after.orders[waiting].last_seq == 1
