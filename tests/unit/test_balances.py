"""What a landed swap moved for its fee payer, read from `getTransaction`'s balances.

Each transaction here is built as a cluster reports one (JSON encoding): the accounts'
lamports before and after, and the token accounts' balances with their owners. The pool's
own vaults move too, owned by the pool, and must not count.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest

from orderengine.tokens import TOKENS, WSOL_MINT
from orderengine.venues.balances import LAMPORTS_PER_SIGNATURE, Moved, Unreadable, moved

PAYER = "Pay3r1111111111111111111111111111111111111"
POOL = "Poo11111111111111111111111111111111111111111"
USDC = TOKENS["USDC"].mint
JUP = TOKENS["JUP"].mint
ATA_RENT = 2_039_280
"""The lamports a token account holds to be rent-exempt."""


@dataclass(frozen=True)
class Account:
    """One account of the transaction: lamports before and after, and a token balance.

    `mint` None is a plain account; otherwise a token account owned by `owner`, whose
    balance `tokens_before` is None when it did not exist before the transaction.
    """

    lamports_before: int
    lamports_after: int
    mint: str | None = None
    owner: str | None = None
    tokens_before: int | None = None
    tokens_after: int | None = None


def token_balance(index: int, account: Account, amount: int) -> dict[str, Any]:
    decimals = 9 if account.mint == WSOL_MINT else 6
    return {
        "accountIndex": index,
        "mint": account.mint,
        "owner": account.owner,
        "programId": "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA",
        "uiTokenAmount": {
            "amount": str(amount),
            "decimals": decimals,
            "uiAmount": amount / 10**decimals,
            "uiAmountString": str(Decimal(amount).scaleb(-decimals)),
        },
    }


def landed(
    payer: Account, *others: Account, fee: int = 5_000, signatures: int = 1
) -> dict[str, Any]:
    """A `getTransaction` result in which the fee payer (account 0) is `payer`."""
    accounts = (payer, *others)
    pre_tokens = [
        token_balance(index, account, account.tokens_before)
        for index, account in enumerate(accounts)
        if account.mint is not None and account.tokens_before is not None
    ]
    post_tokens = [
        token_balance(index, account, account.tokens_after)
        for index, account in enumerate(accounts)
        if account.mint is not None and account.tokens_after is not None
    ]
    keys = [PAYER] + [f"Acc{index:0>40}" for index in range(1, len(accounts))]
    return {
        "slot": 312_000_000,
        "blockTime": 1_750_000_000,
        "meta": {
            "err": None,
            "fee": fee,
            "preBalances": [account.lamports_before for account in accounts],
            "postBalances": [account.lamports_after for account in accounts],
            "preTokenBalances": pre_tokens,
            "postTokenBalances": post_tokens,
            "logMessages": [],
        },
        "transaction": {
            "message": {"accountKeys": keys, "instructions": [], "recentBlockhash": "x"},
            "signatures": [f"sig{index}" for index in range(signatures)],
        },
        "version": 0,
    }


def vault(mint: str, before: int, after: int) -> Account:
    """A pool's token account: owned by the pool, not the payer."""
    return Account(ATA_RENT, ATA_RENT, mint, POOL, before, after)


def test_sol_to_usdc_opening_the_usdc_account_counts_neither_fee_nor_rent_as_sold() -> None:
    sold, fee = 1_234_567_891, 5_000 + 17_321
    transaction = landed(
        Account(10_000_000_000, 10_000_000_000 - sold - fee - ATA_RENT),
        Account(0, ATA_RENT, USDC, PAYER, None, 185_185_183),
        vault(WSOL_MINT, 900_000_000_000, 900_000_000_000 + sold),
        vault(USDC, 5_000_000_000_000, 5_000_000_000_000 - 185_185_183),
        fee=fee,
    )

    assert moved(transaction) == Moved(
        token_in="SOL",
        token_out="USDC",
        amount_in=Decimal("1.234567891"),
        amount_out=Decimal("185.185183"),
        network_fee=Decimal("0.000022321"),
        priority_fee=Decimal("0.000017321"),
    )


def test_usdc_to_sol_comes_out_as_lamports_with_the_fee_added_back() -> None:
    fee = 5_000 + 1_000
    bought = 987_654_321
    transaction = landed(
        Account(50_000_000, 50_000_000 + bought - fee),
        Account(ATA_RENT, ATA_RENT, USDC, PAYER, 150_000_000, 0),
        vault(USDC, 5_000_000_000_000, 5_000_000_000_000 + 150_000_000),
        vault(WSOL_MINT, 900_000_000_000, 900_000_000_000 - bought),
        fee=fee,
    )

    swap = moved(transaction)

    assert (swap.token_in, swap.amount_in) == ("USDC", Decimal("150"))
    assert (swap.token_out, swap.amount_out) == ("SOL", Decimal("0.987654321"))
    assert swap.network_fee == Decimal("0.000006")
    assert swap.priority_fee == Decimal("0.000001")


def test_wrapped_sol_the_payer_holds_counts_as_sol() -> None:
    transaction = landed(
        Account(50_000_000, 50_000_000 - 5_000),
        Account(ATA_RENT, ATA_RENT, USDC, PAYER, 20_000_000, 0),
        Account(ATA_RENT + 1_000, ATA_RENT + 134_000_000, WSOL_MINT, PAYER, 1_000, 134_000_000),
        vault(USDC, 10**12, 10**12 + 20_000_000),
    )

    swap = moved(transaction)

    assert (swap.token_out, swap.amount_out) == ("SOL", Decimal("0.133999"))


def test_usdc_to_jup_opening_the_jup_account_moves_no_sol() -> None:
    fee = 5_000
    transaction = landed(
        Account(50_000_000, 50_000_000 - fee - ATA_RENT),
        Account(ATA_RENT, ATA_RENT, USDC, PAYER, 1_000_000_000, 999_000_001),
        Account(0, ATA_RENT, JUP, PAYER, None, 1_249_999),
        vault(USDC, 10**12, 10**12 + 999_999),
        vault(JUP, 10**12, 10**12 - 1_249_999),
    )

    assert moved(transaction) == Moved(
        token_in="USDC",
        token_out="JUP",
        amount_in=Decimal("0.999999"),
        amount_out=Decimal("1.249999"),
        network_fee=Decimal("0.000005"),
        priority_fee=Decimal(0),
    )


def test_the_priority_fee_is_what_the_fee_pays_above_5000_lamports_a_signature() -> None:
    fee = 2 * LAMPORTS_PER_SIGNATURE + 3_333
    transaction = landed(
        Account(50_000_000, 50_000_000 - fee),
        Account(ATA_RENT, ATA_RENT, USDC, PAYER, 10_000_000, 0),
        Account(ATA_RENT, ATA_RENT, JUP, PAYER, 0, 12_000_000),
        fee=fee,
        signatures=2,
    )

    swap = moved(transaction)

    assert swap.network_fee == Decimal("0.000013333")
    assert swap.priority_fee == Decimal("0.000003333")


def test_balances_of_other_owners_are_ignored() -> None:
    someone = "S0meone11111111111111111111111111111111111"
    transaction = landed(
        Account(50_000_000, 50_000_000 - 5_000),
        Account(ATA_RENT, ATA_RENT, USDC, PAYER, 10_000_000, 0),
        Account(ATA_RENT, ATA_RENT, JUP, PAYER, 0, 12_000_000),
        Account(ATA_RENT, ATA_RENT, USDC, someone, 0, 77_000_000),
        Account(0, ATA_RENT, TOKENS["USDT"].mint, someone, None, 5_000_000),
        Account(ATA_RENT, ATA_RENT, JUP, someone, 9_000_000, 0),
    )

    swap = moved(transaction)

    assert (swap.token_in, swap.amount_in) == ("USDC", Decimal("10"))
    assert (swap.token_out, swap.amount_out) == ("JUP", Decimal("12"))


def test_two_tokens_bought_is_unreadable() -> None:
    transaction = landed(
        Account(50_000_000, 50_000_000 - 5_000),
        Account(ATA_RENT, ATA_RENT, USDC, PAYER, 10_000_000, 0),
        Account(ATA_RENT, ATA_RENT, JUP, PAYER, 0, 6_000_000),
        Account(ATA_RENT, ATA_RENT, TOKENS["USDT"].mint, PAYER, 0, 4_000_000),
    )

    with pytest.raises(Unreadable, match="one token sold and one bought"):
        moved(transaction)


def test_nothing_moved_is_unreadable() -> None:
    transaction = landed(
        Account(50_000_000, 50_000_000 - 5_000),
        Account(ATA_RENT, ATA_RENT, USDC, PAYER, 10_000_000, 10_000_000),
    )

    with pytest.raises(Unreadable):
        moved(transaction)


def test_an_unknown_mint_is_unreadable() -> None:
    unknown = "Unkn0wnMint11111111111111111111111111111111"
    assert all(token.mint != unknown for token in TOKENS.values())
    transaction = landed(
        Account(50_000_000, 50_000_000 - 5_000),
        Account(ATA_RENT, ATA_RENT, USDC, PAYER, 10_000_000, 0),
        Account(ATA_RENT, ATA_RENT, unknown, PAYER, 0, 6_000_000),
    )

    with pytest.raises(Unreadable, match=unknown):
        moved(transaction)


def test_a_wsol_account_opened_and_kept_counts_its_wrapped_sol_once() -> None:
    bought = 134_000_000
    transaction = landed(
        Account(50_000_000, 50_000_000 - 5_000 - ATA_RENT),
        Account(ATA_RENT, ATA_RENT, USDC, PAYER, 20_000_000, 0),
        Account(0, ATA_RENT + bought, WSOL_MINT, PAYER, None, bought),
        vault(USDC, 10**12, 10**12 + 20_000_000),
        vault(WSOL_MINT, 10**12, 10**12 - bought),
    )

    swap = moved(transaction)

    assert (swap.token_out, swap.amount_out) == ("SOL", Decimal("0.134"))


def test_the_rent_of_an_account_the_swap_closed_is_not_counted_as_bought() -> None:
    # SOL to USDC through the payer's own wSOL account, which held 0.001 wrapped SOL and
    # which the swap closed: its wrapped SOL and its rent came back to the payer's lamports.
    sold, held = 500_000_000, 1_000_000
    transaction = landed(
        Account(10_000_000_000, 10_000_000_000 - sold - 5_000 + held + ATA_RENT),
        Account(ATA_RENT + held, 0, WSOL_MINT, PAYER, held, None),
        Account(ATA_RENT, ATA_RENT, USDC, PAYER, 0, 75_000_000),
        vault(WSOL_MINT, 10**12, 10**12 + sold),
        vault(USDC, 10**12, 10**12 - 75_000_000),
    )

    swap = moved(transaction)

    assert (swap.token_in, swap.amount_in) == ("SOL", Decimal("0.5"))
    assert (swap.token_out, swap.amount_out) == ("USDC", Decimal("75"))
