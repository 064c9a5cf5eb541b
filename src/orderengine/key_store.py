"""The API keys stored in the database: made by `python -m orderengine keys`, used by engines.

Only a key's SHA-256 is stored, under a name no other active key has. Creating or revoking
one tells every engine on the database (a NOTIFY on `KEYS_CHANNEL`, in the same transaction),
and each reloads the keys in force (`access.KeyRing`).
"""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

import asyncpg

from orderengine.errors import KeyNameTaken
from orderengine.notifications import KEYS_CHANNEL
from orderengine.postgres import Store


class StoredKey(NamedTuple):
    """An API key as `keys list` shows it: its name and dates, never the key or its hash."""

    name: str
    created_at: datetime
    revoked_at: datetime | None


class KeySet(NamedTuple):
    """The keys an engine admits, and whether the database ever held one."""

    active: dict[str, str]
    """The name of every key not revoked, by the key's hash."""
    created: bool
    """Whether a key was ever created on the database, revoked since or not."""


class KeyStore(Store):
    """The table `api_keys`."""

    async def create(self, name: str, key_hash: str) -> None:
        """Store a new API key by its hash, under a name no active key has; tell the engines.

        Raises `KeyNameTaken` if an active key has the name.
        """
        async with self._connection() as connection, connection.transaction():
            try:
                await connection.execute(
                    "INSERT INTO api_keys (key_hash, name) VALUES ($1, $2)", key_hash, name
                )
            except asyncpg.UniqueViolationError:
                raise KeyNameTaken(f"an active key is named {name!r}") from None
            await connection.execute("SELECT pg_notify($1, $2)", KEYS_CHANNEL, name)

    async def revoke(self, name: str) -> bool:
        """Revoke the active key named `name`, and tell the engines; whether there was one."""
        async with self._connection() as connection:
            revoked = await connection.fetchval(
                f"""
                WITH revoked AS (
                    UPDATE api_keys SET revoked_at = clock_timestamp()
                    WHERE name = $1 AND revoked_at IS NULL
                    RETURNING name
                )
                SELECT count(*) > 0 FROM revoked, LATERAL (
                    SELECT pg_notify('{KEYS_CHANNEL}', $1)
                ) AS told
                """,
                name,
            )
        return bool(revoked)

    async def stored(self) -> list[StoredKey]:
        """Every key ever created, active ones first, by name; never the hashes."""
        async with self._connection() as connection:
            rows = await connection.fetch(
                "SELECT name, created_at, revoked_at FROM api_keys"
                " ORDER BY revoked_at IS NOT NULL, name, created_at"
            )
        return [StoredKey(row["name"], row["created_at"], row["revoked_at"]) for row in rows]

    async def key_set(self) -> KeySet:
        """The keys not revoked, and whether any key, revoked or not, was ever created."""
        async with self._connection() as connection:
            rows = await connection.fetch(
                "SELECT key_hash, name, revoked_at IS NULL AS active FROM api_keys"
            )
        active = {row["key_hash"]: row["name"] for row in rows if row["active"]}
        return KeySet(active, created=bool(rows))
