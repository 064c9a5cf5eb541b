"""What the engine agrees to sign of a swap transaction Jupiter built, and what it refuses."""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable

import pytest
from solders.compute_budget import (
    request_heap_frame,
    set_compute_unit_limit,
    set_compute_unit_price,
)
from solders.hash import Hash
from solders.instruction import AccountMeta, Instruction
from solders.keypair import Keypair
from solders.message import Message, MessageV0
from solders.pubkey import Pubkey
from solders.system_program import CreateAccountParams, TransferParams, create_account, transfer

from orderengine.errors import SwapRejected
from orderengine.tokens import TOKENS, WSOL_MINT
from orderengine.venues.signable import Expected, check

WALLET = Keypair.from_seed(bytes([3] * 32)).pubkey()
STRANGER = Keypair.from_seed(bytes([4] * 32)).pubkey()
JUPITER = Pubkey.from_string("JUP6LkbZbjS1jKKwapdHNy74zcZ3tLUZoi5QNyVTaV4")
TOKEN = Pubkey.from_string("TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA")
ATA = Pubkey.from_string("ATokenGPvbdGVxr1b2hvZbsiqW5xWH25efTNsLJA8knL")
SYSTEM = Pubkey.from_string("11111111111111111111111111111111")
WSOL, USDC = Pubkey.from_string(WSOL_MINT), Pubkey.from_string(TOKENS["USDC"].mint)
AMOUNT_IN, QUOTED_OUT, MINIMUM = 1_000_000_000, 150_000_000, 148_500_000
EXPECTED = Expected(
    wallet=WALLET, amount_in=AMOUNT_IN, minimum_out=MINIMUM, max_priority_lamports=1_000_000
)


def ata(owner: Pubkey, mint: Pubkey) -> Pubkey:
    """The associated token account, derived here rather than by the code under test."""
    seeds = [bytes(owner), bytes(TOKEN), bytes(mint)]
    return Pubkey.find_program_address(seeds, ATA)[0]


def route(
    name: str = "shared_accounts_route",
    amount_in: int = AMOUNT_IN,
    slippage_bps: int = 100,
    platform_fee_bps: int = 0,
) -> Instruction:
    """A Jupiter exact-in swap: discriminator, a route plan, then the amounts it ends with."""
    discriminator = hashlib.sha256(f"global:{name}".encode()).digest()[:8]
    plan = bytes([1, 0, 0, 0, 7, 100, 0, 1])
    tail = struct.pack("<QQHB", amount_in, QUOTED_OUT, slippage_bps, platform_fee_bps)
    accounts = [
        AccountMeta(WALLET, is_signer=True, is_writable=True),
        AccountMeta(ata(WALLET, WSOL), is_signer=False, is_writable=True),
        AccountMeta(ata(WALLET, USDC), is_signer=False, is_writable=True),
    ]
    return Instruction(JUPITER, discriminator + plan + tail, accounts)


def wrapping() -> list[Instruction]:
    """What Jupiter puts around a SOL-in swap: open and fund the wSOL account, and close it."""
    wsol = ata(WALLET, WSOL)
    create = [
        AccountMeta(WALLET, is_signer=True, is_writable=True),
        AccountMeta(wsol, is_signer=False, is_writable=True),
        AccountMeta(WALLET, is_signer=False, is_writable=False),
        AccountMeta(WSOL, is_signer=False, is_writable=False),
        AccountMeta(SYSTEM, is_signer=False, is_writable=False),
        AccountMeta(TOKEN, is_signer=False, is_writable=False),
    ]
    return [
        Instruction(ATA, bytes([1]), create),
        transfer(TransferParams(from_pubkey=WALLET, to_pubkey=wsol, lamports=AMOUNT_IN)),
        Instruction(TOKEN, bytes([17]), [AccountMeta(wsol, is_signer=False, is_writable=True)]),
    ]


def closing(destination: Pubkey = WALLET) -> Instruction:
    wsol = ata(WALLET, WSOL)
    accounts = [
        AccountMeta(wsol, is_signer=False, is_writable=True),
        AccountMeta(destination, is_signer=False, is_writable=True),
        AccountMeta(WALLET, is_signer=True, is_writable=False),
    ]
    return Instruction(TOKEN, bytes([9]), accounts)


def budget(units: int = 400_000, microlamports: int = 25_000) -> list[Instruction]:
    return [set_compute_unit_limit(units), set_compute_unit_price(microlamports)]


def message(*instructions: Instruction, payer: Pubkey = WALLET) -> MessageV0:
    return MessageV0.try_compile(payer, list(instructions), [], Hash.new_unique())


def a_swap(**changes: Instruction | list[Instruction]) -> MessageV0:
    """SOL in, USDC out, as Jupiter builds it; `changes` replace its parts by name."""
    parts: dict[str, Instruction | list[Instruction]] = {
        "budget": budget(),
        "wrapping": wrapping(),
        "route": route(),
        "closing": closing(),
    }
    parts.update(changes)
    flat: list[Instruction] = []
    for part in parts.values():
        flat.extend(part if isinstance(part, list) else [part])
    return message(*flat)


@pytest.mark.parametrize("name", ["route", "shared_accounts_route"])
def test_a_swap_as_jupiter_builds_it_is_signed(name: str) -> None:
    check(a_swap(route=route(name)), EXPECTED)


def test_a_swap_at_exactly_the_minimum_and_the_cap_is_signed() -> None:
    exact = route(slippage_bps=100)
    at_cap = budget(units=1_000_000, microlamports=1_000_000)

    check(a_swap(route=exact, budget=at_cap), EXPECTED)


REFUSALS: dict[str, tuple[Callable[[], MessageV0], str]] = {
    "another payer": (lambda: message(route(), payer=STRANGER), "not paid by this wallet"),
    "another program": (
        lambda: a_swap(closing=Instruction(Pubkey.new_unique(), b"", [])),
        "which a swap does not need",
    ),
    "SOL sent elsewhere": (
        lambda: a_swap(
            closing=transfer(TransferParams(from_pubkey=WALLET, to_pubkey=STRANGER, lamports=1))
        ),
        "transfers SOL elsewhere",
    ),
    "an account created": (
        lambda: a_swap(
            closing=create_account(
                CreateAccountParams(
                    from_pubkey=WALLET, to_pubkey=STRANGER, lamports=1, space=0, owner=SYSTEM
                )
            )
        ),
        "System instruction other than a transfer",
    ),
    "tokens transferred": (
        lambda: a_swap(
            closing=Instruction(
                TOKEN,
                bytes([3]) + struct.pack("<Q", 1),
                [
                    AccountMeta(ata(WALLET, USDC), is_signer=False, is_writable=True),
                    AccountMeta(ata(STRANGER, USDC), is_signer=False, is_writable=True),
                    AccountMeta(WALLET, is_signer=True, is_writable=False),
                ],
            )
        ),
        "could move the wallet's tokens",
    ),
    "closed to another": (lambda: a_swap(closing=closing(STRANGER)), "could move"),
    "no swap": (lambda: a_swap(route=[]), "holds 0 Jupiter swaps"),
    "two swaps": (lambda: a_swap(route=[route(), route()]), "holds 2 Jupiter swaps"),
    "an exact-out swap": (lambda: a_swap(route=route("exact_out_route")), "not an exact-in"),
    "another amount": (lambda: a_swap(route=route(amount_in=AMOUNT_IN + 1)), "sells"),
    "wider slippage": (lambda: a_swap(route=route(slippage_bps=101)), "under the least"),
    "a platform fee": (lambda: a_swap(route=route(platform_fee_bps=20)), "platform fee"),
    "priority over the cap": (
        lambda: a_swap(budget=budget(units=1_000_001, microlamports=1_000_000)),
        "over the cap",
    ),
    "another budget instruction": (
        lambda: a_swap(budget=[request_heap_frame(64 * 1024)]),
        "other than a unit limit or price",
    ),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_a_transaction_that_does_more_than_the_swap_is_refused(case: str) -> None:
    build, why = REFUSALS[case]

    with pytest.raises(SwapRejected, match=why) as refused:
        check(build(), EXPECTED)

    assert refused.value.message.startswith("the swap transaction Jupiter built was not signed")


def test_a_legacy_message_is_read_too() -> None:
    legacy = Message.new_with_blockhash([*budget(), route()], WALLET, Hash.new_unique())

    check(legacy, EXPECTED)
    with pytest.raises(SwapRejected, match="version"):
        check(object(), EXPECTED)
