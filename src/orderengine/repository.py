"""Every SQL statement of the engine: orders, their events, and the venues' ledger.

A status change and its event are one statement, hence one transaction: the guarded
`UPDATE … WHERE status = ANY(sources)` bumps the order's `last_seq` under its row lock and the
event is inserted with that number, so seqs are contiguous and a refused change writes nothing.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from decimal import Decimal
from importlib import resources
from typing import Any, Self, TypeAlias
from uuid import UUID, uuid4

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from orderengine.domain import (
    Execution,
    NewOrder,
    Order,
    OrderEvent,
    OrderStatus,
    TransactionState,
    TransactionStatus,
    sources_of,
)
from orderengine.errors import (
    DatabaseUnavailable,
    IdempotencyConflict,
    InvalidTransition,
    OrderNotFound,
)

CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.OperatorInterventionError,
    asyncpg.InterfaceError,
    asyncpg.TooManyConnectionsError,
)
"""Errors that mean the database cannot be reached right now, not that a statement is wrong."""

SCHEMA_LOCK = 7_207_001
ORDER_COLUMNS = """
    id AS order_id, type, token_in, token_out, amount_in, slippage_bps, status, attempt,
    dex, tx_hash, executed_price, amount_out, error, created_at, updated_at"""
EVENT_COLUMNS = "order_id, seq, status, attempt, at, details"

Connection: TypeAlias = "PoolConnectionProxy[asyncpg.Record]"


async def _keep_connection(connection: asyncpg.Connection) -> None:
    """Nothing to reset when a connection goes back to the pool: the repository never sets
    session state, listens, or takes session-level locks. asyncpg's default reset would cost
    a round trip per statement."""


async def _init_connection(connection: asyncpg.Connection) -> None:
    await connection.set_type_codec(
        "jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
    )


def _order(row: Mapping[str, Any] | asyncpg.Record) -> Order:
    return Order.model_validate(dict(row))


def _event(row: Mapping[str, Any] | asyncpg.Record) -> OrderEvent:
    return OrderEvent.model_validate(dict(row))


class Repository:
    """The engine's only door to PostgreSQL."""

    def __init__(self, pool: asyncpg.Pool, timeout_s: float) -> None:
        self._pool = pool
        self._timeout_s = timeout_s

    @classmethod
    async def connect(cls, dsn: str, size: int, timeout_s: float) -> Self:
        """Open a pool and apply the schema; both survive the database restarting later."""
        pool = await asyncpg.create_pool(
            dsn,
            min_size=1,
            max_size=size,
            init=_init_connection,
            reset=_keep_connection,
            command_timeout=timeout_s,
            timeout=timeout_s,
        )
        repository = cls(pool, timeout_s)
        await repository.apply_schema()
        return repository

    async def close(self) -> None:
        await self._pool.close()

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[Connection]:
        try:
            async with self._pool.acquire(timeout=self._timeout_s) as connection:
                yield connection
        except CONNECTION_ERRORS as error:
            raise DatabaseUnavailable(f"database unavailable: {error!r}") from error

    async def apply_schema(self) -> None:
        """Create what is missing; an advisory lock keeps concurrent starts from racing."""
        schema = resources.files("orderengine").joinpath("schema.sql").read_text()
        async with self._connection() as connection, connection.transaction():
            await connection.execute("SELECT pg_advisory_xact_lock($1)", SCHEMA_LOCK)
            await connection.execute(schema)

    async def ping(self) -> None:
        async with self._connection() as connection:
            await connection.fetchval("SELECT 1")

    async def create_orders(
        self, batch: Sequence[NewOrder]
    ) -> list[tuple[Order, bool] | IdempotencyConflict]:
        """Commit new pending orders, each with its first event, in one statement.

        For each order, in the batch's order: `(order, True)` when it was created. An
        idempotency key already used (earlier, or by an earlier order of the same batch) writes
        nothing and gives `(earlier order, False)` when the body is the same, or a conflict.
        """
        ids = [uuid4() for _ in batch]
        async with self._connection() as connection:
            rows = await connection.fetch(
                f"""
                WITH o AS (
                    INSERT INTO orders (id, type, token_in, token_out, amount_in, slippage_bps,
                                        status, idempotency_key, request_digest)
                    SELECT id, type, token_in, token_out, amount_in, slippage_bps,
                           'pending', idempotency_key, request_digest
                    FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::numeric[],
                                $6::integer[], $7::text[], $8::text[])
                         WITH ORDINALITY AS new (id, type, token_in, token_out, amount_in,
                                                 slippage_bps, idempotency_key, request_digest, n)
                    ORDER BY n
                    ON CONFLICT (idempotency_key) DO NOTHING
                    RETURNING *
                ), e AS (
                    INSERT INTO order_events (order_id, seq, status, attempt, at)
                    SELECT id, 1, status, attempt, created_at FROM o
                )
                SELECT {ORDER_COLUMNS} FROM o
                """,
                ids,
                [new.request.type for new in batch],
                [new.request.token_in for new in batch],
                [new.request.token_out for new in batch],
                [new.request.amount_in for new in batch],
                [new.request.slippage_bps for new in batch],
                [new.idempotency_key for new in batch],
                [new.digest for new in batch],
            )
            created = {row["order_id"]: _order(row) for row in rows}
            return [
                (created[order_id], True)
                if order_id in created
                else await self._earlier(connection, new)
                for order_id, new in zip(ids, batch, strict=True)
            ]

    @staticmethod
    async def _earlier(
        connection: Connection, new: NewOrder
    ) -> tuple[Order, bool] | IdempotencyConflict:
        """The order that already holds `new`'s idempotency key, if the bodies agree."""
        row = await connection.fetchrow(
            f"SELECT {ORDER_COLUMNS}, request_digest FROM orders WHERE idempotency_key = $1",
            new.idempotency_key,
        )
        assert row is not None, "only an idempotency key can keep an order from being created"
        earlier = dict(row)
        if earlier.pop("request_digest") != new.digest:
            return IdempotencyConflict(
                "this Idempotency-Key was used with a different order body",
                details={"orderId": str(earlier["order_id"])},
            )
        return _order(earlier), False

    async def get_order(self, order_id: UUID) -> Order:
        async with self._connection() as connection:
            row = await connection.fetchrow(
                f"SELECT {ORDER_COLUMNS} FROM orders WHERE id = $1", order_id
            )
        if row is None:
            raise OrderNotFound(f"no order {order_id}")
        return _order(row)

    async def events(self, order_id: UUID, after: int = 0) -> list[OrderEvent]:
        async with self._connection() as connection:
            rows = await connection.fetch(
                f"SELECT {EVENT_COLUMNS} FROM order_events WHERE order_id = $1 AND seq > $2"
                " ORDER BY seq",
                order_id,
                after,
            )
        return [_event(row) for row in rows]

    async def list_orders(
        self, status: OrderStatus | None, before: int | None, limit: int
    ) -> tuple[list[Order], int | None]:
        """Newest first; the second value is the cursor of the next page, if there is one."""
        async with self._connection() as connection:
            rows = await connection.fetch(
                f"""
                SELECT {ORDER_COLUMNS}, position FROM orders
                WHERE ($1::text IS NULL OR status = $1) AND ($2::bigint IS NULL OR position < $2)
                ORDER BY position DESC LIMIT $3
                """,
                status,
                before,
                limit + 1,
            )
        page = rows[:limit]
        cursor = page[-1]["position"] if len(rows) > limit else None
        return [_order({k: v for k, v in row.items() if k != "position"}) for row in page], cursor

    async def unfinished(self) -> list[UUID]:
        """Ids of every order not yet terminal, in the order they were accepted."""
        async with self._connection() as connection:
            rows = await connection.fetch(
                "SELECT id FROM orders WHERE status NOT IN ('confirmed', 'failed')"
                " ORDER BY position"
            )
        return [row["id"] for row in rows]

    async def transition(
        self,
        order_id: UUID,
        status: OrderStatus,
        details: Mapping[str, Any] | None = None,
        *,
        attempt: int | None = None,
        error: str | None = None,
        dex: str | None = None,
        tx_hash: str | None = None,
        execution: Execution | None = None,
    ) -> OrderEvent:
        """Move an order to `status` and append its event, atomically; refuse what
        the transition table forbids."""
        async with self._connection() as connection:
            row = await connection.fetchrow(
                f"""
                WITH o AS (
                    UPDATE orders SET
                        status = $2,
                        attempt = COALESCE($3, attempt),
                        error = CASE WHEN $2 = 'confirmed' THEN NULL ELSE COALESCE($4, error) END,
                        tx_hash = COALESCE($5, tx_hash),
                        dex = COALESCE($6, dex),
                        executed_price = COALESCE($7, executed_price),
                        amount_out = COALESCE($8, amount_out),
                        last_seq = last_seq + 1,
                        updated_at = clock_timestamp()
                    WHERE id = $1 AND status = ANY($9::text[])
                    RETURNING id, last_seq, status, attempt, updated_at
                )
                INSERT INTO order_events (order_id, seq, status, attempt, at, details)
                SELECT id, last_seq, status, attempt, updated_at, $10 FROM o
                RETURNING {EVENT_COLUMNS}
                """,
                order_id,
                status,
                attempt,
                error,
                tx_hash,
                execution.dex if execution else dex,
                execution.executed_price if execution else None,
                execution.amount_out if execution else None,
                [str(source) for source in sources_of(status)],
                dict(details or {}),
            )
            if row is not None:
                return _event(row)
            current = await connection.fetchval("SELECT status FROM orders WHERE id = $1", order_id)
        if current is None:
            raise OrderNotFound(f"no order {order_id}")
        raise InvalidTransition(f"order {order_id} cannot go from {current} to {status}")

    async def record_transaction(
        self, signature: str, dex: str, order_id: UUID, outcome: Execution | str
    ) -> None:
        """Write a venue's outcome for a signature: its execution, or why it was rejected.

        The signature is the primary key, so no signature is ever processed twice.
        """
        execution = outcome if isinstance(outcome, Execution) else None
        async with self._connection() as connection:
            await connection.execute(
                """
                INSERT INTO venue_transactions (signature, dex, order_id, landed, amount_in,
                                                amount_out, executed_price, fee, error)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                """,
                signature,
                dex,
                order_id,
                execution is not None,
                *_execution_amounts(execution),
                None if execution else outcome,
            )

    async def find_transaction(self, signature: str) -> TransactionStatus | None:
        """The ledger's record of a signature, or None if it was never processed."""
        async with self._connection() as connection:
            row = await connection.fetchrow(
                "SELECT * FROM venue_transactions WHERE signature = $1", signature
            )
        if row is None:
            return None
        if not row["landed"]:
            return TransactionStatus(
                signature=signature, state=TransactionState.REJECTED, error=row["error"]
            )
        execution = Execution(
            dex=row["dex"],
            tx_hash=signature,
            amount_in=row["amount_in"],
            amount_out=row["amount_out"],
            executed_price=row["executed_price"],
            fee=row["fee"],
        )
        return TransactionStatus(
            signature=signature, state=TransactionState.LANDED, execution=execution
        )

    async def landed_signatures(self, order_ids: Sequence[UUID]) -> dict[UUID, list[str]]:
        """For each order, the signatures the venues executed for it."""
        async with self._connection() as connection:
            rows = await connection.fetch(
                "SELECT order_id, signature FROM venue_transactions"
                " WHERE landed AND order_id = ANY($1::uuid[]) ORDER BY at",
                list(order_ids),
            )
        landed: dict[UUID, list[str]] = {order_id: [] for order_id in order_ids}
        for row in rows:
            landed[row["order_id"]].append(row["signature"])
        return landed


def _execution_amounts(execution: Execution | None) -> tuple[Decimal | None, ...]:
    if execution is None:
        return (None, None, None, None)
    return (execution.amount_in, execution.amount_out, execution.executed_price, execution.fee)
