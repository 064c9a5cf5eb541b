"""The token buckets every engine on a database shares, one row of `rate_limit` each.

The engines' swap attempts draw from one (`limiter.ATTEMPTS_BUCKET`), through a
`limiter.SharedTokenBucket`, to which this store is its `RateStore`. Each key's submissions
have buckets of their own, taken from by the statement that commits new orders
(`Repository.create_orders`), not here.
"""

from __future__ import annotations

from orderengine.postgres import Store


class BucketStore(Store):
    """The table `rate_limit`."""

    async def take_rate_token(
        self, name: str, per_second: float, burst: int, count: int = 1
    ) -> float:
        """Take `count` tokens from the shared bucket `name`; the tokens left, negative in debt.

        One statement, so engines taking at once are served one after the other (under the
        row's lock): the bucket is refilled for the time since it was last touched, at
        `per_second` and up to `burst`, `count` tokens are taken, and the result stored, all by
        the database's clock, read once. A new bucket starts with `burst`. A taker whose
        clock reading is older than the stored one refills nothing (it was served after
        the refill up to that moment). A debt is repaid after `-tokens / per_second` seconds.
        """
        async with self._connection() as connection:
            tokens = await connection.fetchval(
                """
                INSERT INTO rate_limit AS bucket (name, tokens, updated_at)
                VALUES ($1, $3::float8 - $4::integer, clock_timestamp())
                ON CONFLICT (name) DO UPDATE SET
                    tokens = LEAST(
                        $3::float8,
                        bucket.tokens + $2::float8 * GREATEST(
                            0, EXTRACT(EPOCH FROM excluded.updated_at - bucket.updated_at)
                        )::float8
                    ) - $4::integer,
                    updated_at = GREATEST(bucket.updated_at, excluded.updated_at)
                RETURNING tokens
                """,
                name,
                per_second,
                burst,
                count,
            )
        return float(tokens)

    async def return_rate_token(self, name: str) -> None:
        """Give one token back to the shared bucket `name` (a wait that was cancelled).

        The next take caps the bucket at its burst, so a refund never lets it overflow.
        """
        async with self._connection() as connection:
            await connection.execute(
                "UPDATE rate_limit SET tokens = tokens + 1 WHERE name = $1", name
            )
