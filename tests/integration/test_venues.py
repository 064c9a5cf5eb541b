"""The simulated venues against their chain in PostgreSQL: slippage and signatures."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest

from orderengine.errors import SlippageExceeded
from orderengine.transaction import build, min_amount_out
from orderengine.venues.chain import Chain
from orderengine.venues.raydium import Raydium
from orderengine.venues.values import TransactionState


async def test_swap_past_the_slippage_bound_is_rejected_and_recorded(
    chain: Chain,
) -> None:
    venue = Raydium(chain, latency_scale=0, failure_rate=0, volatility_bps=0, seed=1)
    quote = await venue.quote("SOL", "USDC", Decimal(1))
    greedy = quote.model_copy(update={"amount_out": quote.amount_out * Decimal("1.1")})
    transaction = build(uuid.uuid4(), 1, greedy, slippage_bps=10)

    with pytest.raises(SlippageExceeded):
        await venue.execute(transaction)

    status = await venue.transaction_status(transaction.signature)
    assert status.state is TransactionState.REJECTED
    assert status.error is not None
    assert "slippage" in status.error


async def test_a_landed_swap_is_in_the_ledger_and_a_never_sent_one_is_dropped(
    chain: Chain,
) -> None:
    venue = Raydium(chain, latency_scale=0, failure_rate=0, volatility_bps=5, seed=1)
    quote = await venue.quote("SOL", "USDC", Decimal(2))
    transaction = build(uuid.uuid4(), 1, quote, slippage_bps=100)

    execution = await venue.execute(transaction)
    landed = await venue.transaction_status(transaction.signature)
    never_sent = await venue.transaction_status(build(uuid.uuid4(), 1, quote, 100).signature)

    assert execution.amount_out >= min_amount_out(quote, 100)
    assert landed.state is TransactionState.LANDED
    assert landed.execution == execution
    assert never_sent.state is TransactionState.DROPPED
