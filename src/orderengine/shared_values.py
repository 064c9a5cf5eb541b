"""What every engine on one database shares, kept by the first to ask.

The secrets the engines share (the stream tokens' key, `access.StreamTokens`), and which
kind of venues, simulated or live, the database's orders are for (`app.check_venues`). Each
is asked for with the value this engine would give it; the first engine's value is kept, and
every engine gets the one kept, however many start together.
"""

from __future__ import annotations

from orderengine.postgres import Store


class SharedValues(Store):
    """The tables `engine_secrets` and `database_venues`."""

    async def secret(self, name: str, new: bytes) -> bytes:
        """The secret `name` every engine on the database shares; `new` if it had none.

        Two statements: when engines start together, the insert of one waits for the other's
        to commit and then does nothing, and only a later statement sees the row it committed.
        """
        async with self._connection() as connection:
            await connection.execute(
                "INSERT INTO engine_secrets (name, secret) VALUES ($1, $2)"
                " ON CONFLICT (name) DO NOTHING",
                name,
                new,
            )
            secret = await connection.fetchval(
                "SELECT secret FROM engine_secrets WHERE name = $1", name
            )
        return bytes(secret)

    async def venues_of_orders(self, venues: str) -> str:
        """The kind of venues the database's orders are for; `venues` if none was recorded.

        Two statements, for engines starting together, as `secret`.
        """
        async with self._connection() as connection:
            await connection.execute(
                "INSERT INTO database_venues (venues) VALUES ($1) ON CONFLICT DO NOTHING", venues
            )
            recorded = await connection.fetchval("SELECT venues FROM database_venues")
        return str(recorded)
