"""The orders' store, and the engine's door to its database.

Orders and their events, and the leases on them: new orders (taking from the keys' submission
buckets in the same statement), claims, renewals and releases, the backlog's count, every
status change, cancels, expiries, crash counts, and the reads of orders and events; `notify`
for the engine's other NOTIFYs. `connect` opens the pool and brings the schema up to date, and
the engine's other stores share that pool, each in a module named after what it stores: the API
keys (`keys`, `key_store.py`), the feed's positions (`feed`, `feed_store.py`), the price
watches and awaited listings (`watches`, `watch_store.py`), the shared token buckets
(`buckets`, `bucket_store.py`), and what every engine on the database shares, its secrets and
the kind of venues its orders are for (`shared`, `shared_values.py`). Only the migrations and
the simulated chain speak SQL apart from them.

A status change and its event are one statement, hence one transaction: the `UPDATE` names
the status and seq the caller saw and bumps the order's `last_seq` under its row lock, and the
event is inserted with that number, so seqs are contiguous and a refused change writes nothing.
Orders are claimed with a lease in one statement (`FOR UPDATE SKIP LOCKED`); a write that
makes orders available wakes the other engines with a NOTIFY in its own transaction, while
committed events are announced after their commit, many at once (`notify`, `Announcer`).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, NamedTuple, Self, Unpack
from uuid import UUID, uuid4

import asyncpg
import structlog

from orderengine.bucket_store import BucketStore
from orderengine.domain import (
    TRANSITIONS,
    Cancelled,
    EventDetails,
    Expired,
    NewOrder,
    Order,
    OrderEvent,
    OrderStatus,
    TransitionFields,
    cancellable_statuses,
    unfinished_statuses,
)
from orderengine.errors import (
    DatabaseUnavailable,
    IdempotencyConflict,
    InvalidTransition,
    NotCancellable,
    OrderNotFound,
    StaleOrder,
    TooManyRequests,
)
from orderengine.event_rows import EVENT_COLUMNS, JOINED_EVENT_COLUMNS, event_from
from orderengine.events import REPLAY_PAGE
from orderengine.feed_store import FeedStore
from orderengine.grouping import Grouped, each_alone
from orderengine.key_store import KeyStore
from orderengine.limiter import SubmitRate
from orderengine.migrations import migrate
from orderengine.notifications import ORDERS_CHANNEL
from orderengine.postgres import (
    AnyConnection,
    DedicatedConnection,
    Store,
    create_pool,
    refused_by_server,
)
from orderengine.shared_values import SharedValues
from orderengine.watch_store import WatchStore

log = structlog.get_logger(__name__)

ORDER_COLUMNS = """
    id AS order_id, type, token_in, token_out, amount_in, slippage_bps, status, attempt,
    last_seq, dex, tx_hash, tx_expires_at, tx_last_valid_block_height, tx_blockhash,
    executed_price, amount_out, error, next_attempt_at, limit_price, expires_at, awaits,
    best_price, owner, created_at, updated_at"""
ENDED_POLL_S = 0.02
"""How often a read-back looks whether the server process of an unanswered batch has ended."""
CHANGE_BATCH = 100
"""The most status changes committed in one statement."""
OPENING_BATCH = 100
"""The most sockets' opening reads (an order's owner and events) made in one statement."""
FIRST_DETAILS = """
    CASE awaits
        WHEN 'price' THEN jsonb_build_object(
            'waiting', 'price', 'limitPrice', limit_price::text, 'bestPrice', best_price::text)
        WHEN 'listing' THEN jsonb_build_object('waiting', 'listing', 'token', token_out)
        ELSE '{}'::jsonb
    END"""
"""A new order's first event's details, as `Waiting.first` writes them for the order."""
EXPIRED_ERROR_SQL = """'expired at '
    || to_char(expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
    || ' before it could execute'"""
"""An expired order's error, as `Expired.of` writes it (`EXPIRED_ERROR`, `EXPIRY_FORMAT`)."""


def _order(row: Mapping[str, Any] | asyncpg.Record) -> Order:
    return Order.model_validate(dict(row))


def _submissions(
    rows: Sequence[asyncpg.Record], rate: SubmitRate | None
) -> dict[int, TooManyRequests | None]:
    """The orders of a batch, by index, that took a submission: refused, or None if granted."""
    if rate is None:
        return {}
    return {
        row["n"] - 1: rate.refusal(row["tokens"]) if row["refused"] else None
        for row in rows
        if row["id"] is None
    }


def _new_order(
    order_id: UUID, new: NewOrder, created_at: datetime, best_price: Decimal | None
) -> Order:
    """The order `new` became, as stored: made from what was asked, not read back.

    A new order is pending in its first attempt, at its first event, with nothing sent; the
    store gives it its time and, to one waiting for its price, the pair's last reported one.
    Reading the whole row back cost a fifth of a batch's CPU, and a test holds the two equal.
    """
    request = new.request
    return Order.model_validate(
        {
            "order_id": order_id,
            "type": request.type,
            "token_in": request.token_in,
            "token_out": request.token_out,
            "amount_in": request.amount_in,
            "slippage_bps": request.slippage_bps,
            "status": OrderStatus.PENDING,
            "attempt": 1,
            "last_seq": 1,
            "limit_price": request.limit_price,
            "expires_at": new.expires_at.astimezone(UTC) if new.expires_at else None,
            "awaits": new.awaits,
            "best_price": best_price,
            "owner": new.owner,
            "created_at": created_at,
            "updated_at": created_at,
        }
    )


def _appended(
    order: Order,
    details: dict[str, Any],
    *,
    seq: int | None = None,
    status: OrderStatus | None = None,
    attempt: int | None = None,
) -> OrderEvent:
    """An event a status change appended, read off the order it left.

    Its time, and by default its seq, status and attempt: a change through statuses appended
    an event for each before the last, with a seq and status of its own, in the attempt the
    order was in before the change.
    """
    return OrderEvent(
        order_id=order.order_id,
        seq=order.last_seq if seq is None else seq,
        status=order.status if status is None else status,
        attempt=order.attempt if attempt is None else attempt,
        at=order.updated_at,
        details=details,
    )


@dataclass(frozen=True)
class Change:
    """A status change to commit: from `order` through `steps`, with their stored details."""

    order: Order
    steps: list[OrderStatus]
    stored: list[dict[str, Any]]
    fields: TransitionFields

    def attempts(self) -> list[int | None]:
        """Each step's event's attempt; None for the last step's, which takes the change's.

        The steps passed through belong to the attempt the order was in; the last, to the
        one the change leaves it in (a retry's next one).
        """
        return [self.order.attempt] * (len(self.steps) - 1) + [None]


Changed = tuple[Order, list[OrderEvent]]
"""A committed change: the order as it now is, and the events it appended."""
Opening = tuple[str | None, list[OrderEvent]]
"""What a socket opening on an order reads first: the order's owner, and its events."""


def _ignore(events: list[OrderEvent]) -> None:
    """What is told of committed events until someone asks (`Repository.on_committed`)."""


def _change_columns(changes: Sequence[Change]) -> list[list[Any]]:
    """The per-change arrays of `_changed_rows`, $1 to $20, in order."""
    columns: list[list[Any]] = [[] for _ in range(20)]
    for change in changes:
        fields, execution = change.fields, change.fields.get("execution")
        status = change.steps[-1]
        release = fields.get("release", False)
        values = (
            change.order.order_id,
            str(status),
            fields.get("attempt"),
            fields.get("error"),
            fields.get("tx_hash"),
            fields.get("tx_expires_at"),
            fields.get("tx_last_valid_block_height"),
            execution.dex if execution else fields.get("dex"),
            execution.executed_price if execution else None,
            execution.amount_out if execution else None,
            fields.get("retry_after_s"),
            fields.get("awaits"),
            fields.get("best_price"),
            status.terminal,
            release,
            release and not status.terminal and "awaits" not in fields,
            str(change.order.status),
            change.order.last_seq,
            len(change.steps),
            fields.get("tx_blockhash"),
        )
        for column, value in zip(columns, values, strict=True):
            column.append(value)
    return columns


def _changed(change: Change, row: asyncpg.Record) -> Changed:
    moved = _order(_without_woken(row))
    first_seq = moved.last_seq - len(change.steps) + 1
    steps = zip(change.steps, change.stored, change.attempts(), strict=True)
    return moved, [
        _appended(moved, details, seq=first_seq + n, status=step, attempt=attempt)
        for n, (step, details, attempt) in enumerate(steps)
    ]


def _refusal(order: Order, current: asyncpg.Record | None) -> Exception:
    """Why a change of `order` changed nothing: it is gone, or it moved on, or is held."""
    if current is None:
        return OrderNotFound(f"no order {order.order_id}")
    return StaleOrder(
        f"order {order.order_id} is {current['status']} at seq {current['last_seq']},"
        f" leased to {current['lease_owner']}; this view: {order.status} at seq"
        f" {order.last_seq}"
    )


def _seconds(interval: Decimal | float | None) -> float | None:
    """Seconds from now, as a query gave them; None when nothing is due."""
    return float(interval) if interval is not None else None


def _expired_details(order: Order) -> dict[str, Any]:
    assert order.error is not None, "an expired order says why it failed"
    return Expired(error=order.error).stored()


Outcome = tuple[Order, bool] | IdempotencyConflict | DatabaseUnavailable | TooManyRequests
"""A new order's outcome in its batch: `(order, created)`, or refused for itself alone."""


class Backlog(NamedTuple):
    """The orders no engine works on, as `Repository.waiting` counts them."""

    due: int
    """Orders that may be claimed now (waiting ones are not counted)."""
    next_due_s: float | None
    """Seconds until one more may be claimed: a retry falls due, another engine's lease runs
    out; at most 0 when a retry fell due since the claim before the count; None if none
    will."""
    next_expiry_s: float | None
    """Seconds until a pending order expires (at most 0: one has); None if none will."""
    expired_leases: int
    """Orders whose lease ran out unrenewed, to give back (`release_expired`)."""


def _without_woken(row: asyncpg.Record) -> dict[str, Any]:
    """A row of a statement that also woke the other engines, without that column."""
    return {key: value for key, value in row.items() if key != "woken"}


def _too_late(order_id: UUID, status: OrderStatus) -> str:
    """Why an order in `status` can no longer be cancelled, in a client's words."""
    if status is OrderStatus.SUBMITTED:
        return f"order {order_id} is already submitted: its swap was sent and may land"
    return f"order {order_id} has already ended ({status})"


class CommitUnanswered(asyncpg.TransactionResolutionUnknownError):
    """A batch's statement was sent and its answer lost: whether it committed is unknown."""

    def __init__(self, server_pid: int) -> None:
        super().__init__(
            "the answer to the batch's statement was lost: whether the orders were created "
            "is unknown"
        )
        self.server_pid = server_pid
        """The server process the statement was sent to, where it may still run."""


class Repository(Store):
    """The orders' store; it opens the pool, and the engine's other stores, on it."""

    def __init__(self, pool: asyncpg.Pool, timeout_s: float, intake: DedicatedConnection) -> None:
        super().__init__(pool, timeout_s)
        self._intake = intake
        """New orders' connection: every POST waits for a batch's statement, one after
        another, and a connection of their own spares each the pool's taking and giving back."""
        self.owner = uuid4()
        """This engine's id: the owner of the leases it takes, and the source of its NOTIFYs."""
        self.keys = KeyStore(pool, timeout_s)
        """The API keys, on the same pool."""
        self.shared = SharedValues(pool, timeout_s)
        """What every engine on the database shares, on the same pool."""
        self.buckets = BucketStore(pool, timeout_s)
        """The token buckets every engine shares (the attempts'), on the same pool."""
        self.feed = FeedStore(pool, timeout_s)
        """The feed of all orders' positions, on the same pool."""
        self.watches = WatchStore(pool, timeout_s, self.owner)
        """What the waiting orders wait for, on the same pool."""
        self._changes: Grouped[Change, Changed] = Grouped(self._commit_and_tell, CHANGE_BATCH)
        """Status changes, committed in groups: those asked for while one is being committed
        go together in the next statement."""
        self._on_committed: Callable[[list[OrderEvent]], None] = _ignore
        """Told the events of each status change the moment its statement returns."""
        self._openings: Grouped[tuple[UUID, int], Opening] = Grouped(
            self._read_openings, OPENING_BATCH
        )
        """Sockets' opening reads, in groups: a thousand sockets opening at once share a few
        statements."""

    @classmethod
    async def connect(cls, dsn: str, size: int, timeout_s: float) -> Self:
        """Open a pool and bring the schema up to date.

        The pool survives the database restarting later.
        """
        pool = await create_pool(dsn, size, timeout_s)
        repository = cls(pool, timeout_s, DedicatedConnection(dsn, timeout_s))
        async with repository._connection() as connection:
            await migrate(connection)
        await repository._intake.open()
        return repository

    async def close(self) -> None:
        await self._intake.close()
        await self._pool.close()

    async def open_intake(self, within_s: float) -> None:
        """Open new orders' connection if it is not, giving up after `within_s`."""
        await self._intake.open(within_s)

    @asynccontextmanager
    async def _intake_connection(self) -> AsyncIterator[AnyConnection]:
        """The connection new orders are committed on, outside the pool (`DedicatedConnection`)."""
        async with self._intake.use() as connection:
            yield connection

    async def ping(self) -> None:
        async with self._connection() as connection:
            await connection.fetchval("SELECT 1")

    async def create_orders(
        self,
        batch: Sequence[NewOrder],
        ids: Sequence[UUID] | None = None,
        rate: SubmitRate | None = None,
    ) -> list[Outcome]:
        """Commit new pending orders, each with its first event, in one statement.

        One statement on its own is its own transaction: the batch costs one round trip, and
        one WAL flush. For each order, in the batch's order: `(order, True)` when it was
        created, with its id from `ids` (new ones when none are given). An idempotency key
        already used (earlier, or by an earlier order of the same batch) writes nothing and
        gives `(earlier order, False)` when the body is the same, or a conflict. The earlier
        order is looked up once the statement has committed (it exists then, and orders are
        never deleted); a look-up that cannot reach the store gives `DatabaseUnavailable` for
        that order alone, which is true, since it created nothing.

        With a `rate`, each owner's orders first take a submission each from the owner's
        bucket (the function `take_submissions`, migration 012), in the same statement: those
        beyond what the bucket holds, in the batch's order, write nothing and are
        `TooManyRequests`. Orders with no owner are not limited.

        When this raises, nothing was created, with one exception: when the statement may
        have run but its answer was lost (the connection dropped, a timeout), it raises
        `CommitUnanswered`, and `created_orders(ids, error.server_pid)` tells which of the
        orders exist.
        """
        ids = list(ids) if ids is not None else [uuid4() for _ in batch]
        async with self._intake_connection() as connection:
            server_pid = connection.get_server_pid()
            try:
                rows = await self._insert_orders(connection, batch, ids, rate)
            except Exception as error:
                if self._nothing_committed(error):
                    raise
                raise CommitUnanswered(server_pid) from error
        asked = dict(zip(ids, batch, strict=True))
        created = {
            row["id"]: _new_order(row["id"], asked[row["id"]], row["created_at"], row["best_price"])
            for row in rows
            if row["id"] is not None
        }
        submissions = _submissions(rows, rate)
        outcomes: list[Outcome] = []
        uncreated: Counter[str] = Counter()
        for n, (order_id, new) in enumerate(zip(ids, batch, strict=True)):
            refusal = submissions.get(n)
            if order_id in created:
                outcomes.append((created[order_id], True))
            elif refusal is not None:
                outcomes.append(refusal)
            else:
                earlier = await self.resent(new)
                assert earlier is not None, "only an idempotency key keeps an order from being made"
                outcomes.append(earlier)
                if n in submissions and new.owner is not None:
                    uncreated[new.owner] += 1
        if uncreated:
            await self._give_back_submissions(uncreated)
        return outcomes

    async def _give_back_submissions(self, owners: Counter[str]) -> None:
        """Give back to each owner's bucket the submissions its orders took but did not use.

        The batch's statement takes none for an order under an `Idempotency-Key` already
        taken when the statement began, or taken by an earlier order of the batch. A key
        another statement commits meanwhile (another engine's batch) is only found by the
        insert, after the order took its submission: that order, a resend or a conflict,
        gives it back here, as a client resending a lost answer must not spend its rate on
        it. A bucket's next take caps it at its burst, so no refund overflows it; one that
        fails leaves the submissions spent, so a key submits less, never more.
        """
        try:
            async with self._connection() as connection:
                await connection.execute(
                    """
                    UPDATE submission_buckets AS b SET tokens = b.tokens + r.count
                    FROM unnest($1::text[], $2::integer[]) AS r (owner, count)
                    WHERE b.owner = r.owner
                    """,
                    list(owners),
                    list(owners.values()),
                )
        except DatabaseUnavailable as error:
            log.warning("submissions_not_returned", owners=len(owners), error=error.message)

    async def resent(self, new: NewOrder) -> Outcome | None:
        """The order that already holds `new`'s idempotency key, if the bodies agree.

        None when `new` has no key, or no order holds it: `new` is no resend.
        """
        if new.idempotency_key is None:
            return None
        try:
            async with self._connection() as connection:
                row = await connection.fetchrow(
                    f"""
                    SELECT {ORDER_COLUMNS}, request_digest FROM orders
                    WHERE idempotency_key = $1 AND COALESCE(owner, '') = COALESCE($2, '')
                    """,
                    new.idempotency_key,
                    new.owner,
                )
        except DatabaseUnavailable as error:
            return error
        if row is None:
            return None
        earlier = dict(row)
        if earlier.pop("request_digest") != new.digest:
            return IdempotencyConflict(
                "this Idempotency-Key was used with a different order body",
                details={"orderId": str(earlier["order_id"])},
            )
        return _order(earlier), False

    async def _insert_orders(
        self,
        connection: AnyConnection,
        batch: Sequence[NewOrder],
        ids: list[UUID],
        rate: SubmitRate | None,
    ) -> list[asyncpg.Record]:
        """The batch's statement: the orders, their first events, and the engines woken.

        The engines are told how many of the new orders are due at once, for their backlogs.

        It also takes a lock named after the batch's first id, held until it commits, which
        `created_orders` waits for. With a `rate`, each owner's orders that may be created
        (under no `Idempotency-Key` already taken, by an order stored or earlier in the
        batch) first take a submission each from the owner's bucket, in the batch's order,
        and an order is stored only if the bucket granted it one. A row with no id tells, for
        each order (`n`, from 1) that took a submission, whether it was `refused`, and the
        tokens its bucket holds.
        """
        return await connection.fetch(
            f"""
            WITH batch AS (
                SELECT pg_advisory_xact_lock(hashtextextended((($1::uuid[])[1])::text, 0))
            ), new AS (
                SELECT *
                FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::numeric[],
                            $6::integer[], $7::text[], $8::text[], $9::numeric[],
                            $10::timestamptz[], $11::text[], $12::text[])
                     WITH ORDINALITY AS new (id, type, token_in, token_out, amount_in,
                                             slippage_bps, idempotency_key, request_digest,
                                             limit_price, expires_at, awaits, owner, n)
            ), counted AS (
                SELECT n, owner, row_number() OVER (PARTITION BY owner ORDER BY n) AS place
                FROM (
                    SELECT n, owner, idempotency_key,
                           row_number() OVER (PARTITION BY owner, idempotency_key
                                              ORDER BY n) AS use
                    FROM new WHERE owner IS NOT NULL AND $13::float8 IS NOT NULL
                ) AS owned
                WHERE idempotency_key IS NULL
                   OR (use = 1 AND NOT EXISTS (
                       SELECT FROM orders
                       WHERE COALESCE(orders.owner, '') = owned.owner
                         AND orders.idempotency_key = owned.idempotency_key))
            ), limits AS (
                SELECT taken.owner, taken.granted, taken.tokens
                FROM batch,
                     (SELECT array_agg(owner) AS owners, array_agg(asked) AS asked
                      FROM (SELECT owner, count(*)::integer AS asked
                            FROM counted GROUP BY owner) AS per_owner) AS wanted,
                     take_submissions(wanted.owners, wanted.asked, $13::float8,
                                      $14::float8) AS taken
            ), submissions AS (
                SELECT counted.n, counted.place > limits.granted AS refused, limits.tokens
                FROM counted JOIN limits USING (owner)
            ), o AS (
                INSERT INTO orders (id, type, token_in, token_out, amount_in, slippage_bps,
                                    status, idempotency_key, request_digest, limit_price,
                                    expires_at, awaits, best_price, priority, owner)
                SELECT id, type, new.token_in, new.token_out, amount_in, slippage_bps,
                       'pending', idempotency_key, request_digest, limit_price, expires_at,
                       awaits, CASE WHEN awaits = 'price' AND watch.lease_expires_at
                                         >= clock_timestamp() THEN watch.reported_price END,
                       CASE WHEN awaits IS NULL THEN 0 END, new.owner
                FROM batch, new
                     LEFT JOIN price_watch AS watch
                       ON (watch.token_in, watch.token_out) = (new.token_in, new.token_out)
                     LEFT JOIN submissions ON submissions.n = new.n
                WHERE submissions.refused IS NOT TRUE
                ORDER BY new.n
                ON CONFLICT ((COALESCE(owner, '')), idempotency_key) DO NOTHING
                RETURNING *
            ), e AS (
                INSERT INTO order_events (order_id, seq, status, attempt, at, details)
                SELECT id, 1, status, attempt, created_at, {FIRST_DETAILS} FROM o
            ), accepted AS (
                SELECT $15::text || ' ' || count(*) AS payload FROM o WHERE awaits IS NULL
            )
            SELECT id, created_at, best_price, pg_notify('{ORDERS_CHANNEL}', payload) AS woken,
                   NULL::bigint AS n, NULL::boolean AS refused, NULL::float8 AS tokens
            FROM o, accepted
            UNION ALL
            SELECT NULL, NULL, NULL, NULL, n, refused, tokens FROM submissions
            """,
            ids,
            [new.request.type for new in batch],
            [new.request.token_in for new in batch],
            [new.request.token_out for new in batch],
            [new.request.amount_in for new in batch],
            [new.request.slippage_bps for new in batch],
            [new.idempotency_key for new in batch],
            [new.digest for new in batch],
            [new.request.limit_price for new in batch],
            [new.expires_at for new in batch],
            [new.awaits for new in batch],
            [new.owner for new in batch],
            rate.per_second if rate else None,
            rate.burst if rate else None,
            str(self.owner),
        )

    @staticmethod
    def _nothing_committed(error: Exception) -> bool:
        """Whether a statement that failed with `error` surely committed nothing.

        The server's own refusal says so, and so does a value asyncpg could not encode (it
        never sent the statement). A lost connection, a timeout, or the server going down
        while answering says nothing.
        """
        return isinstance(error, asyncpg.exceptions._base.DataError) or refused_by_server(error)

    async def created_orders(
        self, ids: Sequence[UUID], server_pid: int | None = None
    ) -> dict[UUID, Order]:
        """Those of `ids` that exist, by id, once any transaction creating them has ended.

        Reads back a batch whose COMMIT went unanswered (`ids` as given to `create_orders`,
        `server_pid` the server process its statement was sent to). A statement under way
        holds the batch's lock, which the read waits for. One not begun yet (the server was
        frozen with it unread, say) could begin after the read found nothing, and commit:
        so the process it was sent to must have ended first (`_ended`).
        """
        if server_pid is not None:
            await self._ended(server_pid)
        async with self._connection() as connection, connection.transaction():
            await connection.execute(
                "SELECT pg_advisory_xact_lock_shared(hashtextextended($1::uuid::text, 0))",
                ids[0],
            )
            rows = await connection.fetch(
                f"SELECT {ORDER_COLUMNS} FROM orders WHERE id = ANY($1::uuid[])", list(ids)
            )
        return {row["order_id"]: _order(row) for row in rows}

    async def _ended(self, server_pid: int) -> None:
        """Return once the server process `server_pid` has ended, ending it if it is idle.

        Idle, it waits for a statement: whatever was sent to it is either done or still
        unread, and ending it settles which. One running a statement is left to finish it.
        Each look at `pg_stat_activity` is a statement of its own, as within a transaction
        the server shows the same snapshot of it every time. `DatabaseUnavailable` if it is
        still there after the store's timeout (the server may be frozen): the caller asks
        again.
        """
        deadline = asyncio.get_running_loop().time() + self.timeout_s
        async with self._connection() as connection:
            while True:
                state = await connection.fetchval(
                    "SELECT COALESCE(state, '') FROM pg_stat_activity WHERE pid = $1", server_pid
                )
                if state is None:
                    return
                if state == "idle":
                    await connection.execute("SELECT pg_terminate_backend($1)", server_pid)
                if asyncio.get_running_loop().time() >= deadline:
                    raise DatabaseUnavailable(
                        "the connection a batch of new orders was sent on has not ended yet"
                    )
                await asyncio.sleep(ENDED_POLL_S)

    async def get_order(self, order_id: UUID) -> Order:
        async with self._connection() as connection:
            row = await connection.fetchrow(
                f"SELECT {ORDER_COLUMNS} FROM orders WHERE id = $1", order_id
            )
        if row is None:
            raise OrderNotFound(f"no order {order_id}")
        return _order(row)

    async def events(
        self, order_id: UUID, after: int = 0, limit: int | None = None
    ) -> list[OrderEvent]:
        """The order's events with a seq above `after`, in order; the first `limit` of them."""
        async with self._connection() as connection:
            rows = await connection.fetch(
                f"SELECT {EVENT_COLUMNS} FROM order_events WHERE order_id = $1 AND seq > $2"
                " ORDER BY seq LIMIT $3",
                order_id,
                after,
                limit,
            )
        return [event_from(row) for row in rows]

    async def owner_and_events(self, order_id: UUID, after: int = 0) -> Opening:
        """The order's owner, and its events with a seq above `after` in order, in one read.

        What a socket opening on a known order needs before it answers: whether its caller
        may see the order, and what to send first: the first `REPLAY_PAGE` events, as a
        watcher reads them (`events.follow`). `OrderNotFound` when there is no order.
        Sockets opening meanwhile are read in the same statement (`Grouped`).
        """
        return await self._openings((order_id, after))

    async def _read_openings(self, wanted: Sequence[tuple[UUID, int]]) -> list[Opening | Exception]:
        """Each wanted order's owner and its events after the seq given, in one statement.

        Sockets asking for the same order after the same seq (several following one order
        from its start, say) share one read of it: its events are read, validated, and
        written as messages (`OrderEvent.message`) once for all of them.

        `= ANY` repeats the join on the ids so that the planner looks them up in the primary
        keys: joined to `unnest` alone, it scanned every order once a group had a hundred.
        """
        distinct = list(dict.fromkeys(wanted))
        async with self._connection() as connection:
            rows = await connection.fetch(
                f"""
                SELECT w.n, o.owner, {JOINED_EVENT_COLUMNS}
                FROM unnest($1::uuid[], $2::integer[]) WITH ORDINALITY AS w (id, after, n)
                JOIN orders AS o ON o.id = w.id AND o.id = ANY($1::uuid[])
                LEFT JOIN order_events AS e
                  ON e.order_id = w.id AND e.order_id = ANY($1::uuid[]) AND e.seq > w.after
                 AND e.seq <= w.after + $3
                ORDER BY w.n, e.seq
                """,
                [order_id for order_id, _ in distinct],
                [after for _, after in distinct],
                REPLAY_PAGE,
            )
        found: dict[int, Opening] = {}
        for row in rows:
            opening = found.setdefault(row["n"], (row["owner"], []))
            if row["seq"] is not None:
                opening[1].append(event_from(row))
        read = {asked: found.get(n) for n, asked in enumerate(distinct, start=1)}
        return [read[asked] or OrderNotFound(f"no order {asked[0]}") for asked in wanted]

    async def latest_event(self, order_id: UUID) -> OrderEvent | None:
        """The order's most recent event, if it has one."""
        async with self._connection() as connection:
            row = await connection.fetchrow(
                f"SELECT {EVENT_COLUMNS} FROM order_events WHERE order_id = $1"
                " ORDER BY seq DESC LIMIT 1",
                order_id,
            )
        return event_from(row) if row is not None else None

    async def latest_seqs(self, order_ids: Sequence[UUID]) -> dict[UUID, int]:
        """The seq of each order's latest event (its `last_seq`), of the orders that exist."""
        async with self._connection() as connection:
            rows = await connection.fetch(
                "SELECT id, last_seq FROM orders WHERE id = ANY($1::uuid[])", order_ids
            )
        return {row["id"]: row["last_seq"] for row in rows}

    async def list_orders(
        self, status: OrderStatus | None, before: int | None, limit: int, owner: str | None = None
    ) -> tuple[list[Order], int | None]:
        """Newest first, of `owner` if given; and the cursor of the next page, if there is one."""
        async with self._connection() as connection:
            rows = await connection.fetch(
                f"""
                SELECT {ORDER_COLUMNS}, position FROM orders
                WHERE ($1::order_status IS NULL OR status = $1)
                  AND ($2::bigint IS NULL OR position < $2)
                  AND ($4::text IS NULL OR owner = $4)
                ORDER BY position DESC LIMIT $3
                """,
                status,
                before,
                limit + 1,
                owner,
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

    async def oldest_unfinished_age_s(self) -> float | None:
        """Seconds since the unfinished order due longest became due, or None if none is.

        Orders waiting for their price or a listing wait by design, and are left out; once
        woken, one counts from its waking (`due_since`), not from its acceptance.
        """
        async with self._connection() as connection:
            age = await connection.fetchval(
                """
                SELECT EXTRACT(EPOCH FROM clock_timestamp()
                                          - min(COALESCE(due_since, created_at)))
                FROM orders
                WHERE status = ANY($1::order_status[]) AND awaits IS NULL
                """,
                unfinished_statuses(),
            )
        return float(age) if age is not None else None

    async def claim(self, limit: int, lease_s: float) -> list[Order]:
        """Take the lease of up to `limit` orders that are due and that no live engine holds.

        Due: with a priority (not waiting for a price or a listing, and not ended), no lease,
        and its retry time come. Lowest priority first, then oldest: snipers woken by a
        listing, then market orders and retries, then limit orders the price crossed,
        deepest first. The partial index `orders_due` holds exactly the unleased orders with
        a priority, in that order, and the function `due_orders` walks it (migration 014), so
        a claim reads little more than it takes however large the backlog, and an order's
        status changes while it is leased add nothing to it. One statement: the rows are
        locked with SKIP LOCKED, so engines claiming at once never take the same order. A
        lease that ran out (its engine died, or lost the database) is first given back by
        `release_expired`.
        """
        async with self._connection() as connection:
            rows = await connection.fetch(
                f"""
                WITH due AS (SELECT due_orders($1::order_status[], $3::integer) AS due_id)
                UPDATE orders SET lease_owner = $2,
                                  lease_expires_at = clock_timestamp() + $4 * interval '1 second'
                FROM due WHERE orders.id = due.due_id
                RETURNING {ORDER_COLUMNS}, priority, position
                """,
                unfinished_statuses(),
                self.owner,
                limit,
                lease_s,
            )
        ordered = sorted(rows, key=lambda row: (row["priority"], row["position"]))
        return [
            _order({k: v for k, v in row.items() if k not in ("priority", "position")})
            for row in ordered
        ]

    async def release_expired(self) -> int:
        """Give back every lease that ran out unrenewed, so that the orders can be claimed.

        Its engine died, or lost the database; the orders are taken over like free ones. How
        many were given back; the engines are woken if any were.
        """
        async with self._connection() as connection:
            released = await connection.fetchval(
                f"""
                WITH released AS (
                    UPDATE orders SET lease_owner = NULL, lease_expires_at = NULL
                    WHERE status = ANY($1::order_status[]) AND lease_owner IS NOT NULL
                      AND lease_expires_at < clock_timestamp()
                    RETURNING id
                )
                SELECT n, CASE WHEN n > 0 THEN pg_notify('{ORDERS_CHANNEL}', $2::text) END
                FROM (SELECT count(*) AS n FROM released) AS counted
                """,
                unfinished_statuses(),
                str(self.owner),
            )
        return int(released or 0)

    async def renew(self, order_ids: Sequence[UUID], lease_s: float) -> set[UUID]:
        """Extend this engine's leases on `order_ids`; the ids it still holds."""
        async with self._connection() as connection:
            rows = await connection.fetch(
                """
                UPDATE orders SET lease_expires_at = clock_timestamp() + $3 * interval '1 second'
                WHERE id = ANY($1::uuid[]) AND lease_owner = $2
                RETURNING id
                """,
                list(order_ids),
                self.owner,
                lease_s,
            )
        return {row["id"] for row in rows}

    async def count_crash(self, order_id: UUID) -> int:
        """Count one more unexpected error in working on `order_id`; how many it has had.

        The count is the order's, kept by every engine alike (`orders.crashes`).
        """
        async with self._connection() as connection:
            crashes = await connection.fetchval(
                "UPDATE orders SET crashes = crashes + 1 WHERE id = $1 RETURNING crashes",
                order_id,
            )
        if crashes is None:
            raise OrderNotFound(f"no order {order_id}")
        return int(crashes)

    async def release(self, order_ids: Sequence[UUID], retry_after_s: float | None = None) -> None:
        """Give up this engine's leases on `order_ids`, and wake the engines to take them.

        They are due again after `retry_after_s`, or as they were when it is None.
        """
        async with self._connection() as connection:
            await connection.execute(
                f"""
                WITH released AS (
                    UPDATE orders SET lease_owner = NULL, lease_expires_at = NULL,
                        next_attempt_at = COALESCE(
                            clock_timestamp() + $3::float8 * interval '1 second', next_attempt_at)
                    WHERE id = ANY($1::uuid[]) AND lease_owner = $2
                    RETURNING id
                )
                SELECT pg_notify('{ORDERS_CHANNEL}', $2::text)
                WHERE EXISTS (SELECT FROM released)
                """,
                list(order_ids),
                self.owner,
                retry_after_s,
            )

    async def waiting(self) -> Backlog:
        """What no engine works on: the due orders, and when the next one falls due or expires.

        An order may next be claimed when its retry falls due, or when another engine's lease
        on it runs out (that engine died, or lost the database): such leases are counted, for
        `release_expired` to give them back. Orders waiting for their price or a listing are
        not counted (they wait by design), but their expiries are reported, for `expire` to
        end them on time.
        """
        async with self._connection() as connection:
            row = await connection.fetchrow(
                """
                WITH now AS (SELECT clock_timestamp() AS at)
                SELECT count(*) FILTER (WHERE free AND awaits IS NULL) AS due,
                       count(*) FILTER (WHERE free AND lease_owner IS NOT NULL)
                           AS expired_leases,
                       EXTRACT(EPOCH FROM LEAST(
                           min(next_attempt_at) FILTER (WHERE free AND awaits IS NULL),
                           min(lease_expires_at) FILTER (WHERE NOT free AND lease_owner <> $2)
                       ) - at) AS next_due_in_s,
                       EXTRACT(EPOCH FROM min(expires_at) FILTER (
                           WHERE free AND status = 'pending') - at) AS next_expiry_in_s
                FROM now, LATERAL (
                    SELECT next_attempt_at, lease_owner, lease_expires_at, awaits, expires_at,
                           status, lease_owner IS NULL OR lease_expires_at < at AS free
                    FROM orders WHERE status = ANY($1::order_status[])
                ) AS unfinished
                GROUP BY at
                """,
                unfinished_statuses(),
                self.owner,
            )
        if row is None:
            return Backlog(0, None, None, 0)
        return Backlog(
            int(row["due"]),
            _seconds(row["next_due_in_s"]),
            _seconds(row["next_expiry_in_s"]),
            int(row["expired_leases"]),
        )

    async def expire(self) -> list[tuple[Order, OrderEvent]]:
        """End `failed` every pending order whose expiry has come and that no live engine holds.

        One statement, each order with an `Expired` event; nothing was sent for any of them
        (a sent order is `submitted`, and only ever reconciled). Unlike a transition's, these
        events are not handed to `on_committed`: the caller announces them
        (`Engine._committed`).
        """
        async with self._connection() as connection:
            rows = await connection.fetch(
                f"""
                WITH expired AS (
                    SELECT id FROM orders
                    WHERE status = 'pending' AND expires_at <= clock_timestamp()
                      AND (lease_owner IS NULL OR lease_expires_at < clock_timestamp())
                    FOR UPDATE SKIP LOCKED
                ), o AS (
                    UPDATE orders SET
                        status = 'failed',
                        error = {EXPIRED_ERROR_SQL},
                        awaits = NULL,
                        priority = NULL,
                        next_attempt_at = NULL,
                        lease_owner = NULL,
                        lease_expires_at = NULL,
                        last_seq = last_seq + 1,
                        updated_at = clock_timestamp()
                    FROM expired WHERE orders.id = expired.id
                    RETURNING orders.*
                ), e AS (
                    INSERT INTO order_events (order_id, seq, status, attempt, at, details)
                    SELECT id, last_seq, status, attempt, updated_at,
                           jsonb_build_object('error', error, 'expired', true)
                    FROM o
                )
                SELECT {ORDER_COLUMNS} FROM o
                """
            )
        ended = [_order(row) for row in rows]
        return [(order, _appended(order, _expired_details(order))) for order in ended]

    async def notify(self, channel: str, payload: str) -> None:
        """Send a notification to every engine listening on `channel`."""
        async with self._connection() as connection:
            await connection.execute("SELECT pg_notify($1, $2)", channel, payload)

    async def transition(
        self,
        order: Order,
        status: OrderStatus,
        details: EventDetails | None = None,
        **fields: Unpack[TransitionFields],
    ) -> tuple[Order, OrderEvent]:
        """Move `order` to `status` and append its event, atomically; both, as stored.

        A compare-and-set: the change applies only while the stored order still has the
        status and seq of `order`, the caller's view, and no other engine holds its lease. A
        stale view writes nothing and raises `StaleOrder`, so a worker acting on an outdated
        read never undoes what another did; a change the transition table forbids raises
        `InvalidTransition` before any write. `release` gives the lease up with the change (the
        order ended, or waits for its next attempt; then other engines are woken). `awaits`
        puts the order back to waiting; any other change leaves it due.

        The events are handed to the `on_committed` callback as soon as they are committed,
        before this returns; the caller has nothing to announce.
        """
        moved, events = await self._transition(order, [(status, details)], fields)
        return moved, events[-1]

    async def transition_through(
        self,
        order: Order,
        passed: Sequence[tuple[OrderStatus, EventDetails]],
        status: OrderStatus,
        details: EventDetails,
        **fields: Unpack[TransitionFields],
    ) -> tuple[Order, list[OrderEvent]]:
        """Move `order` through the statuses `passed` names to `status`, in one commit.

        Every event is appended, `passed`'s first, as changes in a row would append them;
        the order as it now is, and the events. `fields` are the last change's. Everything
        else as `transition`.
        """
        return await self._transition(order, [*passed, (status, details)], fields)

    async def _transition(
        self,
        order: Order,
        steps: Sequence[tuple[OrderStatus, EventDetails | None]],
        fields: TransitionFields,
    ) -> tuple[Order, list[OrderEvent]]:
        """The change from `order` through each step's status to the last's, with an event each.

        Committed with the changes other workers ask for meanwhile (`_commit_changes`).
        """
        before = order.status
        for status, _ in steps:
            if status not in TRANSITIONS[before]:
                raise InvalidTransition(
                    f"order {order.order_id} cannot go from {before} to {status}"
                )
            before = status
        stored = [details.stored() if details else {} for _, details in steps]
        change = Change(order, [status for status, _ in steps], stored, fields)
        return await self._changes(change)

    def on_committed(self, tell: Callable[[list[OrderEvent]], None]) -> None:
        """Have `tell` given the events of each status change as soon as it is committed.

        Called as the group's statement returns, before the callers resume: the engine's
        watchers hear of the events a turn of the event loop sooner than the worker that
        asked would tell them, which under load is milliseconds. `tell` must not raise; if
        it does, the error is logged and the change still counts as committed.
        """
        self._on_committed = tell

    async def _commit_and_tell(self, changes: Sequence[Change]) -> list[Changed | Exception]:
        """`_commit_changes`, then the events of those committed told (`on_committed`)."""
        outcomes = await self._commit_changes(changes)
        for outcome in outcomes:
            if isinstance(outcome, Exception):
                continue
            try:
                self._on_committed(outcome[1])
            except Exception:
                log.exception("committed_events_not_told", order_id=str(outcome[0].order_id))
        return outcomes

    async def _commit_changes(self, changes: Sequence[Change]) -> list[Changed | Exception]:
        """Commit `changes` (of distinct orders) in one statement; each one's outcome.

        Each is a compare-and-set on its order's status and seq, and on the lease: one whose
        order moved on, or another engine holds, changes nothing and is `StaleOrder` (or
        `OrderNotFound`), alone. When the statement fails for a reason of the store's own, not
        its being out of reach, the changes are committed again one by one, so that only the
        one at fault fails.
        """
        try:
            rows = await self._changed_rows(changes)
        except Exception as error:
            if len(changes) == 1 or not self._nothing_committed(error):
                raise
            return await each_alone(self._commit_changes, changes)
        by_id = {row["order_id"]: row for row in rows}
        missing = [c.order.order_id for c in changes if c.order.order_id not in by_id]
        current = await self._current(missing) if missing else {}
        return [
            _changed(change, by_id[change.order.order_id])
            if change.order.order_id in by_id
            else _refusal(change.order, current.get(change.order.order_id))
            for change in changes
        ]

    async def _changed_rows(self, changes: Sequence[Change]) -> list[asyncpg.Record]:
        """The statement of `_commit_changes`: the orders changed, as they now are."""
        steps = [(c.order.order_id, n, len(c.steps)) for c in changes for n in range(len(c.steps))]
        async with self._connection() as connection:
            return await connection.fetch(
                f"""
                WITH o AS (
                    UPDATE orders SET
                        status = c.status,
                        attempt = COALESCE(c.attempt, orders.attempt),
                        error = CASE WHEN c.status = 'confirmed' THEN NULL
                                     ELSE COALESCE(c.error, orders.error) END,
                        tx_hash = COALESCE(c.tx_hash, orders.tx_hash),
                        tx_expires_at = COALESCE(c.tx_expires_at, orders.tx_expires_at),
                        tx_last_valid_block_height = COALESCE(
                            c.tx_last_valid_block_height, orders.tx_last_valid_block_height),
                        tx_blockhash = COALESCE(c.tx_blockhash, orders.tx_blockhash),
                        dex = COALESCE(c.dex, orders.dex),
                        executed_price = COALESCE(c.executed_price, orders.executed_price),
                        amount_out = COALESCE(c.amount_out, orders.amount_out),
                        next_attempt_at = clock_timestamp() + c.retry_after_s * interval '1 second',
                        awaits = c.awaits,
                        best_price = COALESCE(c.best_price, orders.best_price),
                        priority = CASE WHEN c.terminal OR c.awaits IS NOT NULL THEN NULL
                                        ELSE COALESCE(orders.priority, 0) END,
                        lease_owner = CASE WHEN c.release THEN NULL ELSE orders.lease_owner END,
                        lease_expires_at = CASE WHEN c.release THEN NULL
                                                ELSE orders.lease_expires_at END,
                        last_seq = orders.last_seq + c.steps,
                        updated_at = clock_timestamp()
                    FROM unnest($1::uuid[], $2::order_status[], $3::integer[], $4::text[],
                                $5::text[], $6::timestamptz[], $7::bigint[], $8::text[],
                                $9::numeric[], $10::numeric[], $11::float8[], $12::text[],
                                $13::numeric[], $14::boolean[], $15::boolean[], $16::boolean[],
                                $17::order_status[], $18::integer[], $19::integer[],
                                $20::text[])
                         AS c (id, status, attempt, error, tx_hash, tx_expires_at,
                               tx_last_valid_block_height, dex, executed_price, amount_out,
                               retry_after_s, awaits, best_price, terminal, release, wake,
                               expected_status, expected_seq, steps, tx_blockhash)
                    WHERE orders.id = c.id AND orders.status = c.expected_status
                      AND orders.last_seq = c.expected_seq
                      AND (orders.lease_owner IS NULL OR orders.lease_owner = $21)
                    RETURNING orders.*, c.wake
                ), e AS (
                    INSERT INTO order_events (order_id, seq, status, attempt, at, details)
                    SELECT o.id, o.last_seq - step.steps + step.n + 1, step.status::order_status,
                           COALESCE(step.attempt, o.attempt), o.updated_at, step.details
                    FROM ROWS FROM (unnest($22::uuid[]), unnest($23::integer[]),
                                    unnest($24::integer[]), unnest($25::text[]),
                                    jsonb_array_elements($26::jsonb), unnest($27::integer[]))
                         AS step (id, n, steps, status, details, attempt)
                    JOIN o ON o.id = step.id
                )
                SELECT {ORDER_COLUMNS},
                       CASE WHEN wake THEN pg_notify('{ORDERS_CHANNEL}', $21::text) END AS woken
                FROM o
                """,
                *_change_columns(changes),
                self.owner,
                [order_id for order_id, _, _ in steps],
                [n for _, n, _ in steps],
                [count for _, _, count in steps],
                [str(status) for c in changes for status in c.steps],
                [details for c in changes for details in c.stored],
                [attempt for c in changes for attempt in c.attempts()],
            )

    async def _current(self, ids: Sequence[UUID]) -> dict[UUID, asyncpg.Record]:
        """Where the orders of refused changes stand, by id: their status, seq and lease."""
        async with self._connection() as connection:
            rows = await connection.fetch(
                "SELECT id, status, last_seq, lease_owner FROM orders WHERE id = ANY($1::uuid[])",
                list(ids),
            )
        return {row["id"]: row for row in rows}

    async def cancel(self, order_id: UUID) -> tuple[Order, OrderEvent]:
        """End the order `failed` for its client, if nothing was sent; both, as stored.

        One statement, whoever holds the lease: while the order is `pending`, `routing` or
        `building` it becomes `failed` with a `Cancelled` event, the next seq, no lease and no
        retry time. Unlike a transition's, the event is not handed to `on_committed`: the
        caller announces it (`Engine._committed`). A worker commits `submitted` with a
        compare-and-set on status and seq before it sends the swap, so of the two writes, the
        row lock orders them: a cancel committed first makes the worker's view stale (nothing
        is sent); a `submitted` committed first makes the cancel too late. That raises
        `NotCancellable`, naming the status the order is in; an unknown id raises
        `OrderNotFound`.
        """
        details = Cancelled()
        async with self._connection() as connection:
            while True:
                row = await connection.fetchrow(
                    f"""
                    WITH o AS (
                        UPDATE orders SET
                            status = 'failed',
                            error = $3,
                            next_attempt_at = NULL,
                            awaits = NULL,
                            priority = NULL,
                            lease_owner = NULL,
                            lease_expires_at = NULL,
                            last_seq = last_seq + 1,
                            updated_at = clock_timestamp()
                        WHERE id = $1 AND status = ANY($2::order_status[])
                        RETURNING *
                    ), e AS (
                        INSERT INTO order_events (order_id, seq, status, attempt, at, details)
                        SELECT id, last_seq, status, attempt, updated_at, $4 FROM o
                    )
                    SELECT {ORDER_COLUMNS} FROM o
                    """,
                    order_id,
                    cancellable_statuses(),
                    details.error,
                    details.stored(),
                )
                if row is not None:
                    break
                current = await connection.fetchval(
                    "SELECT status FROM orders WHERE id = $1", order_id
                )
                if current is None:
                    raise OrderNotFound(f"no order {order_id}")
                status = OrderStatus(current)
                if not status.cancellable:
                    raise NotCancellable(
                        _too_late(order_id, status),
                        details={"orderId": str(order_id), "status": str(status)},
                    )
                # Between the two statements a sent swap was rejected and the order went back
                # to `pending` for its next attempt: nothing is in flight now, so try again.
        cancelled = _order(row)
        event = _appended(cancelled, details.stored())
        return cancelled, event
