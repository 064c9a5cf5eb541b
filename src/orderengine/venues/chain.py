"""The simulated venues' chain: the ledger of every swap they processed, by signature.

It has its own store (the `chain` schema, its own SQL and its own connection pool) in the
engine's database, so that it outlives the engine as a real chain would, while knowing
nothing of the engine's tables: the engine learns what landed only by asking a venue.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from importlib import resources
from typing import Protocol, Self
from uuid import UUID

import asyncpg

from orderengine.postgres import acquire, create_pool
from orderengine.venues.values import Dex, Execution, TransactionState, TransactionStatus

SCHEMA_LOCK = 7_207_002
"""Advisory lock that keeps chains opened at once from creating the schema twice."""


class Ledger(Protocol):
    """Where a simulated venue writes the outcome of each signature and reads it back."""

    async def record(
        self, signature: str, dex: Dex, order_id: UUID, outcome: Execution | str
    ) -> None:
        """Write the outcome of a signature: its execution, or why it was rejected."""
        ...

    async def find(self, signature: str) -> TransactionStatus | None:
        """The outcome of a signature, or None if it was never processed."""
        ...


class Chain:
    """The ledger in PostgreSQL; the signature is the key, so none is processed twice."""

    def __init__(self, pool: asyncpg.Pool, timeout_s: float) -> None:
        self._pool = pool
        self._timeout_s = timeout_s

    @classmethod
    async def open(cls, dsn: str, size: int, timeout_s: float) -> Self:
        """Connect and create the chain's schema if it is missing."""
        chain = cls(await create_pool(dsn, size, timeout_s), timeout_s)
        ddl = resources.files("orderengine.venues").joinpath("chain.sql").read_text()
        async with acquire(chain._pool, timeout_s) as connection, connection.transaction():
            await connection.execute("SELECT pg_advisory_xact_lock($1)", SCHEMA_LOCK)
            await connection.execute(ddl)
        return chain

    async def close(self) -> None:
        await self._pool.close()

    async def record(
        self, signature: str, dex: Dex, order_id: UUID, outcome: Execution | str
    ) -> None:
        execution = outcome if isinstance(outcome, Execution) else None
        async with acquire(self._pool, self._timeout_s) as connection:
            await connection.execute(
                """
                INSERT INTO chain.transactions (signature, dex, order_id, landed, amount_in,
                                                amount_out, executed_price, fee, error)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                """,
                signature,
                dex,
                order_id,
                execution is not None,
                *_amounts(execution),
                None if execution else outcome,
            )

    async def find(self, signature: str) -> TransactionStatus | None:
        async with acquire(self._pool, self._timeout_s) as connection:
            row = await connection.fetchrow(
                "SELECT * FROM chain.transactions WHERE signature = $1", signature
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
        """For each order, the signatures that landed for it.

        This is how a test or an operator proves that no order was executed twice.
        """
        async with acquire(self._pool, self._timeout_s) as connection:
            rows = await connection.fetch(
                "SELECT order_id, signature FROM chain.transactions"
                " WHERE landed AND order_id = ANY($1::uuid[]) ORDER BY at",
                list(order_ids),
            )
        landed: dict[UUID, list[str]] = {order_id: [] for order_id in order_ids}
        for row in rows:
            landed[row["order_id"]].append(row["signature"])
        return landed


def _amounts(execution: Execution | None) -> tuple[Decimal | None, ...]:
    if execution is None:
        return (None, None, None, None)
    return (execution.amount_in, execution.amount_out, execution.executed_price, execution.fee)
