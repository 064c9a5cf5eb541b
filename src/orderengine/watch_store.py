"""What the orders that wait are waiting for: the price watches, and the listings awaited.

A limit order waits for its pair's price: the pairs waited on are watched in `price_watch`,
each leased to one engine at a time, whose price watcher records the pair's price and so
wakes the orders it reaches (`watch_pairs`, `watched_price`). A sniper waits for a venue to
list its pair (`awaited_listings`, `wake_listed`). The watchers themselves, which ask the
venues, are `watchers.py`'s. A woken order is due again, and the engines are told
(`ORDERS_CHANNEL`) in the statement that woke it.
"""

from __future__ import annotations

from collections.abc import Collection
from decimal import Decimal
from uuid import UUID

import asyncpg

from orderengine.domain import OrderEvent
from orderengine.event_rows import EVENT_COLUMNS, event_from
from orderengine.notifications import ORDERS_CHANNEL
from orderengine.postgres import Store

WAITING_REPORT = """jsonb_build_object(
    'waiting', 'price', 'limitPrice', limit_price::text, 'bestPrice', best_price::text)"""
"""The details of a price watcher's news to an order waiting for its price."""


class WatchStore(Store):
    """The table `price_watch`, and the waiting orders in `orders`."""

    def __init__(self, pool: asyncpg.Pool, timeout_s: float, owner: UUID) -> None:
        super().__init__(pool, timeout_s)
        self._owner = owner
        """This engine's id: the holder of the watches it leases, and the source of its
        NOTIFYs."""

    async def watch_pairs(self, lease_s: float) -> list[tuple[str, str]]:
        """Lease the price watch of every pair limit orders wait on that no live engine watches.

        The pairs (tokenIn, tokenOut) this engine watches now, its leases renewed; a pair
        first waited on is added. A watch taken up afresh forgets the price last reported, so
        that its first price is reported to every order waiting on the pair. One statement,
        as watchers poll often: engines calling at once never lease the same pair, as the
        upsert's condition is read on the latest version of a row another one changed or
        added meanwhile.
        """
        async with self._connection() as connection:
            rows = await connection.fetch(
                """
                INSERT INTO price_watch AS watch (token_in, token_out, lease_owner,
                                                  lease_expires_at)
                SELECT token_in, token_out, $1::uuid,
                       clock_timestamp() + $2 * interval '1 second'
                FROM (SELECT DISTINCT token_in, token_out FROM orders
                      WHERE awaits = 'price' AND status = 'pending') AS waited
                ON CONFLICT (token_in, token_out) DO UPDATE
                SET lease_owner = excluded.lease_owner,
                    lease_expires_at = excluded.lease_expires_at,
                    reported_price = CASE WHEN watch.lease_owner = $1
                                           AND watch.lease_expires_at >= clock_timestamp()
                                          THEN watch.reported_price END
                WHERE watch.lease_owner IS NULL OR watch.lease_owner = $1
                      OR watch.lease_expires_at < clock_timestamp()
                RETURNING token_in, token_out
                """,
                self._owner,
                lease_s,
            )
        return sorted((row["token_in"], row["token_out"]) for row in rows)

    async def stop_watching(self) -> None:
        """Give up this engine's price watches, for another engine to take at once."""
        async with self._connection() as connection:
            await connection.execute(
                "UPDATE price_watch SET lease_owner = NULL, lease_expires_at = NULL"
                " WHERE lease_owner = $1",
                self._owner,
            )

    async def watched_price(
        self, token_in: str, token_out: str, best_price: Decimal, event_bps: float
    ) -> tuple[list[OrderEvent], int]:
        """Record a pair's best net price, and act on the orders waiting for theirs.

        One statement, only while this engine holds the pair's watch: every waiting order
        whose limit the price reaches is due again, ranked by how deep the price crossed
        it (`priority`, the limit over the price, kept within what a `real` holds: the lowest
        limits are claimed first),
        unless it went back to waiting a moment ago and its recheck time has not come. When
        the price has moved by `event_bps` or more since the one last reported, each other
        waiting order gets a `pending` event reporting it. Returns those events, and how many
        orders were woken (the engines are notified if any were).
        """
        async with self._connection() as connection:
            rows = await connection.fetch(
                f"""
                WITH watch AS (
                    UPDATE price_watch AS watch
                    SET best_price = $3, observed_at = clock_timestamp(),
                        reported_price = CASE
                            WHEN before.reported_price IS NULL
                              OR abs($3 - before.reported_price) * 10000
                                 >= $4::float8::numeric * before.reported_price
                            THEN $3 ELSE before.reported_price END
                    FROM price_watch AS before
                    WHERE (watch.token_in, watch.token_out) = ($1, $2)
                      AND (before.token_in, before.token_out) = ($1, $2)
                      AND watch.lease_owner = $5
                    RETURNING before.reported_price IS DISTINCT FROM watch.reported_price
                              AS report
                ), waiting AS (
                    SELECT id, limit_price FROM orders
                    WHERE awaits = 'price' AND status = 'pending'
                      AND (token_in, token_out) = ($1, $2)
                      AND (lease_owner IS NULL OR lease_expires_at < clock_timestamp())
                      AND EXISTS (SELECT FROM watch)
                    FOR UPDATE SKIP LOCKED
                ), crossed AS (
                    UPDATE orders SET awaits = NULL, due_since = clock_timestamp(),
                                      priority = GREATEST(waiting.limit_price / $3, 1e-30)
                    FROM waiting WHERE orders.id = waiting.id AND waiting.limit_price <= $3
                      AND (next_attempt_at IS NULL OR next_attempt_at <= clock_timestamp())
                    RETURNING orders.id
                ), reported AS (
                    UPDATE orders SET last_seq = last_seq + 1, best_price = $3,
                                      updated_at = clock_timestamp()
                    FROM waiting WHERE orders.id = waiting.id AND waiting.limit_price > $3
                      AND (SELECT report FROM watch)
                    RETURNING orders.*
                ), events AS (
                    INSERT INTO order_events (order_id, seq, status, attempt, at, details)
                    SELECT id, last_seq, status, attempt, updated_at, {WAITING_REPORT}
                    FROM reported
                    RETURNING {EVENT_COLUMNS}
                ), woken AS (
                    SELECT count(*) AS n FROM crossed
                )
                SELECT woken.n AS woken, events.*,
                       CASE WHEN woken.n > 0
                            THEN pg_notify('{ORDERS_CHANNEL}', $5::text) END AS notified
                FROM woken LEFT JOIN events ON true
                """,
                token_in,
                token_out,
                best_price,
                event_bps,
                self._owner,
            )
        woken = rows[0]["woken"] if rows else 0
        events = [event_from(row) for row in rows if row["order_id"] is not None]
        return events, woken

    async def awaited_listings(self) -> set[frozenset[str]]:
        """The pairs sniper orders wait for a venue to list."""
        async with self._connection() as connection:
            rows = await connection.fetch(
                "SELECT DISTINCT token_in, token_out FROM orders"
                " WHERE awaits = 'listing' AND status = 'pending'"
            )
        return {frozenset((row["token_in"], row["token_out"])) for row in rows}

    async def wake_listed(self, pairs: Collection[frozenset[str]]) -> int:
        """Make due every sniper order waiting for one of `pairs`, now listed; how many.

        They are claimed before any other order. The engines are notified if any woke.
        """
        first, second = zip(*(sorted(pair) for pair in pairs), strict=True) if pairs else ((), ())
        async with self._connection() as connection:
            woken = await connection.fetchval(
                f"""
                WITH woken AS (
                    UPDATE orders SET awaits = NULL, due_since = clock_timestamp(), priority = -1
                    FROM unnest($1::text[], $2::text[]) AS listed (first, second)
                    WHERE awaits = 'listing' AND status = 'pending'
                      AND (LEAST(token_in, token_out), GREATEST(token_in, token_out))
                          = (listed.first, listed.second)
                    RETURNING id
                )
                SELECT n, CASE WHEN n > 0 THEN pg_notify('{ORDERS_CHANNEL}', $3::text) END
                FROM (SELECT count(*) AS n FROM woken) AS counted
                """,
                list(first),
                list(second),
                str(self._owner),
            )
        return int(woken or 0)
