"""Building the swap transaction from a hand-made quote: its instructions, bound and signature."""

from __future__ import annotations

import uuid
from decimal import Decimal
from uuid import UUID

import base58
import pytest

from orderengine.tokens import TOKENS, WSOL_MINT
from orderengine.transaction import Instruction, Transaction, build, min_amount_out, sign
from orderengine.venues.values import Dex, Quote

ORDER_ID = UUID("3f2b8c1e-5a4d-4e6f-9b7a-0c1d2e3f4a5b")
BASE58_ALPHABET = set("123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz")


def quote(
    token_in: str,
    token_out: str,
    amount_in: str,
    amount_out: str,
    dex: Dex = "raydium",
) -> Quote:
    amount_in_, amount_out_ = Decimal(amount_in), Decimal(amount_out)
    return Quote(
        dex=dex,
        pool=f"{dex}-{token_in}-{token_out}-pool",
        token_in=token_in,
        token_out=token_out,
        amount_in=amount_in_,
        amount_out=amount_out_,
        price=amount_out_ / amount_in_,
        price_impact_pct=Decimal("0.01"),
        fee=amount_in_ * Decimal("0.0025"),
        fee_bps=Decimal("25.00"),
    )


def steps(transaction: Transaction) -> list[tuple[str, str]]:
    return [(step.program, step.action) for step in transaction.instructions]


def instruction(action: str, transaction: Transaction) -> Instruction:
    (found,) = [step for step in transaction.instructions if step.action == action]
    return found


# ---- instructions -------------------------------------------------------------------------


def test_sol_in_is_wrapped_swapped_and_unwrapped() -> None:
    transaction = build(ORDER_ID, 1, quote("SOL", "USDC", "1.5", "224.5"), 100)

    assert steps(transaction) == [
        ("associated-token", "createIdempotent"),
        ("system", "transfer"),
        ("spl-token", "syncNative"),
        ("raydium", "swap"),
        ("spl-token", "closeAccount"),
    ]
    for action in ("createIdempotent", "syncNative", "closeAccount"):
        assert instruction(action, transaction).args == {"mint": WSOL_MINT}


@pytest.mark.parametrize(
    ("amount", "lamports"),
    [
        ("1.5", "1500000000"),
        ("0.000000001", "1"),
        ("0.123456789", "123456789"),
        ("12345.678901234", "12345678901234"),
        ("1E+3", "1000000000000"),
    ],
)
def test_sol_in_transfers_the_exact_lamports(amount: str, lamports: str) -> None:
    transaction = build(ORDER_ID, 1, quote("SOL", "USDC", amount, "1"), 50)

    assert instruction("transfer", transaction).args == {"lamports": lamports}


def test_sol_out_creates_the_wsol_account_and_closes_it_without_funding_it() -> None:
    transaction = build(ORDER_ID, 1, quote("USDC", "SOL", "150", "0.99", dex="meteora"), 50)

    assert steps(transaction) == [
        ("associated-token", "createIdempotent"),
        ("meteora", "swap"),
        ("spl-token", "closeAccount"),
    ]
    assert instruction("createIdempotent", transaction).args == {"mint": WSOL_MINT}
    assert instruction("closeAccount", transaction).args == {"mint": WSOL_MINT}


@pytest.mark.parametrize("dex", ["raydium", "meteora"])
@pytest.mark.parametrize(("token_in", "token_out"), [("USDC", "BONK"), ("JUP", "USDT")])
def test_token_to_token_swap_is_only_the_swap(token_in: str, token_out: str, dex: Dex) -> None:
    transaction = build(ORDER_ID, 1, quote(token_in, token_out, "10", "8", dex=dex), 50)

    assert steps(transaction) == [(dex, "swap")]


def test_swap_names_the_pool_mints_amount_in_and_minimum_out() -> None:
    the_quote = quote("JUP", "USDC", "100", "79.6", dex="meteora")

    swap = instruction("swap", build(ORDER_ID, 1, the_quote, 50))

    assert swap.program == "meteora"
    assert swap.args == {
        "pool": "meteora-JUP-USDC-pool",
        "mintIn": TOKENS["JUP"].mint,
        "mintOut": TOKENS["USDC"].mint,
        "amountIn": "100",
        "minAmountOut": "79.202000",
    }


def test_transaction_carries_its_order_quote_and_bound() -> None:
    the_quote = quote("SOL", "USDC", "2", "299.123456")

    transaction = build(ORDER_ID, 3, the_quote, 75)

    assert transaction.order_id == ORDER_ID
    assert transaction.quote == the_quote
    assert transaction.min_amount_out == min_amount_out(the_quote, 75)
    assert instruction("swap", transaction).args["minAmountOut"] == str(transaction.min_amount_out)
    assert transaction.signature == sign(ORDER_ID, 3)


# ---- the slippage bound -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("token_out", "amount_out", "slippage_bps", "expected"),
    [
        # 1.234567 × 0.9999 = 1.2344435433: down to 1.234443, never up to 1.234444.
        ("USDC", "1.234567", 1, "1.234443"),
        ("USDC", "100", 50, "99.500000"),
        # 0.987654321 × 0.995 = 0.982716049395: down at SOL's nine places.
        ("SOL", "0.987654321", 50, "0.982716049"),
        # 12345.67891 × 0.97 = 11975.3085427: down at BONK's five places.
        ("BONK", "12345.67891", 300, "11975.30854"),
        ("USDT", "10", 5_000, "5.000000"),
    ],
)
def test_min_amount_out_is_the_quote_less_slippage_rounded_down_to_the_token_unit(
    token_out: str, amount_out: str, slippage_bps: int, expected: str
) -> None:
    token_in = "USDC" if token_out != "USDC" else "SOL"
    minimum = min_amount_out(quote(token_in, token_out, "1", amount_out), slippage_bps)

    assert str(minimum) == expected
    assert minimum.as_tuple().exponent == -TOKENS[token_out].decimals


def test_min_amount_out_never_exceeds_the_quote_after_slippage() -> None:
    the_quote = quote("SOL", "USDC", "1", "149.999999")

    for slippage_bps in (1, 7, 50, 333, 5_000):
        minimum = min_amount_out(the_quote, slippage_bps)
        exact = the_quote.amount_out * (10_000 - slippage_bps) / 10_000
        assert minimum <= exact < minimum + TOKENS["USDC"].unit


# ---- the signature ------------------------------------------------------------------------


def test_signature_is_the_same_when_an_attempt_is_rebuilt() -> None:
    first = build(ORDER_ID, 2, quote("SOL", "USDC", "1", "150"), 50)
    again = build(ORDER_ID, 2, quote("SOL", "USDC", "1", "149", dex="meteora"), 100)

    assert first.signature == again.signature


def test_signature_differs_across_attempts_and_orders() -> None:
    other_order = uuid.uuid4()

    signatures = {
        sign(order, attempt) for order in (ORDER_ID, other_order) for attempt in (1, 2, 3)
    }

    assert len(signatures) == 6


@pytest.mark.parametrize("attempt", [1, 2, 10])
def test_signature_is_base58_of_64_bytes(attempt: int) -> None:
    signature = build(ORDER_ID, attempt, quote("USDC", "SOL", "150", "1"), 50).signature

    assert set(signature) <= BASE58_ALPHABET
    assert len(base58.b58decode(signature)) == 64
