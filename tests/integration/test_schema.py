"""The schema, built by migrations or by schema.sql.

Both build the same database, and a database that already holds orders is migrated
without losing them.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from orderengine.app import OtherVenues, check_venues
from orderengine.domain import OrderStatus
from orderengine.migrations import migrate, migrations
from orderengine.repository import Repository
from orderengine.venues.chain import Chain
from tests.harness import new_database, with_database

SCHEMA_SQL = Path(__file__).parents[2] / "schema.sql"

CATALOG: dict[str, str] = {
    # Columns by name, not position: a migration appends a column that schema.sql shows
    # beside its kin.
    "columns": """
        SELECT table_name, column_name, data_type, udt_name, is_nullable,
               column_default, is_identity
        FROM information_schema.columns WHERE table_schema = 'public'
        ORDER BY table_name, column_name""",
    "constraints": """
        SELECT conrelid::regclass::text AS table_name, conname, contype,
               pg_get_constraintdef(oid) AS definition
        FROM pg_constraint WHERE connamespace = 'public'::regnamespace
        ORDER BY table_name, conname""",
    "indexes": """
        SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'
        ORDER BY tablename, indexname""",
    "types": """
        SELECT t.typname, e.enumsortorder, e.enumlabel
        FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid
        ORDER BY t.typname, e.enumsortorder""",
    "functions": """
        SELECT proname, pg_get_functiondef(oid) AS definition
        FROM pg_proc WHERE pronamespace = 'public'::regnamespace
        ORDER BY proname""",
    "migrations": "SELECT version, name FROM schema_migrations ORDER BY version",
}


@pytest.fixture
async def empty_database(server_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection to a new database with nothing in it."""
    connection = await asyncpg.connect(await new_database(server_url))
    yield connection
    await connection.close()


async def catalog(connection: asyncpg.Connection) -> dict[str, list[dict[str, Any]]]:
    return {
        part: [dict(row) for row in await connection.fetch(query)]
        for part, query in CATALOG.items()
    }


async def test_schema_sql_and_the_migrations_build_the_same_database(
    database_url: str, empty_database: asyncpg.Connection
) -> None:
    await empty_database.execute(SCHEMA_SQL.read_text())
    migrated = await asyncpg.connect(database_url)
    try:
        expected = await catalog(migrated)
    finally:
        await migrated.close()

    assert await catalog(empty_database) == expected
    assert [row["version"] for row in expected["migrations"]] == [m.version for m in migrations()]


async def test_a_database_from_schema_sql_needs_no_migration(
    empty_database: asyncpg.Connection,
) -> None:
    await empty_database.execute(SCHEMA_SQL.read_text())

    assert await migrate(empty_database) == []


async def test_the_database_names_the_statuses_the_engine_knows(
    empty_database: asyncpg.Connection,
) -> None:
    await empty_database.execute(SCHEMA_SQL.read_text())

    labels = await empty_database.fetch("SELECT unnest(enum_range(NULL::order_status)) AS s")

    assert [row["s"] for row in labels] == [status.value for status in OrderStatus]


async def test_a_database_holding_orders_from_the_first_migration_is_brought_up_to_date(
    server_url: str, empty_database: asyncpg.Connection
) -> None:
    first = migrations()[0]
    await empty_database.execute(first.sql)
    order_id = uuid.uuid4()
    await empty_database.execute(
        """
        INSERT INTO orders (id, type, token_in, token_out, amount_in, slippage_bps, status)
        VALUES ($1, 'market', 'SOL', 'USDC', 1.5, 50, 'submitted');
        """,
        order_id,
    )
    name = await empty_database.fetchval("SELECT current_database()")

    repository = await Repository.connect(with_database(server_url, name), 2, 5.0)
    try:
        order = await repository.get_order(order_id)
        unfinished = await repository.unfinished()
    finally:
        await repository.close()

    assert order.status is OrderStatus.SUBMITTED
    assert unfinished == [order_id]
    versions = await empty_database.fetch("SELECT version FROM schema_migrations")
    assert sorted(row["version"] for row in versions) == [m.version for m in migrations()]


async def test_the_chain_takes_over_a_ledger_kept_beside_the_orders_by_earlier_versions(
    server_url: str, empty_database: asyncpg.Connection
) -> None:
    await empty_database.execute(
        """
        CREATE TABLE venue_transactions (
            signature text PRIMARY KEY, dex text NOT NULL, order_id uuid NOT NULL,
            landed boolean NOT NULL, amount_in numeric, amount_out numeric,
            executed_price numeric, fee numeric, error text,
            at timestamptz NOT NULL DEFAULT now());
        CREATE INDEX venue_transactions_by_order ON venue_transactions (order_id);
        INSERT INTO venue_transactions (signature, dex, order_id, landed, error)
        VALUES ('sig', 'raydium', gen_random_uuid(), false, 'blockhash not found');
        """
    )
    name = await empty_database.fetchval("SELECT current_database()")

    chain = await Chain.open(with_database(server_url, name), 1, 5.0)
    try:
        found = await chain.find("sig")
    finally:
        await chain.close()

    assert found is not None
    assert found.error == "blockhash not found"
    assert await empty_database.fetchval("SELECT to_regclass('public.venue_transactions')") is None


async def test_an_owner_with_few_orders_is_read_by_their_own_index(database_url: str) -> None:
    """A key's page of orders, and its feed, read its own orders, not every owner's."""
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute(
            """
            INSERT INTO orders (id, type, token_in, token_out, amount_in, slippage_bps, status,
                                owner)
            SELECT gen_random_uuid(), 'market', 'SOL', 'USDC', 1, 50, 'confirmed', 'alice'
            FROM generate_series(1, 3000);
            ANALYZE orders;
            """
        )
        async with connection.transaction():
            page = await connection.fetch(
                "SELECT id FROM orders WHERE owner = $1 ORDER BY position DESC LIMIT 51", "carol"
            )
            scanned = await connection.fetchval(
                "SELECT pg_stat_get_xact_tuples_returned('orders'::regclass)"
            )
    finally:
        await connection.close()

    assert page == []
    assert scanned == 0, f"{scanned} orders of other owners were read to list none"


async def _database_at(server_url: str, connection: asyncpg.Connection, version: int) -> str:
    """The empty database brought to migration `version` as its engines then left it; its URL."""
    await connection.execute(
        "CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL,"
        " applied_at timestamptz NOT NULL DEFAULT now())"
    )
    for migration in migrations():
        if migration.version <= version:
            await connection.execute(migration.sql)
            await connection.execute(
                "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                migration.version,
                migration.name,
            )
    name = await connection.fetchval("SELECT current_database()")
    return with_database(server_url, name)


@pytest.mark.parametrize(("block_height", "held_for"), [(None, "simulated"), (312_000_123, "live")])
async def test_a_database_holding_orders_is_kept_for_the_venues_they_were_made_for(
    server_url: str, empty_database: asyncpg.Connection, block_height: int | None, held_for: str
) -> None:
    """An order sent live keeps the block height its swap could land by; a simulated one has none.

    Orders made for the simulated venues, taken up by live ones, would trade real funds.
    """
    url = await _database_at(server_url, empty_database, 15)
    await empty_database.execute(
        """
        INSERT INTO orders (id, type, token_in, token_out, amount_in, slippage_bps, status,
                            tx_last_valid_block_height)
        VALUES ($1, 'market', 'SOL', 'USDC', 1.5, 50, 'submitted', $2)
        """,
        uuid.uuid4(),
        block_height,
    )
    other = "live" if held_for == "simulated" else "simulated"

    repository = await Repository.connect(url, 2, 5.0)
    try:
        await check_venues(repository.shared, held_for)
        with pytest.raises(OtherVenues) as refused:
            await check_venues(repository.shared, other)
    finally:
        await repository.close()

    assert f"this database holds orders for {held_for} venues" in str(refused.value)


async def test_the_first_engine_on_an_empty_database_records_its_venues(
    database_url: str,
) -> None:
    repository = await Repository.connect(database_url, 2, 5.0)
    try:
        await check_venues(repository.shared, "live")
        await check_venues(repository.shared, "live")
        with pytest.raises(OtherVenues):
            await check_venues(repository.shared, "simulated")
    finally:
        await repository.close()
