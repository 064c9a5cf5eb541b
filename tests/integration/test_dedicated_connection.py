"""A connection of its own, on the real database: kept while it is sound, replaced when in doubt.

Which connection a use got is told by its server process id (`pg_backend_pid()`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from orderengine.errors import DatabaseUnavailable
from orderengine.postgres import DedicatedConnection
from tests.engine_process import free_port
from tests.polling import eventually


@pytest.fixture
async def dedicated(database_url: str) -> AsyncIterator[DedicatedConnection]:
    connection = DedicatedConnection(database_url, 5.0)
    await connection.open()
    yield connection
    await connection.close()


@pytest.fixture
async def admin(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection of the test's own, to watch and end the dedicated one's server process."""
    connection = await asyncpg.connect(database_url)
    yield connection
    await connection.close()


async def until_backend(admin: asyncpg.Connection, pid: int, state: str | None) -> None:
    """Wait until the server shows process `pid` in `state`; None: until it is gone."""

    async def shown() -> bool:
        query = "SELECT state FROM pg_stat_activity WHERE pid = $1"
        return bool(await admin.fetchval(query, pid) == state)

    await eventually(shown)


async def backend(dedicated: DedicatedConnection) -> int:
    async with dedicated.use() as connection:
        pid: int = await connection.fetchval("SELECT pg_backend_pid()")
    return pid


async def test_uses_share_one_connection(dedicated: DedicatedConnection) -> None:
    assert await backend(dedicated) == await backend(dedicated)


async def test_a_statement_the_server_refuses_keeps_the_connection(
    dedicated: DedicatedConnection,
) -> None:
    before = await backend(dedicated)

    with pytest.raises(asyncpg.DivisionByZeroError):
        async with dedicated.use() as connection:
            await connection.fetchval("SELECT 1 / 0")

    assert await backend(dedicated) == before


async def test_a_use_cancelled_mid_statement_leaves_no_statement_under_way_for_the_next(
    dedicated: DedicatedConnection, admin: asyncpg.Connection
) -> None:
    before = await backend(dedicated)

    async def sleep_on_it() -> None:
        async with dedicated.use() as connection:
            await connection.execute("SELECT pg_sleep(10)")

    use = asyncio.create_task(sleep_on_it())
    await until_backend(admin, before, "active")
    use.cancel()
    with pytest.raises(asyncio.CancelledError):
        await use

    assert await backend(dedicated) != before


async def test_a_connection_the_server_ended_is_replaced_by_the_next_use(
    dedicated: DedicatedConnection, admin: asyncpg.Connection
) -> None:
    """Once the client has read the server's goodbye, the next use opens another connection.

    A use between the server's goodbye and its reading fails (`CONNECTION_ERRORS`); so the
    test waits for the reading, not only for the server process to be gone.
    """
    async with dedicated.use() as connection:
        before = await connection.fetchval("SELECT pg_backend_pid()")
    assert await admin.fetchval("SELECT pg_terminate_backend($1)", before)
    await until_backend(admin, before, None)

    async def closed() -> bool:
        return connection.is_closed()

    await eventually(closed)
    assert await backend(dedicated) != before


async def test_uses_wait_for_each_other(dedicated: DedicatedConnection) -> None:
    order: list[str] = []

    async def use(name: str, hold_s: float) -> None:
        async with dedicated.use() as connection:
            order.append(f"{name} in")
            await connection.execute(f"SELECT pg_sleep({hold_s})")
            order.append(f"{name} out")

    await asyncio.gather(use("first", 0.2), use("second", 0))

    assert order == ["first in", "first out", "second in", "second out"]


async def test_a_database_out_of_reach_is_unavailable() -> None:
    nowhere = DedicatedConnection(f"postgresql://postgres@127.0.0.1:{free_port()}/none", 1.0)

    with pytest.raises(DatabaseUnavailable):
        await nowhere.open()
    with pytest.raises(DatabaseUnavailable):
        async with nowhere.use():
            pass


async def test_once_closed_it_is_not_opened_again(database_url: str) -> None:
    dedicated = DedicatedConnection(database_url, 5.0)
    await dedicated.open()
    await dedicated.close()

    with pytest.raises(DatabaseUnavailable):
        async with dedicated.use():
            pass
