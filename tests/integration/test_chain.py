"""The simulated chain's store in PostgreSQL: blockhashes, outcomes in time, and upgrades.

The chain takes a transaction only on a blockhash it issued and that has not expired, records
its outcome at once and shows it from its landing time; a signature it never took is pending
until its expiry and expired after. "Now" is the database's clock.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import asyncpg
import pytest

from orderengine.errors import SwapRejected, VenueError
from orderengine.venues.chain import (
    EXPIRED_KEPT,
    PRUNE_EVERY_S,
    SIGNATURE_LOCKS,
    SLOT_S,
    AlreadyProcessed,
    Chain,
    Decided,
    Sending,
    Sent,
)
from orderengine.venues.values import Execution, RecentBlockhash, TransactionState


@pytest.fixture
async def chain(database_url: str) -> AsyncIterator[Chain]:
    """The chain with blockhashes that live a minute, so that no test here races their expiry."""
    chain = await Chain.open(database_url, 2, 5.0, blockhash_ttl_s=60)
    yield chain
    await chain.close()


@asynccontextmanager
async def on_a_clock(
    database_url: str, *, blockhash_ttl_s: float
) -> AsyncIterator[tuple[Chain, list[float]]]:
    """A chain whose clock reads `now[0]`, which the test moves on: slots on demand."""
    now = [0.0]
    chain = await Chain.open(
        database_url, 2, 5.0, blockhash_ttl_s=blockhash_ttl_s, clock=lambda: now[0]
    )
    try:
        yield chain, now
    finally:
        await chain.close()


def execution(signature: str) -> Execution:
    return Execution(
        dex="raydium",
        tx_hash=signature,
        amount_in=Decimal(1),
        amount_out=Decimal("149.6"),
        executed_price=Decimal("149.6"),
        fee=Decimal("0.0025"),
    )


def sent(
    blockhash: RecentBlockhash,
    *,
    lands_in_s: float = 0,
    landed: bool = True,
    signature: str | None = None,
) -> Sent:
    signature = signature or f"sig-{uuid.uuid4().hex}"
    return Sent(
        signature=signature,
        blockhash=blockhash.blockhash,
        expires_at=blockhash.expires_at,
        dex="raydium",
        order_id=uuid.uuid4(),
        outcome=execution(signature) if landed else "slippage tolerance exceeded",
        lands_in_s=lands_in_s,
    )


async def record(chain: Chain, sent: Sent) -> None:
    """Have the chain take `sent`, a transaction decided before and touching no pool."""
    await chain.record(Sending(sent.signature, sent.dex, None, lambda _: Decided(sent)))


def later(hours: float = 1) -> datetime:
    return datetime.now(UTC) + timedelta(hours=hours)


async def test_one_blockhash_a_slot_each_expiring_a_lifetime_after_it_was_issued(
    database_url: str,
) -> None:
    async with on_a_clock(database_url, blockhash_ttl_s=90) as (chain, now):
        before = datetime.now(UTC)
        issued = []
        for step in (0.0, 0.1, SLOT_S, 0.1, SLOT_S + 0.1, SLOT_S + 0.1):
            now[0] += step
            issued.append(await chain.issue_blockhash())
        after = datetime.now(UTC)

    hashes = [blockhash.blockhash for blockhash in issued]
    assert hashes[0] == hashes[1], "one blockhash within a slot"
    assert hashes[2] == hashes[3], "one blockhash within a slot"
    assert len({hashes[0], hashes[2], hashes[4], hashes[5]}) == 4, "a new one each slot"
    assert issued[0] == issued[1], "with its expiry"
    for blockhash in issued:
        assert blockhash.expires_at.tzinfo is not None
        lifetime = blockhash.expires_at - timedelta(seconds=90)
        assert before - timedelta(seconds=5) < lifetime < after + timedelta(seconds=5)


async def test_the_next_blockhash_is_issued_ahead_once_a_build_finds_the_slot_half_over(
    database_url: str,
) -> None:
    async with on_a_clock(database_url, blockhash_ttl_s=90) as (chain, now):
        first = await chain.issue_blockhash()
        now[0] = SLOT_S / 4
        early = await chain.issue_blockhash()
        now[0] = SLOT_S * 3 / 4
        late = await chain.issue_blockhash()
        ahead = late
        for _ in range(200):  # the next slot's issue runs beside the builds
            ahead = await chain.issue_blockhash()
            if ahead != first:
                break
            await asyncio.sleep(0.01)
        now[0] = SLOT_S * 6 / 5  # past the first slot, not half into the one issued ahead
        next_slot = await chain.issue_blockhash()
        async with chain._pool.acquire() as connection:
            issued = await connection.fetchval("SELECT count(*) FROM chain.blockhashes")

    assert early == first, "nothing is issued in a slot's first half"
    assert late == first, "a build in the second half is handed the slot's blockhash at once"
    assert ahead != first, "and the next one is issued meanwhile"
    assert next_slot == ahead, "which the next slot hands out, issued once"
    assert issued == 2


async def test_a_recorded_swap_is_pending_until_it_lands_then_shows_its_outcome(
    chain: Chain,
) -> None:
    blockhash = await chain.issue_blockhash()
    landing_later = sent(blockhash, lands_in_s=3600)
    rejected_later = sent(blockhash, lands_in_s=3600, landed=False)
    landed_now = sent(blockhash)
    rejected_now = sent(blockhash, landed=False)
    for each in (landing_later, rejected_later, landed_now, rejected_now):
        await record(chain, each)

    for later_one in (landing_later, rejected_later):
        status = await chain.status(later_one.signature, blockhash.expires_at)
        assert status.state is TransactionState.PENDING
        assert status.execution is None
        assert status.error is None
    landed = await chain.status(landed_now.signature, blockhash.expires_at)
    rejected = await chain.status(rejected_now.signature, blockhash.expires_at)
    assert landed.state is TransactionState.LANDED
    assert landed.execution == landed_now.outcome
    assert rejected.state is TransactionState.REJECTED
    assert rejected.error == "slippage tolerance exceeded"


async def test_a_taken_swap_lands_whatever_expiry_it_is_asked_about_with(chain: Chain) -> None:
    blockhash = await chain.issue_blockhash()
    landed = sent(blockhash)
    await record(chain, landed)

    status = await chain.status(landed.signature, datetime(2000, 1, 1, tzinfo=UTC))

    assert status.state is TransactionState.LANDED


async def test_an_unknown_signature_is_pending_until_its_expiry_then_expired(
    chain: Chain,
) -> None:
    pending = await chain.status("never-sent", later())
    expired = await chain.status("never-sent", datetime.now(UTC) - timedelta(seconds=1))

    assert pending.state is TransactionState.PENDING
    assert expired.state is TransactionState.EXPIRED
    assert expired.error is not None
    assert "expired" in expired.error
    assert await chain.find("never-sent") is None


async def test_only_a_blockhash_the_chain_issued_and_still_valid_is_taken(
    database_url: str,
) -> None:
    chain = await Chain.open(database_url, 2, 5.0, blockhash_ttl_s=0)
    try:
        expired = await chain.issue_blockhash()
        forged = RecentBlockhash(blockhash="11111111111111111111111111111111", expires_at=later())
        attempts = {
            "blockhash expired": sent(expired),
            "blockhash not found": sent(forged),
        }
        for reason, each in attempts.items():
            with pytest.raises(SwapRejected, match=reason):
                await record(chain, each)
            assert await chain.find(each.signature) is None
            status = await chain.status(each.signature, expired.expires_at)
            assert status.state is TransactionState.EXPIRED
    finally:
        await chain.close()


async def test_a_transaction_that_misstates_its_expiry_is_refused(chain: Chain) -> None:
    blockhash = await chain.issue_blockhash()
    earlier = blockhash.model_copy(update={"expires_at": blockhash.expires_at - timedelta(1)})
    misstated = sent(earlier)

    with pytest.raises(SwapRejected, match="expires at"):
        await record(chain, misstated)

    assert await chain.find(misstated.signature) is None


async def test_a_signature_is_taken_once_and_keeps_its_first_outcome(chain: Chain) -> None:
    blockhash = await chain.issue_blockhash()
    first = sent(blockhash)
    await record(chain, first)
    again = sent(blockhash, landed=False, signature=first.signature)

    with pytest.raises(AlreadyProcessed) as raised:
        await record(chain, again)

    assert isinstance(raised.value, VenueError)
    assert not isinstance(raised.value, SwapRejected), "the first send may have landed"
    status = await chain.status(first.signature, blockhash.expires_at)
    assert status.state is TransactionState.LANDED
    assert await chain.landed_signatures([first.order_id]) == {first.order_id: [first.signature]}


async def test_a_signature_sent_twice_at_once_is_taken_once(
    chain: Chain, database_url: str
) -> None:
    """The second send is told the signature was processed, not why it would be refused.

    Both wait on the signature's lock, so the second reads from before the first committed.
    """
    blockhash = await chain.issue_blockhash()
    first = sent(blockhash)
    holder = await asyncpg.connect(database_url)
    try:
        async with holder.transaction():
            await holder.execute(
                "SELECT pg_advisory_xact_lock($1, hashtext($2))", SIGNATURE_LOCKS, first.signature
            )
            sends = [asyncio.create_task(record(chain, first)) for _ in range(2)]
            await asyncio.sleep(0.2)
            assert not any(send.done() for send in sends), "both wait for the lock"
        outcomes = await asyncio.gather(*sends, return_exceptions=True)
    finally:
        await holder.close()

    assert sorted(type(outcome).__name__ for outcome in outcomes) == [
        "AlreadyProcessed",
        "NoneType",
    ]
    assert await chain.landed_signatures([first.order_id]) == {first.order_id: [first.signature]}


async def test_a_signature_taken_and_sent_again_after_its_expiry_is_not_called_rejected(
    chain: Chain, database_url: str
) -> None:
    blockhash = await chain.issue_blockhash()
    first = sent(blockhash)
    await record(chain, first)
    admin = await asyncpg.connect(database_url)
    try:
        await admin.execute(
            "UPDATE chain.blockhashes SET expires_at = clock_timestamp() - interval '1 minute'"
            " WHERE blockhash = $1",
            blockhash.blockhash,
        )
    finally:
        await admin.close()

    with pytest.raises(AlreadyProcessed):
        await record(chain, first)


async def test_a_signature_being_taken_is_never_declared_expired(
    chain: Chain, database_url: str
) -> None:
    """A send still committing holds the signature's lock: the answer waits for it."""
    blockhash = await chain.issue_blockhash()
    in_flight = sent(blockhash)
    sender = await asyncpg.connect(database_url)
    try:
        async with sender.transaction():
            await sender.execute(
                "SELECT pg_advisory_xact_lock($1, hashtext($2))",
                SIGNATURE_LOCKS,
                in_flight.signature,
            )
            await sender.execute(
                "INSERT INTO chain.transactions (signature, dex, order_id, landed, amount_in,"
                " amount_out, executed_price, fee, lands_at)"
                " VALUES ($1, 'raydium', $2, true, 1, 149.6, 149.6, 0.0025, clock_timestamp())",
                in_flight.signature,
                in_flight.order_id,
            )
            asking = asyncio.create_task(
                chain.status(in_flight.signature, datetime.now(UTC) - timedelta(seconds=1))
            )
            await asyncio.sleep(0.2)
            assert not asking.done(), "the answer waits while the send holds the lock"
        status = await asking
    finally:
        await sender.close()

    assert status.state is TransactionState.LANDED


async def test_a_ledger_of_the_previous_version_is_upgraded_in_place(database_url: str) -> None:
    old = await asyncpg.connect(database_url)
    order_id = uuid.uuid4()
    try:
        await old.execute(
            """
            DROP SCHEMA chain CASCADE;
            CREATE SCHEMA chain;
            CREATE TABLE chain.transactions (
                signature text PRIMARY KEY, dex text NOT NULL, order_id uuid NOT NULL,
                landed boolean NOT NULL, amount_in numeric, amount_out numeric,
                executed_price numeric, fee numeric, error text,
                at timestamptz NOT NULL DEFAULT now());
            CREATE INDEX transactions_by_order ON chain.transactions (order_id);
            """
        )
        await old.execute(
            "INSERT INTO chain.transactions (signature, dex, order_id, landed, amount_in,"
            " amount_out, executed_price, fee) VALUES ('old', 'raydium', $1, true, 1, 149.6,"
            " 149.6, 0.0025)",
            order_id,
        )
    finally:
        await old.close()

    for _ in range(2):
        chain = await Chain.open(database_url, 2, 5.0)
        try:
            status = await chain.status("old", datetime(2000, 1, 1, tzinfo=UTC))
            landed = await chain.landed_signatures([order_id])
            blockhash = await chain.issue_blockhash()
            await record(chain, sent(blockhash))
        finally:
            await chain.close()

        assert status.state is TransactionState.LANDED
        assert status.execution == execution("old")
        assert landed == {order_id: ["old"]}


async def test_a_short_lived_blockhash_is_handed_out_for_a_tenth_of_its_life_at_most(
    database_url: str,
) -> None:
    async with on_a_clock(database_url, blockhash_ttl_s=1) as (chain, now):
        first = await chain.issue_blockhash()
        now[0] += 0.05
        same = await chain.issue_blockhash()
        now[0] += 0.06
        next_one = await chain.issue_blockhash()

    assert same == first
    assert next_one.blockhash != first.blockhash


async def _held_back(
    chain: Chain, database_url: str, blocker: Sent, sends: list[Sent]
) -> list[BaseException | None]:
    """Record `blocker` while its signature's lock is held elsewhere, then `sends` at once.

    The blocker's statement waits for the lock, so `sends` queue up meanwhile and are
    recorded together once it is let go: the outcome of each.
    """
    holder = await asyncpg.connect(database_url)
    try:
        async with holder.transaction():
            await holder.execute(
                "SELECT pg_advisory_xact_lock($1, hashtext($2))", SIGNATURE_LOCKS, blocker.signature
            )
            first = asyncio.create_task(record(chain, blocker))
            await asyncio.sleep(0.1)
            queued = [asyncio.create_task(record(chain, each)) for each in sends]
            await asyncio.sleep(0.1)
            assert not any(task.done() for task in [first, *queued]), "all wait for the blocker"
        await first
        return await asyncio.gather(*queued, return_exceptions=True)
    finally:
        await holder.close()


async def test_transactions_sent_at_once_are_recorded_together_each_on_its_own(
    chain: Chain, database_url: str
) -> None:
    blockhash = await chain.issue_blockhash()
    good = [sent(blockhash) for _ in range(3)]
    forged = sent(RecentBlockhash(blockhash="11111111111111111111111111111111", expires_at=later()))
    misstated = sent(blockhash.model_copy(update={"expires_at": later()}))

    outcomes = await _held_back(
        chain, database_url, sent(blockhash), [good[0], forged, good[1], misstated, good[2]]
    )

    assert [outcomes[0], outcomes[2], outcomes[4]] == [None, None, None]
    assert isinstance(outcomes[1], SwapRejected)
    assert "blockhash not found" in str(outcomes[1])
    assert isinstance(outcomes[3], SwapRejected)
    assert "expires at" in str(outcomes[3])
    for each in good:
        status = await chain.status(each.signature, blockhash.expires_at)
        assert status.state is TransactionState.LANDED
    for refused in (forged, misstated):
        assert await chain.find(refused.signature) is None
    reader = await asyncpg.connect(database_url)
    try:
        committed_at = await reader.fetch(
            "SELECT DISTINCT at FROM chain.transactions WHERE signature = ANY($1::text[])",
            [each.signature for each in good],
        )
    finally:
        await reader.close()
    assert len(committed_at) == 1, "one transaction took the three"


async def test_one_signature_twice_in_a_group_is_taken_once(
    chain: Chain, database_url: str
) -> None:
    blockhash = await chain.issue_blockhash()
    twice = sent(blockhash)
    other = sent(blockhash)

    outcomes = await _held_back(chain, database_url, sent(blockhash), [twice, other, twice])

    assert outcomes[0] is None
    assert outcomes[1] is None
    assert isinstance(outcomes[2], AlreadyProcessed)
    assert await chain.landed_signatures([twice.order_id]) == {twice.order_id: [twice.signature]}


async def test_a_transaction_the_store_refuses_fails_alone(chain: Chain, database_url: str) -> None:
    blockhash = await chain.issue_blockhash()
    good = [sent(blockhash) for _ in range(2)]
    unstorable = sent(blockhash, signature="sig-\x00")

    outcomes = await _held_back(
        chain, database_url, sent(blockhash), [good[0], unstorable, good[1]]
    )

    assert outcomes[0] is None
    assert isinstance(outcomes[1], asyncpg.PostgresError)
    assert outcomes[2] is None
    for each in good:
        status = await chain.status(each.signature, blockhash.expires_at)
        assert status.state is TransactionState.LANDED


async def test_builds_at_once_in_a_new_slot_share_one_blockhash(database_url: str) -> None:
    chain = await Chain.open(database_url, 4, 5.0, blockhash_ttl_s=60, clock=lambda: 0.0)
    admin = await asyncpg.connect(database_url)
    try:
        issued = await asyncio.gather(*(chain.issue_blockhash() for _ in range(10)))
        rows = await admin.fetchval("SELECT count(*) FROM chain.blockhashes")
    finally:
        await admin.close()
        await chain.close()

    assert len({each.blockhash for each in issued}) == 1
    assert rows == 1


async def test_a_blockhash_that_could_not_be_issued_is_issued_at_the_next_build(
    database_url: str,
) -> None:
    chain = await Chain.open(database_url, 2, 5.0, blockhash_ttl_s=60, clock=lambda: 0.0)
    admin = await asyncpg.connect(database_url)
    try:
        await admin.execute("ALTER TABLE chain.blockhashes RENAME TO away")
        failed = await asyncio.gather(
            *(chain.issue_blockhash() for _ in range(3)), return_exceptions=True
        )
        await admin.execute("ALTER TABLE chain.away RENAME TO blockhashes")
        issued = await chain.issue_blockhash()
        stored = await admin.fetchval(
            "SELECT count(*) FROM chain.blockhashes WHERE blockhash = $1", issued.blockhash
        )
    finally:
        await admin.close()
        await chain.close()

    assert all(isinstance(outcome, asyncpg.UndefinedTableError) for outcome in failed)
    assert stored == 1


async def test_blockhashes_long_expired_are_deleted_as_slots_go_by(database_url: str) -> None:
    async with on_a_clock(database_url, blockhash_ttl_s=90) as (chain, now):
        first = await chain.issue_blockhash()
        admin = await asyncpg.connect(database_url)
        try:
            await admin.execute(
                "UPDATE chain.blockhashes SET expires_at = clock_timestamp() - $2::interval"
                " WHERE blockhash = $1",
                first.blockhash,
                EXPIRED_KEPT + timedelta(seconds=1),
            )
            now[0] += 10
            kept = await chain.issue_blockhash()
            still_there = await admin.fetchval("SELECT count(*) FROM chain.blockhashes")
            now[0] += PRUNE_EVERY_S
            await chain.issue_blockhash()
            left = await admin.fetch("SELECT blockhash FROM chain.blockhashes")
        finally:
            await admin.close()

    assert still_there == 2, "not pruned again within PRUNE_EVERY_S of the first issue"
    assert first.blockhash not in {row["blockhash"] for row in left}
    assert kept.blockhash in {row["blockhash"] for row in left}


async def test_a_chain_opened_behind_a_reader_of_its_transactions_does_not_wait_for_it(
    chain: Chain, database_url: str
) -> None:
    """Its schema is up to date: opening it takes no lock a reading transaction holds off."""
    reader = await asyncpg.connect(database_url)
    try:
        async with reader.transaction():
            await reader.fetchval("SELECT count(*) FROM chain.transactions")
            async with asyncio.timeout(10):
                opened = await Chain.open(database_url, 1, 30.0)
            await opened.close()
    finally:
        await reader.close()
