"""The engine's schema, grown by numbered migrations recorded in the database.

Each file `sql/NNN_name.sql` is applied once, in order, and recorded in `schema_migrations`
in the same transaction, so a column can be added to a database that already holds orders.
An advisory lock keeps engines that start together from racing. `schema.sql` at the top of
the repository is the sum of all migrations, for reading and for `psql -f`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

import structlog

from orderengine.postgres import AnyConnection

log = structlog.get_logger(__name__)

MIGRATION_LOCK = 7_207_001
FILE_NAME = re.compile(r"^(\d{3})_(\w+)\.sql$")


@dataclass(frozen=True)
class Migration:
    """One numbered step of the schema."""

    version: int
    name: str
    sql: str


def migrations() -> list[Migration]:
    """Every migration shipped with the package, in order."""
    found = []
    for entry in resources.files("orderengine.sql").iterdir():
        match = FILE_NAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text()))
    return sorted(found, key=lambda migration: migration.version)


async def migrate(connection: AnyConnection) -> list[Migration]:
    """Apply the migrations this database has not had yet; the ones applied now."""
    async with connection.transaction():
        await connection.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
        await connection.execute(
            """
            CREATE TABLE IF NOT EXISTS schema_migrations (
                version    integer PRIMARY KEY,
                name       text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now()
            )
            """
        )
        applied = {
            row["version"]
            for row in await connection.fetch("SELECT version FROM schema_migrations")
        }
        pending = [m for m in migrations() if m.version not in applied]
        for migration in pending:
            await connection.execute(migration.sql)
            await connection.execute(
                "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                migration.version,
                migration.name,
            )
            log.info("migration_applied", version=migration.version, name=migration.name)
    return pending
