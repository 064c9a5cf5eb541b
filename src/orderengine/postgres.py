"""Connections to PostgreSQL, shared by the engine's repository and the simulated chain.

Each opens its own pool through here, so that both map a database that cannot be reached to
the same `DatabaseUnavailable`, and neither knows the other's tables. The engine's stores
share its pool, each a `Store` on it. A caller that sends one statement after another, all
day, may have a `DedicatedConnection` instead.
"""

from __future__ import annotations

import asyncio
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
    asyncpg.InternalClientError,
    asyncpg.TooManyConnectionsError,
)
"""Errors that mean the database cannot be reached right now, not that a statement is wrong.

`InternalClientError` is among them: a connection the server ended (a restart, an
administrator's `pg_terminate_backend`) says so first and closes after, and a statement sent
between the two is refused by asyncpg itself, before anything is sent, as "another operation
is in progress" (asyncpg's issue 1069)."""

IN_DOUBT: tuple[type[BaseException], ...] = (asyncio.CancelledError, *CONNECTION_ERRORS)
"""Errors that leave a connection in doubt: a statement may still be under way on it."""

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


def session_settings(timeout_s: float) -> dict[str, str]:
    """What the server enforces on the engine's sessions, for a statement timeout `timeout_s`.

    A transaction idle for twice that is ended by the server, and its locks let go: its
    engine is frozen (stopped, swapped out, cut off), since between its statements it never
    waits for anything else. Held, its locks (an order's row, a pool's on the chain) would
    stop every other engine's work on them for as long as it stays frozen.
    """
    return {"idle_in_transaction_session_timeout": str(int(2 * timeout_s * 1000))}


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
            server_settings=session_settings(timeout_s),
        )
    except CONNECTION_ERRORS as error:
        raise DatabaseUnavailable("database unavailable") from error


@asynccontextmanager
async def acquire(pool: asyncpg.Pool, timeout_s: float) -> AsyncIterator[Connection]:
    """A connection from `pool`; a database out of reach is `DatabaseUnavailable`.

    A connection left in doubt (its statement timed out or was cancelled, or it failed
    mid-answer) is closed rather than given back: the pool would first wait, up to
    `timeout_s` more, for a server that does not answer to confirm the cancellation, and a
    request would be answered only after twice the timeout.

    A caller being cancelled ends cancelled: the pool's timeout would otherwise replace the
    cancellation, which loops that carry on through outages (the watchers, the lease
    renewer) would then never see.
    """
    try:
        async with pool.acquire(timeout=timeout_s) as connection:
            try:
                yield connection
            except IN_DOUBT:
                connection.terminate()
                raise
    except CONNECTION_ERRORS as error:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise asyncio.CancelledError from error
        raise DatabaseUnavailable("database unavailable") from error


class Store:
    """A set of statements on the engine's database, each on a connection of `pool`'s.

    The engine's stores (the repository's orders, the keys, the feed ...) share one pool, so
    that a database out of reach is the same `DatabaseUnavailable` to all of them (`acquire`).
    """

    def __init__(self, pool: asyncpg.Pool, timeout_s: float) -> None:
        self._pool = pool
        self._timeout_s = timeout_s

    @property
    def timeout_s(self) -> float:
        """The longest a statement or a connection may take; past it, the store is out of reach."""
        return self._timeout_s

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[Connection]:
        async with acquire(self._pool, self._timeout_s) as connection:
            yield connection


def refused_by_server(error: BaseException) -> bool:
    """Whether a statement that failed with `error` was answered, and refused, by the server.

    Its connection is then as it was before the statement. Anything else (a lost connection,
    a timeout, a cancelled caller, the server going down while answering) leaves the
    connection in doubt: a statement may still be under way on it.
    """
    return isinstance(error, asyncpg.PostgresError) and not isinstance(
        error, asyncpg.PostgresConnectionError | asyncpg.OperatorInterventionError
    )


class DedicatedConnection:
    """One connection outside any pool, for a caller that sends one statement at a time, often.

    Taking a connection from a pool and giving it back costs tens of microseconds of the
    event loop per statement, which a caller on the hot path of every request feels. This
    one is opened by `open` or its first use, and again by the use after it was closed (by a
    database restart, say). A use that ends in any error but the server's refusal of the
    statement (`refused_by_server`) closes it at once: a statement may still be under way on
    it, and the next use must not find it busy. Uses wait for each other, so that two never
    share it. Once `close` is called, it is not opened again.
    """

    def __init__(self, dsn: str, timeout_s: float) -> None:
        self._dsn = dsn
        self._timeout_s = timeout_s
        self._connection: asyncpg.Connection[asyncpg.Record] | None = None
        self._in_use = asyncio.Lock()
        self._closed = False

    async def open(self, timeout_s: float | None = None) -> None:
        """Open the connection now if it is not, trying for `timeout_s` (by default, its own).

        At start, so that a server with no room for it is found then; and before a use that
        must not wait a whole timeout for a server that does not answer.
        """
        async with self._in_use:
            await self._open(timeout_s)

    @asynccontextmanager
    async def use(self) -> AsyncIterator[asyncpg.Connection[asyncpg.Record]]:
        """The connection, opened if need be; a database out of reach is `DatabaseUnavailable`."""
        async with self._in_use:
            connection = await self._open()
            try:
                yield connection
            except BaseException as error:
                if not refused_by_server(error):
                    self._drop()
                raise

    async def close(self) -> None:
        """Close the connection once no one uses it, or at once if it does not answer."""
        async with self._in_use:
            self._closed = True
            connection, self._connection = self._connection, None
            if connection is None:
                return
            try:
                await connection.close(timeout=self._timeout_s)
            except CONNECTION_ERRORS:
                connection.terminate()

    async def _open(self, timeout_s: float | None = None) -> asyncpg.Connection[asyncpg.Record]:
        if self._closed:
            raise DatabaseUnavailable("the connection is closed: the engine is stopping")
        if self._connection is not None and not self._connection.is_closed():
            return self._connection
        try:
            connection: asyncpg.Connection[asyncpg.Record] = await asyncpg.connect(
                self._dsn,
                timeout=self._timeout_s if timeout_s is None else timeout_s,
                command_timeout=self._timeout_s,
                server_settings=session_settings(self._timeout_s),
            )
        except CONNECTION_ERRORS as error:
            raise DatabaseUnavailable("database unavailable") from error
        try:
            await _init_connection(connection)
        except BaseException as error:
            connection.terminate()
            if isinstance(error, CONNECTION_ERRORS):
                raise DatabaseUnavailable("database unavailable") from error
            raise
        self._connection = connection
        return connection

    def _drop(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.terminate()
