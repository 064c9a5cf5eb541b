"""The database going away under load: 503s rather than hangs, and nothing lost."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from uuid import UUID, uuid4

import asyncpg
import pytest
from pytest_aiohttp import AiohttpClient

from orderengine.app import create_app
from orderengine.domain import NewOrder, OrderRequest
from orderengine.embedded_db import embedded_postgres
from orderengine.errors import DatabaseUnavailable
from orderengine.postgres import CONNECTION_ERRORS, acquire, create_pool
from orderengine.repository import CommitUnanswered, Repository
from orderengine.venues.chain import Chain
from tests import database_server
from tests.harness import Client, embedded_scratch_dir, fast_settings
from tests.polling import eventually
from tests.streams import MARKET, submit

REQUEST = OrderRequest.model_validate(
    {"type": "market", "tokenIn": "SOL", "tokenOut": "USDC", "amountIn": "1", "slippageBps": 50}
)


@pytest.fixture
def own_server() -> Iterator[tuple[Path, str]]:
    """An embedded server of the test's own: its data directory and URL.

    Stopping the worker's server would write a checkpoint of every database the tests before
    made (15 s after two hundred tests), and stop the next tests' clones meanwhile.
    """
    if os.environ.get("TEST_DATABASE_URL"):
        pytest.skip("restarts only an embedded server, not the one of TEST_DATABASE_URL")
    scratch = embedded_scratch_dir("oe-restart-")
    try:
        with embedded_postgres(scratch / "data", throwaway=True) as url:
            yield scratch / "data", url
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


async def test_a_database_restart_under_load_loses_no_order(
    own_server: tuple[Path, str], aiohttp_client: AiohttpClient
) -> None:
    """The orders set aside during the restart are taken up once the database is back.

    Their leases, a minute long here, were given up while it was away: they are given back
    when it answers, not left to run out.
    """
    data_dir, url = own_server
    settings = fast_settings(url, latency_scale=0.05, concurrency=4, db_timeout_s=1.0, lease_s=60)
    client = await aiohttp_client(create_app(settings))
    repository = await Repository.connect(url, 2, 5.0)
    chain = await Chain.open(url, 1, 5.0)
    try:
        await restart_under_load(client, repository, chain, data_dir)
    finally:
        await chain.close()
        await repository.close()


async def restart_under_load(
    client: Client, repository: Repository, chain: Chain, data_dir: Path
) -> None:
    ids = [UUID(await submit(client)) for _ in range(12)]
    unfinished_at_outage = await repository.unfinished()

    await asyncio.to_thread(database_server.stop, data_dir)
    try:
        refused = await client.post("/api/orders/execute", json=MARKET)
        health = await client.get("/health")
        refused_body = await refused.json()
    finally:
        await asyncio.to_thread(database_server.start, data_dir)

    assert unfinished_at_outage
    assert refused.status == 503
    assert refused.headers["Retry-After"].isdigit()
    assert refused_body["error"]["code"] == "database_unavailable"
    assert health.status == 503

    async def all_terminal() -> bool:
        orders = [await (await client.get(f"/api/orders/{i}")).json() for i in ids]
        return all(order.get("status") in ("confirmed", "failed") for order in orders)

    await eventually(all_terminal, limit_s=20, interval_s=0.1)
    landed = await chain.landed_signatures(ids)
    for order_id in ids:
        order = await repository.get_order(order_id)
        assert order.status.value == "confirmed"
        assert landed[order_id] == [order.tx_hash]
    assert (await client.post("/api/orders/execute", json=MARKET)).status == 201


async def test_a_connection_the_server_ends_is_an_outage_never_a_crash(database_url: str) -> None:
    """A statement sent as the server ends its connection meets an outage, and only that.

    The server says it is ending the connection, then closes it; asyncpg refuses a statement
    sent between the two as "another operation is in progress". Whether a given statement
    falls between the two depends on timing: ended sixty times, a few pauses apart, the
    pool's one connection meets it in about half the runs, and must give an answer or
    `DatabaseUnavailable` every time.
    """
    pooled = await Repository.connect(database_url, 1, 5.0)
    admin = await asyncpg.connect(database_url)
    outcomes: Counter[str] = Counter()
    try:
        for _ in range(60):
            async with pooled._connection() as connection:
                backend = await connection.fetchval("SELECT pg_backend_pid()")
            await admin.fetchval("SELECT pg_terminate_backend($1)", backend)
            try:
                await pooled.ping()
                outcomes["answered"] += 1
            except DatabaseUnavailable:
                outcomes["unavailable"] += 1
            await asyncio.sleep(0.02)
    finally:
        await admin.close()
        await pooled.close()

    assert outcomes["unavailable"] > 0


async def test_a_statement_asyncpg_refuses_mid_operation_is_an_outage(database_url: str) -> None:
    pool = await create_pool(database_url, 1, 5.0)
    try:
        with pytest.raises(DatabaseUnavailable):
            async with acquire(pool, 5.0):
                raise asyncpg.InternalClientError(
                    "cannot switch to state 11; another operation (2) is in progress"
                )
    finally:
        await pool.close()


@asynccontextmanager
async def frozen_pool(database_url: str, timeout_s: float) -> AsyncIterator[asyncpg.Pool]:
    """A pool of one connection whose server process is stopped (SIGSTOP), as if hung."""
    pool = await create_pool(database_url, 1, timeout_s)
    frozen: int | None = None
    try:
        async with acquire(pool, timeout_s) as connection:
            frozen = await connection.fetchval("SELECT pg_backend_pid()")
        os.kill(frozen, signal.SIGSTOP)
        yield pool
    finally:
        if frozen is not None:
            os.kill(frozen, signal.SIGCONT)
        pool.terminate()


async def test_a_statement_cancelled_on_a_frozen_server_ends_cancelled(database_url: str) -> None:
    """Its connection cannot be given back in time: that is no outage to carry on through.

    Taken for `DatabaseUnavailable`, the cancellation would be lost, and a loop that carries
    on through outages (the price watcher, the renewer) would keep an engine told to stop
    running for ever.
    """
    async with frozen_pool(database_url, 0.5) as pool:

        async def query() -> None:
            async with acquire(pool, 0.5) as connection:
                await connection.fetchval("SELECT 1", timeout=60)

        task = asyncio.create_task(query())
        await asyncio.sleep(0.2)
        task.cancel()
        async with asyncio.timeout(10):
            outcome = await asyncio.gather(task, return_exceptions=True)

    assert isinstance(outcome[0], asyncio.CancelledError), repr(outcome[0])


async def test_a_statement_timed_out_on_a_frozen_server_gives_its_connection_up_at_once(
    database_url: str,
) -> None:
    """The pool would wait up to its own timeout for the server to confirm the cancellation.

    A read during a database stall was then answered after twice the timeout: its statement's,
    then the pool's wait to take the connection back.
    """
    async with frozen_pool(database_url, 60.0) as pool:

        async def query() -> None:
            async with acquire(pool, 60.0) as connection:
                await connection.fetchval("SELECT 1", timeout=0.2)

        async with asyncio.timeout(10):
            outcome = await asyncio.gather(query(), return_exceptions=True)

    assert isinstance(outcome[0], DatabaseUnavailable), repr(outcome[0])


async def test_a_transaction_its_engine_left_idle_is_ended_by_the_server(
    database_url: str,
) -> None:
    """A frozen engine's open transaction would hold its locks from every other engine."""
    pool = await create_pool(database_url, 1, 0.5)
    admin = await asyncpg.connect(database_url)
    try:
        async with acquire(pool, 0.5) as connection:
            transaction = connection.transaction()
            await transaction.start()
            await connection.execute("SELECT pg_advisory_xact_lock(4242)")
            await asyncio.sleep(1.5)
            taken = await admin.fetchval("SELECT pg_try_advisory_lock(4242)")
            with pytest.raises(CONNECTION_ERRORS):
                await transaction.rollback()
    finally:
        await admin.close()
        pool.terminate()

    assert taken


async def test_a_batch_left_unread_by_a_frozen_server_is_read_back_once_its_process_ended(
    database_url: str,
) -> None:
    """Its statement waits in the frozen process's socket, and may still run when it thaws.

    Were the read-back to look before that process ended, it could find nothing, answer 503,
    and the batch commit after: an order made behind a "nothing was created".
    """
    repository = await Repository.connect(database_url, 2, 1.0)
    ids = [uuid4()]
    frozen: int | None = None
    try:
        async with repository._intake_connection() as connection:
            frozen = connection.get_server_pid()
        os.kill(frozen, signal.SIGSTOP)
        with pytest.raises(CommitUnanswered) as unanswered:
            await repository.create_orders([NewOrder(request=REQUEST)], ids)
        reading = asyncio.create_task(repository.created_orders(ids, unanswered.value.server_pid))
        await asyncio.sleep(0.3)
        assert not reading.done(), "read back while the batch could still commit"
        os.kill(frozen, signal.SIGCONT)
        frozen = None
        found = await reading
        stored = await repository.created_orders(ids)
    finally:
        if frozen is not None:
            os.kill(frozen, signal.SIGCONT)
        await repository.close()

    assert found.keys() == stored.keys()
