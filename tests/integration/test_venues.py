"""The simulated venues against their chain in PostgreSQL.

A swap's outcome is decided and recorded when it is sent, and it lands on schedule whether or
not the sender is still there; a signature the chain never took is pending until its expiry
and expired after; and the chain takes only a verified transaction on a live blockhash.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from solders.keypair import Keypair
from solders.message import Message
from solders.transaction import Transaction as SolanaTransaction

from orderengine.errors import SlippageExceeded, SwapRejected
from orderengine.transaction import Transaction, build, min_amount_out
from orderengine.venues.chain import Chain
from orderengine.venues.meteora import Meteora
from orderengine.venues.raydium import Raydium
from orderengine.venues.values import RecentBlockhash, TransactionState
from tests.polling import eventually

SIGNER = Keypair.from_seed(bytes(range(32)))
INTRUDER = Keypair.from_seed(bytes([9] * 32))


@pytest.fixture
async def chain(database_url: str) -> AsyncIterator[Chain]:
    """The chain with blockhashes that live a minute, so that no test here races their expiry."""
    chain = await Chain.open(database_url, 2, 5.0, blockhash_ttl_s=60)
    yield chain
    await chain.close()


def raydium(chain: Chain, **settings: Any) -> Raydium:
    values: dict[str, Any] = {
        "latency_scale": 0,
        "failure_rate": 0,
        "volatility_bps": 0,
        "seed": 1,
        **settings,
    }
    return Raydium(chain, **values)


async def swap(
    venue: Raydium | Meteora,
    *,
    slippage_bps: int = 100,
    blockhash: RecentBlockhash | None = None,
    signer: Keypair = SIGNER,
) -> Transaction:
    """A signed swap of 1 SOL for USDC on `venue`, built on a fresh blockhash of its chain."""
    quote = await venue.quote("SOL", "USDC", Decimal(1))
    blockhash = blockhash or await venue.recent_blockhash()
    return build(uuid.uuid4(), quote, min_amount_out(quote, slippage_bps), signer, blockhash)


def a_minute_ago() -> datetime:
    return datetime.now(UTC) - timedelta(minutes=1)


async def test_a_landed_swap_is_on_the_chain_with_its_execution(chain: Chain) -> None:
    venue = raydium(chain, volatility_bps=5)
    transaction = await swap(venue)

    execution = await venue.execute(transaction)
    status = await venue.transaction_status(transaction.signature, transaction.expires_at)

    assert execution.tx_hash == transaction.signature
    assert execution.amount_out >= transaction.min_amount_out
    assert status.state is TransactionState.LANDED
    assert status.execution == execution
    landed = await chain.landed_signatures([transaction.order_id])
    assert landed == {transaction.order_id: [transaction.signature]}


async def test_swap_past_the_slippage_bound_is_rejected_and_recorded(chain: Chain) -> None:
    venue = raydium(chain)
    quote = await venue.quote("SOL", "USDC", Decimal(1))
    greedy = quote.model_copy(update={"amount_out": quote.amount_out * Decimal("1.1")})
    minimum = min_amount_out(greedy, 10)
    transaction = build(uuid.uuid4(), greedy, minimum, SIGNER, await venue.recent_blockhash())

    with pytest.raises(SlippageExceeded):
        await venue.execute(transaction)

    status = await venue.transaction_status(transaction.signature, transaction.expires_at)
    assert status.state is TransactionState.REJECTED
    assert status.error is not None
    assert "slippage" in status.error
    assert await chain.landed_signatures([transaction.order_id]) == {transaction.order_id: []}


async def test_a_signature_never_sent_is_pending_until_its_expiry_then_expired(
    chain: Chain,
) -> None:
    venue = raydium(chain)
    never_sent = await swap(venue)

    pending = await venue.transaction_status(never_sent.signature, never_sent.expires_at)
    expired = await venue.transaction_status(never_sent.signature, a_minute_ago())

    assert pending.state is TransactionState.PENDING
    assert expired.state is TransactionState.EXPIRED


async def test_a_swap_sent_by_an_engine_that_died_lands_on_schedule(
    chain: Chain, database_url: str
) -> None:
    """The sender is cancelled as soon as the chain has the swap, and a new one asks."""
    venue = raydium(chain, latency_scale=1)
    transaction = await swap(venue)
    sending = asyncio.create_task(venue.execute(transaction))

    async def taken() -> bool:
        return await chain.find(transaction.signature) is not None

    await eventually(taken, limit_s=10, interval_s=0.005)
    sending.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await sending
    del venue

    restarted = await Chain.open(database_url, 2, 5.0)
    try:
        fresh = raydium(restarted)
        # A swap lands at least 0.6 s (30% of 2 s) after it was sent, at latency scale 1.
        first = await fresh.transaction_status(transaction.signature, transaction.expires_at)

        async def landed() -> bool:
            status = await fresh.transaction_status(transaction.signature, a_minute_ago())
            return status.state is TransactionState.LANDED

        await eventually(landed, limit_s=10, interval_s=0.05)
        status = await fresh.transaction_status(transaction.signature, transaction.expires_at)
    finally:
        await restarted.close()

    assert first.state is TransactionState.PENDING
    assert status.execution is not None
    assert status.execution.tx_hash == transaction.signature
    assert status.execution.amount_in == transaction.quote.amount_in
    assert status.execution.amount_out >= min_amount_out(transaction.quote, 100)


def tampered(transaction: Transaction) -> Transaction:
    """The same transaction with one byte of its message changed (in its last instruction)."""
    raw = bytearray(transaction.raw)
    raw[-1] ^= 0x01
    return transaction.model_copy(update={"raw": bytes(raw)})


def resigned(transaction: Transaction) -> Transaction:
    """The same message with a signature by another key in place of the signer's."""
    signed = SolanaTransaction.from_bytes(transaction.raw)
    message = Message.from_bytes(bytes(signed.message))
    forged = SolanaTransaction.populate(message, [INTRUDER.sign_message(bytes(message))])
    return transaction.model_copy(
        update={"raw": bytes(forged), "signature": str(forged.signatures[0])}
    )


def misdescribed(transaction: Transaction) -> Transaction:
    """The signed bytes untouched, but a lower bound claimed beside them."""
    lower = transaction.min_amount_out / 2
    return transaction.model_copy(update={"min_amount_out": lower})


def misnamed(transaction: Transaction) -> Transaction:
    """The signed bytes untouched, under a signature that is not theirs."""
    other = resigned(transaction).signature
    return transaction.model_copy(update={"signature": other})


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (tampered, "signature verification failure"),
        (resigned, "signature verification failure"),
        (misdescribed, "does not hold the raydium swap it describes"),
        (misnamed, "first signature is not"),
        (lambda t: t.model_copy(update={"raw": b"\x01garbage"}), "malformed transaction"),
    ],
    ids=["bytes changed", "signed by another key", "misdescribed", "misnamed", "garbage"],
)
async def test_a_transaction_that_fails_verification_is_rejected_and_never_lands(
    chain: Chain, change: Any, reason: str
) -> None:
    venue = raydium(chain)
    transaction = change(await swap(venue))

    with pytest.raises(SwapRejected, match=reason):
        await venue.execute(transaction)

    assert await chain.find(transaction.signature) is None
    assert await chain.landed_signatures([transaction.order_id]) == {transaction.order_id: []}


async def test_a_swap_for_another_venue_is_rejected(chain: Chain) -> None:
    meteora = Meteora(chain, latency_scale=0, failure_rate=0, volatility_bps=0, seed=1)
    transaction = await swap(meteora)

    with pytest.raises(SwapRejected, match="meteora swap cannot be executed on raydium"):
        await raydium(chain).execute(transaction)

    assert await chain.find(transaction.signature) is None


async def test_a_swap_on_an_unknown_or_expired_blockhash_never_lands(
    chain: Chain, database_url: str
) -> None:
    short_lived = await Chain.open(database_url, 2, 5.0, blockhash_ttl_s=0)
    try:
        expired = await short_lived.issue_blockhash()
    finally:
        await short_lived.close()
    unknown = RecentBlockhash(
        blockhash="4uQeVj5tqViQh7yWWGStvkEG1Zmhx6uasJtWCJziofM",
        expires_at=datetime.now(UTC) + timedelta(minutes=1),
    )
    venue = raydium(chain)

    for blockhash, reason in ((expired, "blockhash expired"), (unknown, "blockhash not found")):
        transaction = await swap(venue, blockhash=blockhash)
        with pytest.raises(SwapRejected, match=reason):
            await venue.execute(transaction)

        assert await chain.find(transaction.signature) is None
        status = await venue.transaction_status(transaction.signature, expired.expires_at)
        assert status.state is TransactionState.EXPIRED


async def test_a_swap_sent_twice_is_executed_once(chain: Chain) -> None:
    venue = raydium(chain)
    transaction = await swap(venue)
    execution = await venue.execute(transaction)

    with pytest.raises(Exception, match="already processed") as raised:
        await venue.execute(transaction)

    assert not isinstance(raised.value, SwapRejected), "the first send landed"
    status = await venue.transaction_status(transaction.signature, transaction.expires_at)
    assert status.execution == execution
    landed = await chain.landed_signatures([transaction.order_id])
    assert landed == {transaction.order_id: [transaction.signature]}


async def test_a_wallet_other_than_the_engines_may_swap(chain: Chain) -> None:
    venue = raydium(chain)

    execution = await venue.execute(await swap(venue, signer=INTRUDER))

    assert execution.amount_out > 0
