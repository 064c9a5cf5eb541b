"""The engine's bound as Jupiter's slippage, the priority fee, and the swap answer read.

The swap program accepts `outAmount × (10000 − slippageBps) // 10000`, so the bound is the
largest slippage that keeps that at or above the engine's minimum.
"""

from __future__ import annotations

import base64
from typing import Any, cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from solders.pubkey import Pubkey

from orderengine.errors import SwapRejected
from orderengine.venues.endpoint import Endpoint
from orderengine.venues.jupiter import Jupiter, PriorityFee, with_minimum

U64_MAX = 2**64 - 1


def quote(out_amount: int) -> dict[str, Any]:
    return {
        "inputMint": "So11111111111111111111111111111111111111112",
        "outputMint": "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v",
        "inAmount": "1000000000",
        "outAmount": str(out_amount),
        "otherAmountThreshold": str(out_amount * 9950 // 10_000),
        "slippageBps": 50,
        "swapMode": "ExactIn",
        "routePlan": [{"swapInfo": {"label": "Raydium", "ammKey": "pool"}, "percent": 100}],
    }


def accepted(out_amount: int, bps: int) -> int:
    """The least output the swap program accepts for this quote and slippage."""
    return out_amount * (10_000 - bps) // 10_000


def test_the_bound_becomes_the_slippage_that_accepts_exactly_the_minimum() -> None:
    original = quote(1_000_000)

    bounded = with_minimum(original, 990_000)

    assert bounded["slippageBps"] == 100
    assert bounded["otherAmountThreshold"] == "990000"
    assert original["slippageBps"] == 50
    assert original["otherAmountThreshold"] == "995000"
    unchanged = {key: value for key, value in bounded.items() if key in original}
    assert unchanged | {"slippageBps": 50, "otherAmountThreshold": "995000"} == original


def test_the_slippage_is_rounded_down_to_keep_the_minimum() -> None:
    bounded = with_minimum(quote(1_000_003), 990_000)

    assert bounded["slippageBps"] == 100
    assert bounded["otherAmountThreshold"] == "990002"
    assert accepted(1_000_003, 101) < 990_000


def test_a_minimum_equal_to_the_quote_gives_no_slippage() -> None:
    bounded = with_minimum(quote(123_456_789), 123_456_789)

    assert bounded["slippageBps"] == 0
    assert bounded["otherAmountThreshold"] == "123456789"


def test_a_small_quote_keeps_its_minimum_despite_the_rounding() -> None:
    bounded = with_minimum(quote(3), 2)

    assert bounded["slippageBps"] == 3333
    assert bounded["otherAmountThreshold"] == "2"


@settings(max_examples=300, database=None)
@given(st.integers(min_value=1, max_value=U64_MAX), st.data())
def test_the_slippage_is_the_largest_that_keeps_the_minimum(
    out_amount: int, data: st.DataObject
) -> None:
    minimum = data.draw(st.integers(min_value=0, max_value=out_amount), label="minimum")

    bounded = with_minimum(quote(out_amount), minimum)

    bps = bounded["slippageBps"]
    assert isinstance(bps, int)
    assert 0 <= bps <= 10_000
    assert int(bounded["otherAmountThreshold"]) == accepted(out_amount, bps)
    assert accepted(out_amount, bps) >= minimum
    assert bps == 10_000 or accepted(out_amount, bps + 1) < minimum
    assert bounded["outAmount"] == str(out_amount)


def test_a_fixed_priority_fee_is_a_compute_unit_price() -> None:
    assert PriorityFee(microlamports=25_000, max_lamports=1_000_000).request() == {
        "computeUnitPriceMicroLamports": 25_000
    }


def test_a_fixed_priority_fee_of_zero_is_still_fixed() -> None:
    assert PriorityFee(microlamports=0, max_lamports=1_000_000).request() == {
        "computeUnitPriceMicroLamports": 0
    }


def test_without_a_fixed_price_jupiter_estimates_the_fee_up_to_a_cap() -> None:
    assert PriorityFee(microlamports=None, max_lamports=750_000).request() == {
        "prioritizationFeeLamports": {
            "priorityLevelWithMaxLamports": {"maxLamports": 750_000, "priorityLevel": "veryHigh"}
        }
    }


def test_a_quote_that_pays_less_than_the_minimum_is_refused_not_bounded_below_it() -> None:
    with pytest.raises(SwapRejected, match="under the least accepted"):
        with_minimum(quote(1_000), 1_001)


def test_a_fixed_priority_fee_at_most_is_rounded_up_as_the_runtime_charges_it() -> None:
    # 1_400_000 units at 1 microlamport: 1.4 lamports, charged as 2.
    assert PriorityFee(microlamports=1, max_lamports=0).most_lamports == 2
    assert PriorityFee(microlamports=25_715, max_lamports=0).most_lamports == 36_001
    assert PriorityFee(microlamports=None, max_lamports=750_000).most_lamports == 750_000


class Answering:
    """An endpoint that answers every POST with `answer`."""

    def __init__(self, answer: Any) -> None:
        self.answer = answer

    async def post(self, path: str, body: Any) -> Any:
        return self.answer


def jupiter_answering(answer: Any) -> Jupiter:
    return Jupiter(cast(Endpoint, Answering(answer)), PriorityFee(None, 1_000_000))


UNSIGNED = base64.b64encode(b"unsigned transaction").decode()
WALLET = Pubkey.from_string("So11111111111111111111111111111111111111112")


async def test_the_swap_answer_gives_the_transaction_and_its_last_valid_height() -> None:
    answer = {
        "swapTransaction": UNSIGNED,
        "lastValidBlockHeight": 311_870_475,
        "prioritizationFeeLamports": 9999,
    }

    swap = await jupiter_answering(answer).swap(quote(1_000), WALLET)

    assert swap.unsigned == b"unsigned transaction"
    assert swap.last_valid_block_height == 311_870_475


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        (["not", "an", "object"], "not an object"),
        ({"lastValidBlockHeight": 311_870_475}, "no swapTransaction"),
        ({"swapTransaction": 12, "lastValidBlockHeight": 311_870_475}, "no swapTransaction"),
        ({"swapTransaction": UNSIGNED}, "no lastValidBlockHeight"),
        ({"swapTransaction": UNSIGNED, "lastValidBlockHeight": "soon"}, "no lastValidBlockHeight"),
        ({"swapTransaction": "not base64!", "lastValidBlockHeight": 1}, "not base64"),
        ({"swapTransaction": "abc", "lastValidBlockHeight": 1}, "not base64"),
    ],
)
async def test_a_swap_answer_without_a_transaction_is_a_rejected_swap(
    answer: Any, why: str
) -> None:
    with pytest.raises(SwapRejected, match=why):
        await jupiter_answering(answer).swap(quote(1_000), WALLET)
