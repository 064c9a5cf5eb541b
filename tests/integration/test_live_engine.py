"""An engine on the live venues, against Jupiter's and Solana's documented answers.

The app runs in-process on this test's database, its venues opened by `live_venues`; the
fake cluster (`tests/live_cluster.py`) answers every request to Jupiter and to the RPC
endpoint, and lets the test client's requests to the app through. Each test follows an
order over its stream and checks what the cluster was sent: a swap is sent once, an unknown
outcome is reconciled by asking, and only a definite rejection or expiry lets a new quote
and a new signature go.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import ROUND_DOWN, Decimal
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpClient
from solders.keypair import Keypair
from solders.message import to_bytes_versioned
from solders.transaction import VersionedTransaction
from structlog.testing import capture_logs

from orderengine.app import create_app
from orderengine.domain import NewOrder, OrderRequest, OrderStatus
from orderengine.repository import Repository
from orderengine.venues.factory import live_venues
from orderengine.wallet import InvalidKeypair
from tests import recorded_traffic
from tests.harness import Client, fast_settings
from tests.live_cluster import (
    NO_ROUTE,
    PATH_SECRET,
    PREFLIGHT_FAILURE,
    QUERY_SECRET,
    UNKNOWN_STATUS,
    Answer,
    Fate,
    LiveCluster,
    Lost,
    Reply,
    fixture,
    http_fixture,
    live_cluster,
    live_settings,
    rpc_fixture,
    too_many_requests,
    unsigned_swap,
    write_keypair,
)
from tests.polling import eventually
from tests.streams import statuses, stream, submit

S = OrderStatus
ORDER = {
    "type": "market",
    "tokenIn": "SOL",
    "tokenOut": "USDC",
    "amountIn": "1",
    "slippageBps": 100,
}
"""One SOL, the amount of the quote and transaction fixtures."""
LANDED_OUT = Decimal("149.101222")
"""What the landed swap of `transaction.json` paid the wallet: less than Meteora quoted."""
METEORA_OUT = Decimal("149.213457")

StartLive = Callable[..., Awaitable[Client]]


@pytest.fixture
def keypair_file(tmp_path: Path) -> Path:
    return tmp_path / "keypair.json"


@pytest.fixture
def wallet(keypair_file: Path) -> Keypair:
    return write_keypair(keypair_file)


@pytest.fixture
def cluster(wallet: Keypair) -> Iterator[LiveCluster]:
    with live_cluster(wallet.pubkey()) as cluster:
        yield cluster


@pytest.fixture
def start_live(
    cluster: LiveCluster, database_url: str, aiohttp_client: AiohttpClient, keypair_file: Path
) -> StartLive:
    """Start the app on the live venues; keyword arguments override settings.

    As `start_app` starts it, which cannot take `venues="live"`: its `venues` is the factory.
    The cluster is set up before the app's client and torn down after it, so that the
    engine stops while the cluster still answers.
    """

    async def start(**overrides: Any) -> Client:
        settings = fast_settings(database_url, **live_settings(keypair_file, **overrides))
        app = create_app(settings, live_venues)
        return await aiohttp_client(app, **recorded_traffic.client_kwargs())

    return start


def sent_in(events: list[dict[str, Any]]) -> list[str]:
    return [event["txHash"] for event in events if event["status"] == "submitted"]


async def test_a_market_order_is_routed_built_signed_sent_once_and_read_from_the_chain(
    start_live: StartLive, cluster: LiveCluster, wallet: Keypair
) -> None:
    client = await start_live()

    events = await stream(client, await submit(client, ORDER))

    assert statuses(events) == ["pending", "routing", "building", "submitted", "confirmed"]
    routing, building, submitted, confirmed = events[1:]
    asked = sorted((r.params for r in cluster.calls("quote")), key=lambda p: str(p["dexes"]))
    assert [params["dexes"] for params in asked] == ["Meteora DLMM", "Raydium"]
    assert all(params["onlyDirectRoutes"] == "true" for params in asked)
    assert all(params["amount"] == "1000000000" for params in asked)
    assert routing["dex"] == "meteora"
    assert {quote["dex"]: Decimal(quote["amountOut"]) for quote in routing["quotes"]} == {
        "meteora": METEORA_OUT,
        "raydium": Decimal("148.712345"),
    }

    [swap] = cluster.calls("swap")
    assert swap.body["userPublicKey"] == str(wallet.pubkey())
    bounded = swap.body["quoteResponse"]
    assert bounded["routePlan"][0]["swapInfo"]["label"] == "Meteora DLMM"
    out, bps = int(bounded["outAmount"]), bounded["slippageBps"]
    minimum = int((METEORA_OUT * Decimal("0.99")).quantize(Decimal("1e-6"), ROUND_DOWN) * 10**6)
    threshold = int(bounded["otherAmountThreshold"])
    assert threshold == out * (10_000 - bps) // 10_000
    assert threshold >= minimum > out * (10_000 - bps - 1) // 10_000
    assert Decimal(building["transaction"]["minAmountOut"]) == Decimal(threshold).scaleb(-6)

    [sent] = cluster.sent()
    assert sent.message == cluster.swaps[0].transaction.message
    assert sent.message.account_keys[0] == wallet.pubkey()
    assert sent.verify_with_results() == [True]
    assert sent.signatures[0].verify(wallet.pubkey(), to_bytes_versioned(sent.message))
    signature = str(sent.signatures[0])
    assert building["transaction"]["signature"] == submitted["txHash"] == signature
    assert submitted["lastValidBlockHeight"] == cluster.swaps[0].last_valid_block_height

    assert confirmed["txHash"] == signature
    assert confirmed["dex"] == "meteora"
    assert Decimal(confirmed["amountIn"]) == 1
    assert Decimal(confirmed["amountOut"]) == LANDED_OUT != METEORA_OUT
    assert Decimal(confirmed["executedPrice"]) == LANDED_OUT
    assert Decimal(confirmed["fee"]) == Decimal("0.001")
    assert Decimal(confirmed["networkFee"]) == Decimal("0.000015")
    assert Decimal(confirmed["priorityFee"]) == Decimal("0.00001")
    order = await (await client.get(f"/api/orders/{confirmed['orderId']}")).json()
    assert Decimal(order["amountOut"]) == LANDED_OUT
    assert order["txHash"] == signature


async def test_a_dex_jupiter_has_no_route_on_is_left_out_and_the_other_chosen(
    start_live: StartLive, cluster: LiveCluster
) -> None:
    cluster.script("quote:Meteora DLMM", http_fixture(NO_ROUTE))
    client = await start_live()

    events = await stream(client, await submit(client, ORDER))

    assert statuses(events) == ["pending", "routing", "building", "submitted", "confirmed"]
    routing = events[1]
    assert routing["dex"] == "raydium"
    assert routing["unavailable"] == {
        "meteora": "quote failed: Jupiter has no route on Meteora DLMM for this pair"
    }
    [swap] = cluster.calls("swap")
    assert swap.body["quoteResponse"]["routePlan"][0]["swapInfo"]["label"] == "Raydium"


async def test_a_send_refused_with_429_is_sent_again_after_retry_after_and_lands_once(
    start_live: StartLive, cluster: LiveCluster
) -> None:
    cluster.script("sendTransaction", too_many_requests("0"))
    client = await start_live()

    events = await stream(client, await submit(client, ORDER))

    assert statuses(events) == ["pending", "routing", "building", "submitted", "confirmed"]
    assert {event["attempt"] for event in events} == {1}
    assert cluster.sent_signatures() == [events[-1]["txHash"]] * 2
    assert len(cluster.swaps) == 1


REJECTIONS = {
    "failed-on-chain": (
        "the swap failed on chain: slippage exceeded ({'InstructionError': [5, {'Custom': 6001}]})"
    ),
    "preflight-refused": (
        "the cluster refused the swap: {'InstructionError': [5, {'Custom': 6001}]}"
        " (Program JUP6LkbZbjS1jKKwapdHNy74zcZ3tLUZoi5QNyVTaV4 failed: custom program error:"
        " 0x1771)"
    ),
}


def reject_next_send(cluster: LiveCluster, how: str) -> None:
    if how == "failed-on-chain":
        cluster.next_sends(Fate.FAILS)
    else:
        cluster.script("sendTransaction", rpc_fixture(PREFLIGHT_FAILURE))


@pytest.mark.parametrize("how", list(REJECTIONS))
async def test_a_rejected_swap_is_retried_with_a_new_quote_and_signature(
    start_live: StartLive, cluster: LiveCluster, how: str
) -> None:
    reject_next_send(cluster, how)
    client = await start_live(max_attempts=2)

    events = await stream(client, await submit(client, ORDER))

    assert statuses(events) == [
        *("pending", "routing", "building", "submitted"),
        *("pending", "routing", "building", "submitted", "confirmed"),
    ]
    retry = events[4]
    assert retry["attempt"] == 2
    assert retry["error"] == REJECTIONS[how]
    first, second = sent_in(events)
    assert first != second
    assert cluster.sent_signatures() == [first, second]
    assert events[-1]["txHash"] == second
    assert len(cluster.calls("quote")) == 4
    assert cluster.calls("getTransaction")[-1].params[0] == second


async def test_a_swap_failed_on_chain_at_the_last_attempt_fails_the_order(
    start_live: StartLive, cluster: LiveCluster
) -> None:
    cluster.next_sends(Fate.FAILS)
    client = await start_live(max_attempts=1)

    events = await stream(client, await submit(client, ORDER))

    assert statuses(events) == ["pending", "routing", "building", "submitted", "failed"]
    assert events[-1]["error"] == f"failed after 1 attempt(s): {REJECTIONS['failed-on-chain']}"
    assert len(cluster.sent()) == 1
    assert cluster.calls("getTransaction") == []


async def test_a_swap_jupiter_cannot_build_ends_the_attempt_unsent(
    start_live: StartLive, cluster: LiveCluster
) -> None:
    failure = Reply({"error": "Internal Server Error"}, 500)
    cluster.script("swap", failure, failure)
    client = await start_live(live_retries=1)

    events = await stream(client, await submit(client, ORDER))

    assert statuses(events) == [
        *("pending", "routing", "pending"),
        *("routing", "building", "submitted", "confirmed"),
    ]
    assert events[2]["error"] == "lite-api.jup.ag answered 500: Internal Server Error"
    assert len(cluster.sent()) == 1


async def test_an_expired_swap_is_retried_with_a_new_quote_and_a_new_signature(
    start_live: StartLive, cluster: LiveCluster
) -> None:
    cluster.next_sends(Fate.DROPPED)
    cluster.blocks_per_call = 100
    client = await start_live()

    events = await stream(client, await submit(client, ORDER))

    assert statuses(events) == [
        *("pending", "routing", "building", "submitted"),
        *("pending", "routing", "building", "submitted", "confirmed"),
    ]
    first, second = sent_in(events)
    assert first != second
    assert events[4]["error"] == f"transaction {first} expired without landing"
    assert events[-1]["txHash"] == second
    assert cluster.sent_signatures() == [first, second]
    submitted = [event for event in events if event["status"] == "submitted"]
    expired_at, retried_with = (event["lastValidBlockHeight"] for event in submitted)
    assert retried_with > expired_at
    # The second attempt was quoted afresh, after the first swap was sent.
    kinds = [request.kind for request in cluster.requests]
    first_send = kinds.index("sendTransaction")
    assert kinds[first_send:].count("quote") == 2
    assert kinds[first_send:].count("swap") == 1


async def test_an_answer_lost_after_sending_is_reconciled_without_sending_again(
    start_live: StartLive, cluster: LiveCluster
) -> None:
    unknown = rpc_fixture(UNKNOWN_STATUS)
    cluster.script("sendTransaction", Lost())
    cluster.script("getSignatureStatuses", unknown, unknown)
    client = await start_live()

    events = await stream(client, await submit(client, ORDER))

    assert statuses(events) == ["pending", "routing", "building", "submitted", "confirmed"]
    confirmed = events[-1]
    assert confirmed["reconciled"] is True
    assert cluster.sent_signatures() == [confirmed["txHash"]]
    assert len(cluster.calls("getSignatureStatuses")) >= 3
    assert Decimal(confirmed["amountOut"]) == LANDED_OUT


async def left_submitted(
    repository: Repository,
    cluster: LiveCluster,
    wallet: Keypair,
    *,
    expires_in_s: float = 60,
    reported_lag: int = 0,
) -> tuple[UUID, str, int]:
    """An order a stopped engine left `submitted`: its swap signed and maybe sent.

    Its `expiresAt`, the estimate of its blockhash's expiry, is `expires_in_s` from now; the
    last valid height kept with it is `reported_lag` blocks lower than its blockhash's.
    """
    request = OrderRequest(type="market", token_in="SOL", token_out="USDC", amount_in=Decimal(1))
    [outcome] = await repository.create_orders([NewOrder(request=request)])
    assert not isinstance(outcome, Exception)
    order = outcome[0]
    for status in (S.ROUTING, S.BUILDING):
        order, _ = await repository.transition(order, status, dex="meteora")
    unsigned = unsigned_swap(wallet.pubkey(), fixture("quote_meteora_dlmm.json"))
    signature = str(VersionedTransaction(unsigned.message, [wallet]).signatures[0])
    blockhash = str(unsigned.message.recent_blockhash)
    cluster.blockhashes[blockhash] = cluster.block_height + 150
    last_valid = cluster.blockhashes[blockhash] - reported_lag
    await repository.transition(
        order,
        S.SUBMITTED,
        dex="meteora",
        tx_hash=signature,
        tx_expires_at=datetime.now(UTC) + timedelta(seconds=expires_in_s),
        tx_last_valid_block_height=last_valid,
        tx_blockhash=blockhash,
    )
    return order.order_id, signature, last_valid


async def test_a_restart_confirms_a_live_swap_that_landed_without_sending_anything(
    start_live: StartLive, cluster: LiveCluster, repository: Repository, wallet: Keypair
) -> None:
    order_id, signature, _ = await left_submitted(repository, cluster, wallet)
    cluster.land(signature)

    client = await start_live()
    events = await stream(client, str(order_id))

    assert statuses(events) == ["pending", "routing", "building", "submitted", "confirmed"]
    confirmed = events[-1]
    assert confirmed["reconciled"] is True
    assert confirmed["txHash"] == signature
    assert Decimal(confirmed["amountOut"]) == LANDED_OUT
    assert confirmed.get("fee") is None
    assert Decimal(confirmed["networkFee"]) == Decimal("0.000015")
    assert cluster.calls("sendTransaction") == []
    assert cluster.calls("quote") == []
    assert [request.params[0] for request in cluster.calls("getTransaction")] == [signature]


async def test_a_restart_retries_a_live_swap_that_expired_with_a_new_one(
    start_live: StartLive, cluster: LiveCluster, repository: Repository, wallet: Keypair
) -> None:
    order_id, dropped, last_valid = await left_submitted(
        repository, cluster, wallet, expires_in_s=-1
    )
    cluster.block_height = last_valid + 1

    client = await start_live()
    events = await stream(client, str(order_id))

    assert statuses(events)[4:] == ["pending", "routing", "building", "submitted", "confirmed"]
    retry = events[4]
    assert retry["reconciled"] is True
    assert retry["attempt"] == 2
    assert retry["error"] == f"transaction {dropped} expired without landing"
    [sent] = cluster.sent_signatures()
    assert sent != dropped
    assert events[-1]["txHash"] == sent


async def test_a_restart_sends_no_second_swap_while_the_first_ones_blockhash_lives(
    start_live: StartLive, cluster: LiveCluster, repository: Repository, wallet: Keypair
) -> None:
    """The last valid height kept with the order is past, but was reported too low."""
    order_id, dropped, last_valid = await left_submitted(
        repository, cluster, wallet, expires_in_s=-1, reported_lag=60
    )
    cluster.block_height = last_valid + 1

    client = await start_live()

    async def asked_twice() -> bool:
        return len(cluster.calls("isBlockhashValid")) >= 2

    await eventually(asked_twice)
    order = await (await client.get(f"/api/orders/{order_id}")).json()
    assert order["status"] == "submitted"
    assert cluster.sent_signatures() == []

    cluster.block_height = last_valid + 61
    events = await stream(client, str(order_id))
    assert statuses(events)[4:] == ["pending", "routing", "building", "submitted", "confirmed"]
    assert events[4]["error"] == f"transaction {dropped} expired without landing"
    [sent] = cluster.sent_signatures()
    assert sent != dropped


async def test_a_live_engine_will_not_start_without_its_keypair_file(
    cluster: LiveCluster, database_url: str, tmp_path: Path
) -> None:
    missing = tmp_path / "wallets" / "engine.json"
    app = create_app(fast_settings(database_url, **live_settings(missing)), live_venues)

    with pytest.raises(InvalidKeypair, match="no keypair file"):
        await web.AppRunner(app).setup()

    assert not missing.exists()
    assert cluster.requests == []


def exposed(value: Any) -> bool:
    """Whether `value`, written out in full, holds a part of the RPC URL that is secret."""
    text = json.dumps(value, default=repr)
    return PATH_SECRET in text or QUERY_SECRET in text


async def test_no_secret_of_the_rpc_url_reaches_a_log_line_an_event_or_an_order(
    start_live: StartLive, cluster: LiveCluster
) -> None:
    faults: list[Answer] = [too_many_requests("0"), rpc_fixture(PREFLIGHT_FAILURE), Lost()]
    cluster.script("sendTransaction", *faults)
    cluster.script("getSignatureStatuses", TimeoutError())
    cluster.blocks_per_call = 100

    with capture_logs() as logs:
        client = await start_live(max_attempts=2)
        order_id = await submit(client, ORDER)
        events = await stream(client, order_id)
        order = await (await client.get(f"/api/orders/{order_id}")).json()

    assert statuses(events)[-1] == "confirmed"
    assert events[-1]["reconciled"] is True
    retried = [line for line in logs if line["event"] == "endpoint_retry"]
    assert {line["host"] for line in retried} == {"mainnet.rpc-provider.test"}
    assert any(line["event"] == "outcome_unknown" for line in logs)
    assert not exposed(logs)
    assert not exposed(events)
    assert not exposed(order)
