"""The simulated venues' chain: the blockhashes it issued and every transaction it took.

It has its own store (the `chain` schema, its own SQL and its own connection pool) in the
engine's database, so that it outlives the engine as a real chain would, while knowing
nothing of the engine's tables: the engine learns what landed only by asking a venue.

It also keeps the pools venues listed for new pairs (`add_listing`), so that a listing
outlives the engine that made it and the venues of every engine on the chain learn it; the
reserves each pool's last swap left (`pool_reserves`), so that a swap through one engine
moves the pool every engine quotes from; and the seed of the market's drift (`seed`),
chosen by the first engine that opened the chain, so that every engine drifts alike.

A swap is decided against its pool as the chain holds it: its pool's row is locked, the
venue decides the outcome against the reserves in it, and the transaction and the reserves
it leaves are written before the lock is let go. So two engines swapping one pool at once
each decide against the state the other left, in turn, as a real chain's write lock on a
pool's account has them.

A transaction is recorded when it is sent, in one statement with those sent meanwhile, with
the outcome the venue decided then (landed with its amounts, or rejected with its reason)
and the moment it lands. From that moment the outcome is visible; before it, the signature
is pending. So a swap lands on schedule whether or not the engine that sent it is still
running. The chain only takes a transaction whose blockhash it issued and which has not
expired; one it never took is pending until its blockhash expires, and expired after, for
good.

"Now" is always the database's clock (`clock_timestamp()`), so that engines sharing the chain
agree on what has landed and what has expired.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from importlib import resources
from typing import Protocol, Self
from uuid import UUID

import asyncpg
import structlog
from solders.hash import Hash

from orderengine.errors import AlreadyListed, SwapRejected, VenueError
from orderengine.grouping import Grouped, each_alone
from orderengine.postgres import AnyConnection, acquire, create_pool
from orderengine.venues.values import (
    Dex,
    Execution,
    Listing,
    RecentBlockhash,
    Reserves,
    TransactionState,
    TransactionStatus,
)

log = structlog.get_logger(__name__)

SCHEMA_LOCK = 7_207_002
"""Advisory lock that keeps chains opened at once from creating the schema twice."""
SIGNATURE_LOCKS = 7_207_003
"""First key of the advisory locks (the second is the signature's hash) under which a
signature is taken, or found missing after its expiry: so that the chain never declares
a signature expired while a transaction with it is being recorded."""
DEFAULT_BLOCKHASH_TTL_S = 60.0
LISTING_COLUMNS = "dex, token, quote_token, price, liquidity, pool, listed_at"
RECORD_BATCH = 100
"""The most transactions recorded in one statement."""


@dataclass(frozen=True)
class Sent:
    """A transaction as the chain receives it, verified, with the outcome the venue decided."""

    signature: str
    blockhash: str
    expires_at: datetime
    """The expiry the sender was given with the blockhash; the chain checks it is the one."""
    dex: Dex
    order_id: UUID
    outcome: Execution | str
    """The execution if it lands, or why it is rejected."""
    lands_in_s: float


@dataclass(frozen=True)
class Decided:
    """A transaction with the outcome its venue decided, and what it leaves of its pool."""

    sent: Sent
    reserves: Reserves | None = None
    """The pool's reserves after the swap, if it lands; None if it leaves the pool alone."""


Decide = Callable[[Reserves | None], Decided]
"""Decides a transaction against its pool's reserves on the chain (None: no swap moved it)."""


@dataclass(frozen=True)
class Sending:
    """A transaction on its way to the chain, to be decided against its pool as it is there."""

    signature: str
    dex: Dex
    pool: str | None
    """The address of the pool it swaps on; None if it touches none."""
    decide: Decide


@dataclass(frozen=True)
class Recorded:
    """What the chain holds for a signature: its outcome, and when that outcome takes effect."""

    outcome: Execution | str
    lands_at: datetime


class Ledger(Protocol):
    """The chain as a simulated venue uses it."""

    @property
    def seed(self) -> int:
        """The seed of the market's drift, the same for every engine on the chain."""
        ...

    async def issue_blockhash(self) -> RecentBlockhash:
        """A recent blockhash, and the last moment a transaction built on it can be taken."""
        ...

    async def record(self, sending: Sending) -> Decided:
        """Decide the transaction against its pool, then take it; the decision as taken.

        `sending.decide` is given the pool's reserves as the chain holds them, with no other
        swap of the pool decided meanwhile; it may be called again if the chain must start
        over. The transaction's outcome is recorded now, effective `lands_in_s` from now,
        and the reserves it leaves are the pool's from then on.

        Raises `AlreadyProcessed` if the signature was taken before (its first outcome
        stands, whatever it is); otherwise `SwapRejected` if its blockhash was not issued
        here, has expired, or expires at another moment than `sent.expires_at`: nothing is
        recorded, the pool is left as it was, and it can never land.
        """
        ...

    async def pool_reserves(self, dex: Dex) -> dict[str, Reserves]:
        """What the last swap left of each of `dex`'s pools that a swap moved, by address."""
        ...

    async def status(self, signature: str, expires_at: datetime) -> TransactionStatus:
        """What became of `signature`, whose blockhash expires at `expires_at`."""
        ...

    async def add_listing(
        self,
        dex: Dex,
        token: str,
        quote_token: str,
        price: Decimal,
        liquidity: Decimal,
        pool: str,
    ) -> Listing:
        """Record that `dex` listed the pool `pool` for this pair; the listing as recorded.

        Raises `AlreadyListed` if `dex` has a listing for the pair, either way round.
        """
        ...

    async def listings(self, dex: Dex | None = None) -> list[Listing]:
        """Every listing `dex` made (every venue's when None), oldest first."""
        ...

    async def listing_count(self) -> int:
        """How many listings every venue made.

        None is ever removed: a count that has not changed says that nothing was listed since.
        """
        ...


class AlreadyProcessed(VenueError):
    """The signature was taken before: its first outcome stands, whatever it was."""

    code = "already_processed"


def status_of(
    signature: str, recorded: Recorded | None, expires_at: datetime, now: datetime
) -> TransactionStatus:
    """A signature's state at `now`: decided once it lands, or expired if never taken."""
    if recorded is None:
        if now > expires_at:
            error = f"blockhash expired at {expires_at.isoformat()} and the swap never landed"
            return TransactionStatus(
                signature=signature, state=TransactionState.EXPIRED, error=error
            )
        return TransactionStatus(signature=signature, state=TransactionState.PENDING)
    if now < recorded.lands_at:
        return TransactionStatus(signature=signature, state=TransactionState.PENDING)
    if isinstance(recorded.outcome, Execution):
        return TransactionStatus(
            signature=signature, state=TransactionState.LANDED, execution=recorded.outcome
        )
    return TransactionStatus(
        signature=signature, state=TransactionState.REJECTED, error=recorded.outcome
    )


def refusal(sent: Sent, expires_at: datetime | None, valid: bool) -> SwapRejected | None:
    """Why the chain does not take `sent`, given what it issued: None if it takes it.

    `expires_at` is the expiry of `sent.blockhash` as issued (None if never issued), `valid`
    whether that expiry is still ahead.
    """
    if expires_at is None:
        return SwapRejected(f"blockhash not found: {sent.blockhash} was not issued by this chain")
    if not valid:
        return SwapRejected(
            f"blockhash expired: {sent.blockhash} expired at {expires_at.isoformat()}"
        )
    if expires_at != sent.expires_at:
        return SwapRejected(
            f"the transaction says its blockhash expires at {sent.expires_at.isoformat()},"
            f" but it expires at {expires_at.isoformat()}"
        )
    return None


def new_blockhash() -> str:
    return str(Hash(secrets.token_bytes(Hash.LENGTH)))


SLOT_S = 0.4
"""How long a Solana slot lasts, about: the chain hands out one blockhash per slot."""


def _log_failed_issue(issue: asyncio.Task[RecentBlockhash]) -> None:
    """Say why a blockhash could not be issued; the builds waiting for it raise it too."""
    if not issue.cancelled() and (error := issue.exception()) is not None:
        log.warning("blockhash_not_issued", error=repr(error))


PRUNE_EVERY_S = 60.0
"""How often, at most, an issue also deletes the blockhashes long expired."""
EXPIRED_KEPT = timedelta(minutes=10)
"""How long a blockhash is kept past its expiry: a transaction sent on it meanwhile is still
refused as expired. Its transactions keep their own expiry, so none needs it longer."""


class Chain:
    """The chain in PostgreSQL; the signature is the key, so none is taken twice.

    As a cluster makes one blockhash per slot, the chain hands the one it issued last to every
    transaction built within `SLOT_S` of it, or a tenth of the blockhash lifetime if that is
    shorter, so that a blockhash handed out has nine tenths of its life left at least. So
    transactions built together share a blockhash, as on a cluster, and a build costs no
    write of its own. The next slot's blockhash is issued ahead, once a build finds the slot
    half over, as a cluster's next slot comes whether or not anyone asks: builds wait for a
    blockhash only when none was issued in the last slot. `clock` (monotonic seconds) may be
    replaced by tests.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        timeout_s: float,
        blockhash_ttl_s: float,
        clock: Callable[[], float] = time.monotonic,
        seed: int = 0,
    ) -> None:
        self._pool = pool
        self._seed = seed
        self._timeout_s = timeout_s
        self._blockhash_ttl = timedelta(seconds=blockhash_ttl_s)
        self._slot_s = min(SLOT_S, blockhash_ttl_s / 10)
        self._clock = clock
        self._slot: tuple[float, RecentBlockhash] | None = None
        self._issuing: asyncio.Task[RecentBlockhash] | None = None
        """The slot's blockhash being issued, which the builds meanwhile wait for."""
        self._pruned_at: float | None = None
        self._records: Grouped[Sending, Decided] = Grouped(self._record_group, RECORD_BATCH)

    @classmethod
    async def open(
        cls,
        dsn: str,
        size: int,
        timeout_s: float,
        *,
        blockhash_ttl_s: float = DEFAULT_BLOCKHASH_TTL_S,
        clock: Callable[[], float] = time.monotonic,
        seed: int | None = None,
    ) -> Self:
        """Connect, create or upgrade the chain's schema, and read the market's seed.

        `blockhash_ttl_s` is how long a transaction built on a blockhash issued here can be
        taken after the blockhash was issued; `clock` tells slots apart. `seed` is the
        market's seed if this chain is the first to open the database (a random one when
        None); a chain opened later takes the one stored, whatever it is given.
        """
        pool = await create_pool(dsn, size, timeout_s)
        ddl = resources.files("orderengine.venues").joinpath("chain.sql").read_text()
        try:
            async with acquire(pool, timeout_s) as connection, connection.transaction():
                await connection.execute("SELECT pg_advisory_xact_lock($1)", SCHEMA_LOCK)
                await _bring_up_to_date(connection, ddl)
                stored = await _market_seed(connection, seed)
        except BaseException:
            await pool.close()
            raise
        if seed is not None and stored != seed:
            log.warning("chain_seed_kept", seed=stored, given=seed)
        return cls(pool, timeout_s, blockhash_ttl_s, clock, stored)

    @property
    def seed(self) -> int:
        return self._seed

    async def close(self) -> None:
        if self._issuing is not None:
            self._issuing.cancel()
            await asyncio.gather(self._issuing, return_exceptions=True)
        await self._pool.close()

    async def issue_blockhash(self) -> RecentBlockhash:
        """The current slot's blockhash; the next one's is issued once the slot is half over.

        A blockhash is valid for the chain's blockhash lifetime from its issue. Builds that
        come while the slot has none wait for the one being issued rather than each issue
        one of their own.
        """
        now = self._clock()
        slot = self._slot
        if slot is not None and now - slot[0] < self._slot_s:
            if now - slot[0] >= self._slot_s / 2:
                self._open_next_slot(now)
            return slot[1]
        return await asyncio.shield(self._open_next_slot(now))

    def _open_next_slot(self, now: float) -> asyncio.Task[RecentBlockhash]:
        """The issue of the next slot's blockhash: begun at `now` unless one is under way.

        An issue begun ahead that fails is logged; the next build tries again.
        """
        if self._issuing is None or self._issuing.done():
            self._issuing = asyncio.create_task(self._open_slot(now), name="chain-slot")
            self._issuing.add_done_callback(_log_failed_issue)
        return self._issuing

    async def _open_slot(self, now: float) -> RecentBlockhash:
        issued = await self._issue()
        self._slot = (now, issued)
        return issued

    async def _issue(self) -> RecentBlockhash:
        """Issue a blockhash; every `PRUNE_EVERY_S`, delete those long expired with it.

        A slot's blockhash is issued every 0.4 s or so: kept for ever, they would grow by
        about 200 000 rows a day and an engine.
        """
        blockhash = new_blockhash()
        now = self._clock()
        prune = self._pruned_at is None or now - self._pruned_at >= PRUNE_EVERY_S
        async with acquire(self._pool, self._timeout_s) as connection:
            expires_at = await connection.fetchval(
                """
                WITH pruned AS (
                    DELETE FROM chain.blockhashes
                    WHERE $3 AND expires_at < clock_timestamp() - $4::interval
                )
                INSERT INTO chain.blockhashes (blockhash, expires_at)
                VALUES ($1, clock_timestamp() + $2::interval)
                RETURNING expires_at
                """,
                blockhash,
                self._blockhash_ttl,
                prune,
                EXPIRED_KEPT,
            )
        if prune:
            self._pruned_at = now
        return RecentBlockhash(blockhash=blockhash, expires_at=expires_at)

    async def record(self, sending: Sending) -> Decided:
        """Decide `sending` against its pool, then take it under its signature's lock; or refuse.

        Transactions sent while a record is being committed are decided and recorded
        together, in one transaction (`Grouped`), each taken or refused on its own. Their
        pools' rows are locked first, in the order of their addresses, and each is decided
        against the reserves the one before it on its pool left. The signatures' locks come
        next, in the order of their keys, so that two groups never deadlock, and the
        blockhashes' validity is read on the clock after them, so a `status` that held a
        lock and found its signature missing past its expiry is never contradicted. A valid
        transaction that was not taken met the same signature, taken before it: only a
        conflict leaves it out.
        """
        return await self._records(sending)

    async def _record_group(self, group: Sequence[Sending]) -> list[Decided | Exception]:
        """Decide and record `group`; each one's refusal, or its decision when it was taken.

        When the store refuses the statement (nothing of it committed), or a transaction
        refused had moved a pool another of the group was decided against, each is recorded
        again alone, so that only the one at fault fails and each is decided against the
        pool as it is. Transactions with one signature are recorded one after the other, so
        that the first is taken and the others see it.
        """
        if len(group) > 1 and len({sending.signature for sending in group}) < len(group):
            return await each_alone(self._record_group, group)
        try:
            return await self._decided_and_recorded(group)
        except _DecidedOnARefusal:
            return await each_alone(self._record_group, group)
        except asyncpg.PostgresError:
            if len(group) == 1:
                raise
            return await each_alone(self._record_group, group)

    async def _decided_and_recorded(self, group: Sequence[Sending]) -> list[Decided | Exception]:
        """One transaction: lock the pools, decide, record, and write the pools that moved."""
        async with (
            acquire(self._pool, self._timeout_s) as connection,
            connection.transaction(),
        ):
            reserves = await _locked_pools(connection, group)
            decided = _decide_in_turn(group, reserves)
            rows = await _recorded_rows(connection, [each.sent for each in decided])
            refusals = [
                _refusal_of(each.sent, row) for each, row in zip(decided, rows, strict=True)
            ]
            moved = _pools_moved(group, decided, refusals)
            if moved:
                await _write_pools(connection, moved)
        return [refusal or each for each, refusal in zip(decided, refusals, strict=True)]

    async def pool_reserves(self, dex: Dex) -> dict[str, Reserves]:
        async with acquire(self._pool, self._timeout_s) as connection:
            rows = await connection.fetch(
                "SELECT pool, base_reserve, quote_reserve, settled_at, swaps FROM chain.pools"
                " WHERE dex = $1 AND settled_at IS NOT NULL",
                dex,
            )
        return {row["pool"]: _reserves(row) for row in rows}

    async def find(self, signature: str) -> TransactionStatus | None:
        """The state of a signature the chain took, now; None if it never took it."""
        async with acquire(self._pool, self._timeout_s) as connection:
            row = await connection.fetchrow(
                "SELECT clock_timestamp() AS now, * FROM chain.transactions WHERE signature = $1",
                signature,
            )
        if row is None:
            return None
        return status_of(signature, _recorded(row), row["now"], row["now"])

    async def status(self, signature: str, expires_at: datetime) -> TransactionStatus:
        """Under the signature's lock, so that no transaction is being taken with it meanwhile.

        A transaction being recorded holds the lock until it commits, and the query after the
        lock sees it; one that comes after this answer checks its blockhash against a clock
        past this answer's, so it is refused if this answer says expired.
        """
        async with (
            acquire(self._pool, self._timeout_s) as connection,
            connection.transaction(isolation="read_committed"),
        ):
            await connection.execute(
                "SELECT pg_advisory_xact_lock($1, hashtext($2))", SIGNATURE_LOCKS, signature
            )
            row = await connection.fetchrow(
                """
                SELECT clock_timestamp() AS now, t.*
                FROM (SELECT) AS here LEFT JOIN chain.transactions AS t ON t.signature = $1
                """,
                signature,
            )
        assert row is not None
        recorded = _recorded(row) if row["signature"] is not None else None
        return status_of(signature, recorded, expires_at, row["now"])

    async def add_listing(
        self,
        dex: Dex,
        token: str,
        quote_token: str,
        price: Decimal,
        liquidity: Decimal,
        pool: str,
    ) -> Listing:
        """One statement, so that engines listing the same pair at once cannot both succeed."""
        async with acquire(self._pool, self._timeout_s) as connection:
            row = await connection.fetchrow(
                f"""
                INSERT INTO chain.listings (dex, token, quote_token, price, liquidity, pool)
                VALUES ($1, $2, $3, $4, $5, $6)
                ON CONFLICT DO NOTHING
                RETURNING {LISTING_COLUMNS}
                """,
                dex,
                token,
                quote_token,
                price,
                liquidity,
                pool,
            )
        if row is None:
            raise AlreadyListed(
                f"{dex} already lists {token}/{quote_token}",
                details={"dex": dex, "tokens": sorted((token, quote_token))},
            )
        return _listing(row)

    async def listings(self, dex: Dex | None = None) -> list[Listing]:
        async with acquire(self._pool, self._timeout_s) as connection:
            rows = await connection.fetch(
                f"SELECT {LISTING_COLUMNS} FROM chain.listings"
                " WHERE $1::text IS NULL OR dex = $1 ORDER BY id",
                dex,
            )
        return [_listing(row) for row in rows]

    async def listing_count(self) -> int:
        async with acquire(self._pool, self._timeout_s) as connection:
            count: int = await connection.fetchval("SELECT count(*) FROM chain.listings")
        return count

    async def landed_signatures(self, order_ids: Sequence[UUID]) -> dict[UUID, list[str]]:
        """For each order, the signatures that landed for it, or are taken and will land.

        This is how a test or an operator proves that no order was executed twice.
        """
        async with acquire(self._pool, self._timeout_s) as connection:
            rows = await connection.fetch(
                "SELECT order_id, signature FROM chain.transactions"
                " WHERE landed AND order_id = ANY($1::uuid[]) ORDER BY at, lands_at",
                list(order_ids),
            )
        landed: dict[UUID, list[str]] = {order_id: [] for order_id in order_ids}
        for row in rows:
            landed[row["order_id"]].append(row["signature"])
        return landed


def _recorded(row: asyncpg.Record) -> Recorded:
    outcome: Execution | str
    if row["landed"]:
        outcome = Execution(
            dex=row["dex"],
            tx_hash=row["signature"],
            amount_in=row["amount_in"],
            amount_out=row["amount_out"],
            executed_price=row["executed_price"],
            fee=row["fee"],
        )
    else:
        outcome = row["error"] or "rejected"
    return Recorded(outcome=outcome, lands_at=row["lands_at"])


def _listing(row: asyncpg.Record) -> Listing:
    return Listing.model_validate(dict(row))


def _refusal_of(sent: Sent, row: asyncpg.Record) -> Exception | None:
    """None if the chain took `sent`; else why not, from what its statement found."""
    if row["taken"]:
        return None
    refused = refusal(sent, row["expires_at"], row["valid"])
    if row["known"] or refused is None:
        return AlreadyProcessed(f"transaction {sent.signature} was already processed")
    return refused


def _amounts(execution: Execution | None) -> tuple[Decimal | None, ...]:
    if execution is None:
        return (None, None, None, None)
    return (execution.amount_in, execution.amount_out, execution.executed_price, execution.fee)


class _DecidedOnARefusal(Exception):
    """A refused transaction had moved a pool that a later one of its group was decided on."""


async def _bring_up_to_date(connection: AnyConnection, ddl: str) -> None:
    """Apply `ddl` (chain.sql) unless the chain says it was applied as it is.

    Even when they change nothing, its statements take locks (`ALTER TABLE` an exclusive one
    on the transactions), and an engine starting behind any transaction that reads the chain
    would stop every engine's swaps until that transaction ends.
    """
    fingerprint = hashlib.sha256(ddl.encode()).hexdigest()
    if await connection.fetchval("SELECT to_regclass('chain.schema') IS NOT NULL"):
        applied = await connection.fetchval("SELECT fingerprint FROM chain.schema")
        if applied == fingerprint:
            return
    await connection.execute(ddl)
    await connection.execute(
        """
        INSERT INTO chain.schema (fingerprint) VALUES ($1)
        ON CONFLICT (single) DO UPDATE SET fingerprint = excluded.fingerprint
        """,
        fingerprint,
    )


async def _market_seed(connection: AnyConnection, seed: int | None) -> int:
    """The market's seed on the chain: `seed` (or a random one) if it holds none yet."""
    chosen = seed if seed is not None else secrets.randbits(63)
    stored: int = await connection.fetchval(
        """
        WITH chosen AS (
            INSERT INTO chain.market (seed) VALUES ($1) ON CONFLICT DO NOTHING RETURNING seed
        )
        SELECT seed FROM chosen UNION ALL SELECT seed FROM chain.market
        """,
        chosen,
    )
    return stored


async def _locked_pools(
    connection: AnyConnection, group: Sequence[Sending]
) -> dict[str, Reserves | None]:
    """Lock the rows of the group's pools, in the order of their addresses; their reserves.

    A pool no swap has moved yet gets its row here, empty.
    """
    pools = sorted({(s.pool, s.dex) for s in group if s.pool is not None})
    if not pools:
        return {}
    rows = await connection.fetch(
        """
        INSERT INTO chain.pools (pool, dex)
        SELECT pool, dex FROM unnest($1::text[], $2::text[]) AS p (pool, dex) ORDER BY pool
        ON CONFLICT (pool) DO UPDATE SET dex = excluded.dex
        RETURNING pool, base_reserve, quote_reserve, settled_at, swaps
        """,
        [pool for pool, _ in pools],
        [dex for _, dex in pools],
    )
    return {row["pool"]: _reserves(row) if row["settled_at"] is not None else None for row in rows}


def _decide_in_turn(
    group: Sequence[Sending], reserves: dict[str, Reserves | None]
) -> list[Decided]:
    """Decide each in order, against what the ones before it on its pool left."""
    decided = []
    for sending in group:
        if sending.pool is None:
            decided.append(sending.decide(None))
            continue
        each = sending.decide(reserves[sending.pool])
        if each.reserves is not None:
            reserves[sending.pool] = each.reserves
        decided.append(each)
    return decided


def _pools_moved(
    group: Sequence[Sending], decided: Iterable[Decided], refusals: Iterable[Exception | None]
) -> dict[str, Reserves]:
    """What the taken swaps left of each pool they moved.

    Raises `_DecidedOnARefusal` when a swap was decided against what a refused one left.
    """
    moved: dict[str, Reserves] = {}
    refused_moves: defaultdict[str, bool] = defaultdict(bool)
    for sending, each, refusal in zip(group, decided, refusals, strict=True):
        if sending.pool is None:
            continue
        if refused_moves[sending.pool]:
            raise _DecidedOnARefusal(sending.pool)
        if each.reserves is None:
            continue
        if refusal is None:
            moved[sending.pool] = each.reserves
        else:
            refused_moves[sending.pool] = True
    return moved


async def _write_pools(connection: AnyConnection, moved: dict[str, Reserves]) -> None:
    await connection.execute(
        """
        UPDATE chain.pools AS p
        SET base_reserve = m.base, quote_reserve = m.quote, settled_at = m.at, swaps = m.swaps
        FROM unnest($1::text[], $2::numeric[], $3::numeric[], $4::float8[], $5::bigint[])
            AS m (pool, base, quote, at, swaps)
        WHERE p.pool = m.pool
        """,
        list(moved),
        [reserves.base for reserves in moved.values()],
        [reserves.quote for reserves in moved.values()],
        [reserves.at for reserves in moved.values()],
        [reserves.swaps for reserves in moved.values()],
    )


def _reserves(row: asyncpg.Record) -> Reserves:
    return Reserves(
        base=row["base_reserve"],
        quote=row["quote_reserve"],
        at=row["settled_at"],
        swaps=row["swaps"],
    )


async def _recorded_rows(connection: AnyConnection, group: Sequence[Sent]) -> list[asyncpg.Record]:
    """The group's statement: for each, in order, what was issued and whether it was taken."""
    executions = [s.outcome if isinstance(s.outcome, Execution) else None for s in group]
    amounts = [_amounts(execution) for execution in executions]
    return await connection.fetch(
        """
            WITH sent AS (
                SELECT * FROM unnest(
                    $1::text[], $2::text[], $3::timestamptz[], $4::text[], $5::uuid[],
                    $6::boolean[], $7::numeric[], $8::numeric[], $9::numeric[],
                    $10::numeric[], $11::text[], $12::float8[]
                ) WITH ORDINALITY AS s (signature, blockhash, expires_at, dex, order_id,
                                        landed, amount_in, amount_out, executed_price,
                                        fee, error, lands_in_s, n)
            ), locked AS (
                SELECT pg_advisory_xact_lock($13, key)
                FROM (SELECT hashtext(signature) AS key FROM sent
                      ORDER BY key OFFSET 0) AS keys
            ), issued AS (
                SELECT sent.*, b.expires_at AS issued_expires_at,
                       b.expires_at >= clock_timestamp() AS valid
                FROM sent LEFT JOIN chain.blockhashes AS b ON b.blockhash = sent.blockhash
                WHERE (SELECT count(*) FROM locked) = (SELECT count(*) FROM sent) -- locks first
            ), taken AS (
                INSERT INTO chain.transactions (
                    signature, blockhash, expires_at, dex, order_id, landed,
                    amount_in, amount_out, executed_price, fee, error, lands_at)
                SELECT signature, blockhash, issued_expires_at, dex, order_id, landed,
                       amount_in, amount_out, executed_price, fee, error,
                       clock_timestamp() + lands_in_s * interval '1 second'
                FROM issued WHERE valid AND issued_expires_at = expires_at
                ON CONFLICT (signature) DO NOTHING
                RETURNING signature
            )
            SELECT issued.issued_expires_at AS expires_at,
                   coalesce(issued.valid, false) AS valid,
                   EXISTS (SELECT FROM taken WHERE taken.signature = issued.signature)
                       AS taken,
                   EXISTS (SELECT FROM chain.transactions AS t
                           WHERE t.signature = issued.signature) AS known
            FROM issued ORDER BY issued.n
            """,
        [sent.signature for sent in group],
        [sent.blockhash for sent in group],
        [sent.expires_at for sent in group],
        [sent.dex for sent in group],
        [sent.order_id for sent in group],
        [execution is not None for execution in executions],
        *(list(column) for column in zip(*amounts, strict=True)),
        [
            None if execution else sent.outcome
            for sent, execution in zip(group, executions, strict=True)
        ],
        [sent.lands_in_s for sent in group],
        SIGNATURE_LOCKS,
    )
