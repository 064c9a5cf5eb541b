"""Every SQL statement of the engine: its orders and their events.

A status change and its event are one statement, hence one transaction: the guarded
`UPDATE … WHERE status = ANY(sources)` bumps the order's `last_seq` under its row lock and the
event is inserted with that number, so seqs are contiguous and a refused change writes nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, Self, Unpack
from uuid import UUID, uuid4

import asyncpg

from orderengine.domain import (
    EventDetails,
    NewOrder,
    Order,
    OrderEvent,
    OrderStatus,
    TransitionFields,
    sources_of,
    unfinished_statuses,
)
from orderengine.errors import IdempotencyConflict, InvalidTransition, OrderNotFound
from orderengine.migrations import migrate
from orderengine.postgres import Connection, acquire, create_pool

ORDER_COLUMNS = """
    id AS order_id, type, token_in, token_out, amount_in, slippage_bps, status, attempt,
    dex, tx_hash, executed_price, amount_out, error, created_at, updated_at"""
EVENT_COLUMNS = "order_id, seq, status, attempt, at, details"


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
        """Open a pool and bring the schema up to date.

        The pool survives the database restarting later.
        """
        repository = cls(await create_pool(dsn, size, timeout_s), timeout_s)
        async with repository._connection() as connection:
            await migrate(connection)
        return repository

    async def close(self) -> None:
        await self._pool.close()

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[Connection]:
        async with acquire(self._pool, self._timeout_s) as connection:
            yield connection

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
        """The order's events with a seq above `after`, in order."""
        async with self._connection() as connection:
            rows = await connection.fetch(
                f"SELECT {EVENT_COLUMNS} FROM order_events WHERE order_id = $1 AND seq > $2"
                " ORDER BY seq",
                order_id,
                after,
            )
        return [_event(row) for row in rows]

    async def latest_event(self, order_id: UUID) -> OrderEvent | None:
        """The order's most recent event, if it has one."""
        async with self._connection() as connection:
            row = await connection.fetchrow(
                f"SELECT {EVENT_COLUMNS} FROM order_events WHERE order_id = $1"
                " ORDER BY seq DESC LIMIT 1",
                order_id,
            )
        return _event(row) if row is not None else None

    async def list_orders(
        self, status: OrderStatus | None, before: int | None, limit: int
    ) -> tuple[list[Order], int | None]:
        """Newest first; the second value is the cursor of the next page, if there is one."""
        async with self._connection() as connection:
            rows = await connection.fetch(
                f"""
                SELECT {ORDER_COLUMNS}, position FROM orders
                WHERE ($1::order_status IS NULL OR status = $1)
                  AND ($2::bigint IS NULL OR position < $2)
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
                "SELECT id FROM orders WHERE status = ANY($1::order_status[]) ORDER BY position",
                unfinished_statuses(),
            )
        return [row["id"] for row in rows]

    async def transition(
        self,
        order_id: UUID,
        status: OrderStatus,
        details: EventDetails | None = None,
        **fields: Unpack[TransitionFields],
    ) -> OrderEvent:
        """Move an order to `status` and append its event, atomically.

        A change the transition table forbids writes nothing and raises `InvalidTransition`.
        """
        execution = fields.get("execution")
        async with self._connection() as connection:
            row = await connection.fetchrow(
                f"""
                WITH o AS (
                    UPDATE orders SET
                        status = $2::order_status,
                        attempt = COALESCE($3, attempt),
                        error = CASE WHEN $2::order_status = 'confirmed' THEN NULL
                                     ELSE COALESCE($4, error) END,
                        tx_hash = COALESCE($5, tx_hash),
                        dex = COALESCE($6, dex),
                        executed_price = COALESCE($7, executed_price),
                        amount_out = COALESCE($8, amount_out),
                        last_seq = last_seq + 1,
                        updated_at = clock_timestamp()
                    WHERE id = $1 AND status = ANY($9::order_status[])
                    RETURNING id, last_seq, status, attempt, updated_at
                )
                INSERT INTO order_events (order_id, seq, status, attempt, at, details)
                SELECT id, last_seq, status, attempt, updated_at, $10 FROM o
                RETURNING {EVENT_COLUMNS}
                """,
                order_id,
                status,
                fields.get("attempt"),
                fields.get("error"),
                fields.get("tx_hash"),
                execution.dex if execution else fields.get("dex"),
                execution.executed_price if execution else None,
                execution.amount_out if execution else None,
                sources_of(status),
                details.stored() if details else {},
            )
            if row is not None:
                return _event(row)
            current = await connection.fetchval("SELECT status FROM orders WHERE id = $1", order_id)
        if current is None:
            raise OrderNotFound(f"no order {order_id}")
        raise InvalidTransition(f"order {order_id} cannot go from {current} to {status}")
