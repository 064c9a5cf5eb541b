"""The live venues against Jupiter's and Solana's documented answers (`tests/live_cluster.py`).

Each venue quotes one pool of its own DEX, builds Jupiter's transaction with the engine's
bound, signs it with the wallet, sends it once, and reads what it did from the chain; every
way a send can end is told apart: landed, failed on chain, refused by the preflight, expired
by block height, or unknown (the answer lost), which only asking again resolves.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from decimal import ROUND_DOWN, Decimal
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from solders.keypair import Keypair
from solders.message import to_bytes_versioned
from structlog.testing import capture_logs

from orderengine.errors import NoRoute, SlippageExceeded, SwapRejected, VenueError
from orderengine.settings import Settings
from orderengine.tokens import TOKENS
from orderengine.transaction import Transaction
from orderengine.venues.endpoint import EndpointError
from orderengine.venues.factory import live_venues
from orderengine.venues.live import JupiterQuote, LiveVenue
from orderengine.venues.values import TransactionState
from tests.live_cluster import (
    NO_ROUTE,
    PREFLIGHT_FAILURE,
    SLOTS_AHEAD,
    Fate,
    LiveCluster,
    Lost,
    Reply,
    failed_status,
    fixture,
    http_fixture,
    live_cluster,
    live_settings,
    rpc_fixture,
    too_many_requests,
)

ONE_SOL = Decimal(1)
SOL, USDC = TOKENS["SOL"], TOKENS["USDC"]
LANDED_OUT = Decimal("149.101222")
"""What the landed swap of `transaction.json` paid the wallet: less than Meteora quoted."""


@pytest.fixture
def signer() -> Keypair:
    return Keypair()


@pytest.fixture
def cluster(signer: Keypair) -> Iterator[LiveCluster]:
    with live_cluster(signer.pubkey()) as cluster:
        yield cluster


@asynccontextmanager
async def opened(**overrides: Any) -> AsyncIterator[dict[str, LiveVenue]]:
    """Both live venues, as `live_venues` opens them for an engine with these settings."""
    settings = Settings(**live_settings(Path("keypair.json"), **overrides))
    async with live_venues(settings) as venues:
        assert all(isinstance(venue, LiveVenue) for venue in venues.values())
        yield {name: venue for name, venue in venues.items() if isinstance(venue, LiveVenue)}


async def quoted(venue: LiveVenue) -> JupiterQuote:
    quote = await venue.quote("SOL", "USDC", ONE_SOL)
    assert isinstance(quote, JupiterQuote)
    return quote


def least(quote: JupiterQuote, slippage_bps: int) -> Decimal:
    """The engine's minimum for `quote`: its output less the slippage, rounded down."""
    bound = quote.amount_out * (10_000 - slippage_bps) / 10_000
    return bound.quantize(USDC.unit, rounding=ROUND_DOWN)


async def built(venue: LiveVenue, signer: Keypair, slippage_bps: int = 100) -> Transaction:
    quote = await quoted(venue)
    return await venue.build(uuid4(), quote, least(quote, slippage_bps), signer)


async def test_each_venue_quotes_one_pool_of_its_own_dex(cluster: LiveCluster) -> None:
    async with opened() as venues:
        raydium, meteora = await asyncio.gather(
            quoted(venues["raydium"]), quoted(venues["meteora"])
        )

    asked = {request.params["dexes"]: request.params for request in cluster.calls("quote")}
    assert set(asked) == {"Raydium", "Meteora DLMM"}
    for label, params in asked.items():
        assert params == {
            "inputMint": SOL.mint,
            "outputMint": USDC.mint,
            "amount": "1000000000",
            "slippageBps": "50",
            "swapMode": "ExactIn",
            "dexes": label,
            "onlyDirectRoutes": "true",
        }
    assert (raydium.dex, meteora.dex) == ("raydium", "meteora")
    assert raydium.pool == "58oQChx4yWmvKdwLLZzBi4ChoCc2fqCUWBkwMihLYQo2"
    assert meteora.pool == "5rCf1DM8LjKTw4YqhnoLcngyZYeNnQqztScTogYHAS6"
    assert (raydium.amount_out, meteora.amount_out) == (
        Decimal("148.712345"),
        Decimal("149.213457"),
    )
    assert (raydium.fee, meteora.fee) == (Decimal("0.0025"), Decimal("0.001"))
    assert (raydium.fee_bps, meteora.fee_bps) == (Decimal(25), Decimal(10))
    assert raydium.price_impact_pct == Decimal("0.02415")
    assert meteora.price_impact_pct == Decimal("0.00812")


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(http_fixture(NO_ROUTE), id="no-route-400"),
        pytest.param(Reply(fixture("quote_meteora_dlmm.json")), id="a-pool-of-another-dex"),
    ],
)
async def test_a_dex_with_no_pool_of_its_own_for_the_pair_has_no_route(
    cluster: LiveCluster, answer: Reply
) -> None:
    cluster.script("quote:Raydium", answer)

    async with opened() as venues:
        with pytest.raises(NoRoute):
            await venues["raydium"].quote("SOL", "USDC", ONE_SOL)


async def test_a_swap_is_built_with_the_bound_signed_sent_once_and_read_from_the_chain(
    cluster: LiveCluster, signer: Keypair
) -> None:
    async with opened() as venues:
        venue = venues["meteora"]
        quote = await quoted(venue)
        minimum = least(quote, 100)
        transaction = await venue.build(uuid4(), quote, minimum, signer)
        execution = await venue.execute(transaction)

    [swap] = cluster.calls("swap")
    assert swap.body["userPublicKey"] == str(signer.pubkey())
    assert swap.body["wrapAndUnwrapSol"] is True
    assert swap.body["prioritizationFeeLamports"] == {
        "priorityLevelWithMaxLamports": {"maxLamports": 1_000_000, "priorityLevel": "veryHigh"}
    }
    bounded = swap.body["quoteResponse"]
    out, bps = int(bounded["outAmount"]), bounded["slippageBps"]
    raw_minimum = int(minimum.scaleb(USDC.decimals))
    # The program pays at least outAmount × (10000 − slippageBps) / 10000: the largest
    # slippage that keeps that at or over the engine's minimum, stated as the threshold.
    assert out * (10_000 - bps) // 10_000 >= raw_minimum > out * (10_000 - bps - 1) // 10_000
    assert int(bounded["otherAmountThreshold"]) == out * (10_000 - bps) // 10_000
    assert transaction.min_amount_out == Decimal(bounded["otherAmountThreshold"]).scaleb(-6)
    assert {
        key: value
        for key, value in bounded.items()
        if key not in {"slippageBps", "otherAmountThreshold"}
    } == {
        key: value
        for key, value in fixture("quote_meteora_dlmm.json").items()
        if key not in {"slippageBps", "otherAmountThreshold"}
    }

    [sent] = cluster.sent()
    [request] = cluster.calls("sendTransaction")
    assert request.params[1] == {"encoding": "base64", "preflightCommitment": "confirmed"}
    assert sent.message == cluster.swaps[0].transaction.message
    assert sent.message.account_keys[0] == signer.pubkey()
    assert sent.verify_with_results() == [True]
    assert sent.signatures[0].verify(signer.pubkey(), to_bytes_versioned(sent.message))
    assert str(sent.signatures[0]) == transaction.signature == execution.tx_hash
    assert bytes(sent) == transaction.raw
    assert transaction.last_valid_block_height == cluster.swaps[0].last_valid_block_height
    assert [i.program for i in transaction.instructions] == [
        "compute-budget",
        "compute-budget",
        "associated-token",
        "system",
        "spl-token",
        "jupiter",
        "spl-token",
    ]

    assert execution.dex == "meteora"
    assert execution.amount_in == ONE_SOL
    assert execution.amount_out == LANDED_OUT
    assert execution.amount_out != quote.amount_out
    assert execution.executed_price == LANDED_OUT
    assert execution.fee == quote.fee
    assert execution.network_fee == Decimal("0.000015")
    assert execution.priority_fee == Decimal("0.00001")
    [asked] = cluster.calls("getTransaction")
    assert asked.params == [
        transaction.signature,
        {"encoding": "json", "commitment": "confirmed", "maxSupportedTransactionVersion": 0},
    ]
    statuses = cluster.calls("getSignatureStatuses")
    assert statuses[0].params == [[transaction.signature], {"searchTransactionHistory": True}]


async def test_each_build_is_a_new_transaction_with_a_new_signature(
    cluster: LiveCluster, signer: Keypair
) -> None:
    async with opened() as venues:
        first = await built(venues["raydium"], signer)
        second = await built(venues["raydium"], signer)

    assert first.signature != second.signature
    assert cluster.sent() == []


async def test_a_swap_not_paid_by_the_wallet_is_refused_and_never_sent(
    cluster: LiveCluster, signer: Keypair
) -> None:
    cluster.swap_payer = Keypair().pubkey()

    async with opened() as venues:
        with pytest.raises(SwapRejected, match="not paid by this wallet"):
            await built(venues["raydium"], signer)

    assert cluster.sent() == []


async def test_a_swap_jupiter_cannot_build_is_a_venue_error_and_never_sent(
    cluster: LiveCluster, signer: Keypair
) -> None:
    cluster.script("swap", Reply({"error": "Internal Server Error"}, 500))

    async with opened(live_retries=0) as venues:
        with pytest.raises(VenueError, match="answered 500: Internal Server Error"):
            await built(venues["raydium"], signer)

    assert cluster.sent() == []


async def test_a_rate_limit_is_waited_out_as_retry_after_asks(
    cluster: LiveCluster, signer: Keypair
) -> None:
    cluster.script("quote:Meteora DLMM", too_many_requests("1"))
    cluster.script("sendTransaction", too_many_requests("0"))

    with capture_logs() as logs:
        async with opened() as venues:
            transaction = await built(venues["meteora"], signer)
            execution = await venues["meteora"].execute(transaction)

    retries = [line for line in logs if line["event"] == "endpoint_retry"]
    assert [(line["host"], line["wait_s"] >= 1) for line in retries] == [
        ("lite-api.jup.ag", True),
        ("mainnet.rpc-provider.test", False),
    ]
    assert len(cluster.calls("quote")) == 2
    assert cluster.sent_signatures() == [transaction.signature] * 2
    assert execution.tx_hash == transaction.signature


async def test_a_swap_that_fails_on_chain_is_rejected(
    cluster: LiveCluster, signer: Keypair
) -> None:
    cluster.next_sends(Fate.FAILS)

    async with opened() as venues:
        transaction = await built(venues["meteora"], signer)
        with pytest.raises(SlippageExceeded, match=r"on chain: slippage exceeded .*6001"):
            await venues["meteora"].execute(transaction)
        status = await venues["meteora"].transaction_status(
            transaction.signature, transaction.expires_at, transaction.last_valid_block_height
        )

    assert (status.state, status.slipped) == (TransactionState.REJECTED, True)
    assert cluster.calls("getTransaction") == []


async def test_a_swap_that_fails_on_chain_for_another_reason_is_rejected_not_slipped(
    cluster: LiveCluster, signer: Keypair
) -> None:
    cluster.next_sends(Fate.DROPPED)
    insufficient = {"InstructionError": [3, {"Custom": 1}]}

    async with opened() as venues:
        transaction = await built(venues["meteora"], signer)
        cluster.script("getSignatureStatuses", failed_status("finalized", insufficient))
        with pytest.raises(SwapRejected, match=r"failed on chain: .*'Custom': 1\}") as refused:
            await venues["meteora"].execute(transaction)

    assert not isinstance(refused.value, SlippageExceeded)


async def test_a_swap_the_preflight_refuses_is_rejected_with_the_programs_error(
    cluster: LiveCluster, signer: Keypair
) -> None:
    cluster.script("sendTransaction", rpc_fixture(PREFLIGHT_FAILURE))

    async with opened() as venues:
        transaction = await built(venues["meteora"], signer)
        with pytest.raises(SwapRejected) as refused:
            await venues["meteora"].execute(transaction)

    assert isinstance(refused.value, SlippageExceeded), "6001 is Jupiter's slippage error"
    assert "InstructionError" in refused.value.message
    assert "custom program error: 0x1771" in refused.value.message
    assert cluster.calls("getSignatureStatuses") == []


async def test_a_swap_that_never_lands_expires_once_the_block_height_passes_its_last(
    cluster: LiveCluster, signer: Keypair
) -> None:
    cluster.next_sends(Fate.DROPPED)
    cluster.blocks_per_call = 100

    async with opened() as venues:
        transaction = await built(venues["meteora"], signer)
        assert transaction.last_valid_block_height is not None
        with pytest.raises(SwapRejected, match="expired without landing"):
            await venues["meteora"].execute(transaction)

    heights = [request for request in cluster.requests if request.kind == "getEpochInfo"]
    assert len(heights) == 3
    assert cluster.block_height - cluster.blocks_per_call > transaction.last_valid_block_height
    # Past the last valid height, the status is asked once more before it counts as expired.
    assert cluster.requests[-1].kind == "getSignatureStatuses"
    assert cluster.sent_signatures() == [transaction.signature]


async def test_a_send_whose_answer_is_lost_is_unknown_until_the_cluster_is_asked(
    cluster: LiveCluster, signer: Keypair
) -> None:
    cluster.script("sendTransaction", Lost())

    async with opened() as venues:
        venue = venues["meteora"]
        transaction = await built(venue, signer)
        with pytest.raises(EndpointError, match="no answer in time") as lost:
            await venue.execute(transaction)
        status = await venue.transaction_status(
            transaction.signature, transaction.expires_at, transaction.last_valid_block_height
        )

    assert not isinstance(lost.value, SwapRejected)
    assert status.state is TransactionState.LANDED
    assert status.execution is not None
    assert status.execution.amount_out == LANDED_OUT
    assert cluster.sent_signatures() == [transaction.signature]


async def test_a_failure_seen_only_as_processed_is_not_yet_definite(
    cluster: LiveCluster, signer: Keypair
) -> None:
    signature = str(signer.sign_message(b"a swap sent before"))
    cluster.script("getSignatureStatuses", failed_status("processed"), failed_status("confirmed"))

    async with opened() as venues:
        venue = venues["raydium"]
        asked = [
            await venue.transaction_status(signature, datetime.now(UTC), 10**12) for _ in range(2)
        ]

    assert [status.state for status in asked] == [
        TransactionState.PENDING,
        TransactionState.REJECTED,
    ]


async def test_a_jupiter_api_key_goes_in_its_header_and_is_never_logged(
    cluster: LiveCluster, signer: Keypair
) -> None:
    key = "jupiter-paid-key-0123456789"

    with capture_logs() as logs:
        cluster.script("quote", too_many_requests())
        async with opened(jupiter_api_key=key) as venues:
            await built(venues["raydium"], signer)

    jupiter = cluster.calls("quote") + cluster.calls("swap")
    assert len(jupiter) == 3, "a quote refused once, then answered; one swap"
    assert all(request.headers.get("x-api-key") == key for request in jupiter)
    assert logs, "the refused quote was retried, and logged"
    assert key not in repr(logs)


async def test_a_preflight_refusal_of_a_send_that_went_twice_is_not_taken_as_definite(
    cluster: LiveCluster, signer: Keypair
) -> None:
    cluster.script("sendTransaction", too_many_requests("0"), rpc_fixture(PREFLIGHT_FAILURE))
    cluster.blocks_per_call = 100

    async with opened() as venues:
        transaction = await built(venues["meteora"], signer)
        with pytest.raises(SwapRejected, match="expired without landing"):
            await venues["meteora"].execute(transaction)

    assert cluster.calls("getSignatureStatuses"), "the first request may have delivered it"


def blockhash_not_found() -> Reply:
    """The preflight's refusal of a transaction on a blockhash the node has not seen."""
    refused = fixture(PREFLIGHT_FAILURE)
    refused["error"]["message"] = "Transaction simulation failed: Blockhash not found"
    refused["error"]["data"].update(err="BlockhashNotFound", logs=[], unitsConsumed=0)
    return Reply(refused)


async def test_a_swap_on_a_blockhash_the_node_has_not_seen_yet_is_sent_again_as_it_was(
    cluster: LiveCluster, signer: Keypair
) -> None:
    """Jupiter's node may be ahead of the engine's: the same bytes go again, one signature."""
    cluster.script("sendTransaction", blockhash_not_found(), blockhash_not_found())

    async with opened() as venues:
        transaction = await built(venues["meteora"], signer)
        with capture_logs() as logs:
            execution = await venues["meteora"].execute(transaction)

    assert execution.tx_hash == transaction.signature
    assert cluster.sent_signatures() == [transaction.signature] * 3
    assert [line["event"] for line in logs].count("preflight_blockhash_unseen") == 2


async def test_a_blockhash_the_node_never_sees_ends_the_attempt_unsent_once_it_expires(
    cluster: LiveCluster, signer: Keypair
) -> None:
    cluster.script("sendTransaction", blockhash_not_found())

    async with opened() as venues:
        transaction = await built(venues["meteora"], signer)
        expired = transaction.model_copy(update={"expires_at": datetime.now(UTC)})
        with pytest.raises(SwapRejected, match="BlockhashNotFound"):
            await venues["meteora"].execute(expired)

    assert cluster.calls("getSignatureStatuses") == []


async def test_a_swap_the_cluster_processed_already_is_followed_to_its_landing(
    cluster: LiveCluster, signer: Keypair
) -> None:
    processed = fixture(PREFLIGHT_FAILURE)
    processed["error"]["data"]["err"] = "AlreadyProcessed"

    async with opened() as venues:
        transaction = await built(venues["meteora"], signer)
        cluster.land(transaction.signature)
        cluster.script("sendTransaction", Reply(processed))
        execution = await venues["meteora"].execute(transaction)

    assert execution.tx_hash == transaction.signature
    assert execution.amount_out == LANDED_OUT


async def test_an_unknown_signature_answered_by_a_node_behind_is_not_taken_as_expired(
    cluster: LiveCluster, signer: Keypair
) -> None:
    cluster.status_lag = 10_000

    async with opened() as venues:
        transaction = await built(venues["meteora"], signer)
        assert transaction.last_valid_block_height is not None
        cluster.block_height = transaction.last_valid_block_height + 1
        status = await venues["meteora"].transaction_status(
            transaction.signature, datetime.now(UTC), transaction.last_valid_block_height
        )
        cluster.status_lag = 0
        caught_up = await venues["meteora"].transaction_status(
            transaction.signature, datetime.now(UTC), transaction.last_valid_block_height
        )

    assert status.state is TransactionState.PENDING
    assert caught_up.state is TransactionState.EXPIRED


async def test_an_unknown_signature_on_a_node_that_forgot_its_slots_is_not_taken_as_expired(
    cluster: LiveCluster, signer: Keypair
) -> None:
    async with opened() as venues:
        transaction = await built(venues["meteora"], signer)
        assert transaction.last_valid_block_height is not None
        cluster.block_height = transaction.last_valid_block_height + 1
        cluster.minimum_ledger_slot = cluster.block_height + SLOTS_AHEAD
        with capture_logs() as logs:
            status = await venues["meteora"].transaction_status(
                transaction.signature, datetime.now(UTC), transaction.last_valid_block_height
            )

    assert status.state is TransactionState.PENDING
    assert [line["event"] for line in logs] == ["ledger_too_short_to_tell_expiry"]


async def test_a_swap_is_not_taken_as_expired_while_the_cluster_still_takes_its_blockhash(
    cluster: LiveCluster, signer: Keypair
) -> None:
    """Jupiter's `lastValidBlockHeight` may be stale: past it, the swap may still land.

    Taken for expired there, its order would send a second swap beside the first.
    """
    cluster.reported_height_lag = 60

    async with opened() as venues:
        transaction = await built(venues["meteora"], signer)
        assert transaction.last_valid_block_height is not None
        assert transaction.blockhash is not None
        lifetime = (
            transaction.signature,
            datetime.now(UTC),
            transaction.last_valid_block_height,
            transaction.blockhash,
        )
        cluster.block_height = transaction.last_valid_block_height + 1
        with capture_logs() as logs:
            still_valid = await venues["meteora"].transaction_status(*lifetime)
        cluster.block_height = cluster.blockhashes[transaction.blockhash] + 1
        expired = await venues["meteora"].transaction_status(*lifetime)

    assert still_valid.state is TransactionState.PENDING
    assert [line["event"] for line in logs] == ["blockhash_valid_past_its_last_valid_height"]
    assert expired.state is TransactionState.EXPIRED
    assert [request.params[0] for request in cluster.calls("isBlockhashValid")] == [
        transaction.blockhash
    ] * 2


async def test_the_cluster_is_not_asked_about_expiry_before_the_estimate_passes(
    cluster: LiveCluster, signer: Keypair
) -> None:
    cluster.blocks_per_call = 200

    async with opened() as venues:
        transaction = await built(venues["meteora"], signer)
        status = await venues["meteora"].transaction_status(
            transaction.signature,
            datetime.now(UTC) + timedelta(minutes=1),
            transaction.last_valid_block_height,
        )

    assert status.state is TransactionState.PENDING
    assert cluster.calls("getEpochInfo") == []
    assert cluster.calls("minimumLedgerSlot") == []


async def test_a_swap_followed_long_past_its_lifetime_with_nothing_definite_is_left_unknown(
    cluster: LiveCluster, signer: Keypair
) -> None:
    """Landed, its amounts unreadable: the engine is told the outcome is unknown, and asks later."""
    unreadable = fixture("transaction.json")
    unreadable["result"]["meta"] = None

    async with opened() as venues:
        transaction = await built(venues["meteora"], signer)
        cluster.land(transaction.signature)
        cluster.script("getTransaction", *[Reply(unreadable)] * 3)
        long_ago = transaction.model_copy(
            update={"expires_at": datetime.now(UTC) - timedelta(hours=1)}
        )
        with pytest.raises(VenueError, match="not definite") as unknown:
            await venues["meteora"].execute(long_ago)

    assert not isinstance(unknown.value, SwapRejected)
    assert cluster.sent_signatures() == [transaction.signature]


async def test_a_landed_swap_whose_amounts_cannot_be_read_waits_and_is_never_retried(
    cluster: LiveCluster, signer: Keypair
) -> None:
    async with opened() as venues:
        transaction = await built(venues["meteora"], signer)
        cluster.land(transaction.signature)
        unreadable = fixture("transaction.json")
        unreadable["result"]["meta"] = None
        cluster.script("getTransaction", Reply(unreadable))
        with capture_logs() as logs:
            waiting = await venues["meteora"].transaction_status(
                transaction.signature, transaction.expires_at, transaction.last_valid_block_height
            )
        readable = await venues["meteora"].transaction_status(
            transaction.signature, transaction.expires_at, transaction.last_valid_block_height
        )

    assert waiting.state is TransactionState.PENDING
    assert [line["event"] for line in logs] == ["landed_swap_unreadable"]
    assert readable.state is TransactionState.LANDED
    assert readable.execution is not None
    assert readable.execution.amount_out == LANDED_OUT
