"""Connection pools to PostgreSQL, shared by the engine's repository and the simulated chain.

Each store opens its own pool through here, so that both map a database that cannot be
reached to the same `DatabaseUnavailable`, and neither knows the other's tables.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, TypeAlias

import asyncpg
import orjson
from asyncpg.pool import PoolConnectionProxy

from orderengine.errors import DatabaseUnavailable

CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.OperatorInterventionError,
    asyncpg.InterfaceError,
    asyncpg.TooManyConnectionsError,
)
"""Errors that mean the database cannot be reached right now, not that a statement is wrong."""

Connection: TypeAlias = "PoolConnectionProxy[asyncpg.Record]"
AnyConnection: TypeAlias = "asyncpg.Connection[asyncpg.Record] | Connection"
"""A pooled connection, or one opened on its own (as tests and tools do)."""


async def _keep_connection(connection: asyncpg.Connection) -> None:
    """Reset nothing when a connection goes back to the pool.

    The stores never set session state, listen, or take session-level locks, and asyncpg's
    default reset would cost a round trip per statement.
    """


def _json_text(value: Any) -> str:
    return orjson.dumps(value).decode()


async def _init_connection(connection: asyncpg.Connection) -> None:
    """Jsonb as Python values, through orjson: every status change writes an event's details."""
    await connection.set_type_codec(
        "jsonb", encoder=_json_text, decoder=orjson.loads, schema="pg_catalog"
    )


async def create_pool(dsn: str, size: int, timeout_s: float) -> asyncpg.Pool:
    """A pool of `size` connections, all opened now, that survives the database restarting.

    jsonb columns read as Python values. The connections are opened at once and kept, so that
    a burst (a thousand sockets opening, each reading its order) finds them ready: a
    connection opened during the burst costs its connect, its setup and asyncpg's first look
    at the types on the event loop, while every request in the burst waits.
    """
    try:
        return await asyncpg.create_pool(
            dsn,
            min_size=size,
            max_size=size,
            init=_init_connection,
            reset=_keep_connection,
            command_timeout=timeout_s,
            timeout=timeout_s,
        )
    except CONNECTION_ERRORS as error:
        raise DatabaseUnavailable("database unavailable") from error


@asynccontextmanager
async def acquire(pool: asyncpg.Pool, timeout_s: float) -> AsyncIterator[Connection]:
    """A connection from `pool`; a database out of reach is `DatabaseUnavailable`."""
    try:
        async with pool.acquire(timeout=timeout_s) as connection:
            yield connection
    except CONNECTION_ERRORS as error:
        raise DatabaseUnavailable("database unavailable") from error
