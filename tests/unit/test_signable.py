"""What the engine agrees to sign of a swap transaction Jupiter built, and what it refuses."""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable, Mapping

import pytest
from solders.address_lookup_table_account import AddressLookupTableAccount
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
from solders.system_program import (
    CreateAccountWithSeedParams,
    TransferParams,
    create_account_with_seed,
    transfer,
)

from orderengine.errors import SwapRejected
from orderengine.tokens import TOKENS, WSOL_MINT
from orderengine.venues.signable import Expected, check

WALLET = Keypair.from_seed(bytes([3] * 32)).pubkey()
STRANGER = Keypair.from_seed(bytes([4] * 32)).pubkey()
JUPITER = Pubkey.from_string("JUP6LkbZbjS1jKKwapdHNy74zcZ3tLUZoi5QNyVTaV4")
TOKEN = Pubkey.from_string("TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA")
TOKEN_2022 = Pubkey.from_string("TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb")
ATA = Pubkey.from_string("ATokenGPvbdGVxr1b2hvZbsiqW5xWH25efTNsLJA8knL")
SYSTEM = Pubkey.from_string("11111111111111111111111111111111")
WSOL, USDC = Pubkey.from_string(WSOL_MINT), Pubkey.from_string(TOKENS["USDC"].mint)
USDT = Pubkey.from_string(TOKENS["USDT"].mint)
EVENT_AUTHORITY = Pubkey.find_program_address([b"__event_authority"], JUPITER)[0]
PROGRAM_AUTHORITY = Pubkey.find_program_address([b"authority", bytes([0])], JUPITER)[0]
POOL = Pubkey.from_string("58oQChx4yWmvKdwLLZzBi4ChoCc2fqCUWBkwMihLYQo2")
AMOUNT_IN, QUOTED_OUT, MINIMUM = 1_000_000_000, 150_000_000, 148_500_000
CAP = 1_000_000
EXPECTED = Expected(
    wallet=WALLET,
    mint_in=WSOL,
    mint_out=USDC,
    amount_in=AMOUNT_IN,
    minimum_out=MINIMUM,
    max_priority_lamports=CAP,
)


def ata(owner: Pubkey, mint: Pubkey, token_program: Pubkey = TOKEN) -> Pubkey:
    """The associated token account, derived here rather than by the code under test."""
    seeds = [bytes(owner), bytes(token_program), bytes(mint)]
    return Pubkey.find_program_address(seeds, ATA)[0]


def route_accounts(name: str) -> list[Pubkey]:
    """The accounts of a SOL-to-USDC swap, in the order Jupiter v6's IDL lays them out."""
    source, destination = ata(WALLET, WSOL), ata(WALLET, USDC)
    if name == "shared_accounts_route":
        program_source, program_destination = (
            ata(PROGRAM_AUTHORITY, WSOL),
            ata(PROGRAM_AUTHORITY, USDC),
        )
        return [
            TOKEN,
            PROGRAM_AUTHORITY,
            WALLET,
            source,
            program_source,
            program_destination,
            destination,
            WSOL,
            USDC,
            JUPITER,  # no platform fee account
            JUPITER,  # no Token-2022 program
            EVENT_AUTHORITY,
            JUPITER,
            POOL,
        ]
    return [
        TOKEN,
        WALLET,
        source,
        destination,
        JUPITER,  # no destination account other than the user's
        USDC,
        JUPITER,  # no platform fee account
        EVENT_AUTHORITY,
        JUPITER,
        POOL,
    ]


def plan(steps: int = 1, variant: int = 7, percent: int = 100) -> bytes:
    """A route plan: its length (u32), then one step: a `Swap` variant, percent, indexes."""
    return struct.pack("<IBBBB", steps, variant, percent, 0, 1)


def route(
    name: str = "shared_accounts_route",
    amount_in: int = AMOUNT_IN,
    slippage_bps: int = 100,
    platform_fee_bps: int = 0,
    *,
    route_plan: bytes | None = None,
    after: bytes = b"",
    accounts: Mapping[int, Pubkey] | None = None,
    length: int | None = None,
) -> Instruction:
    """A Jupiter exact-in swap: discriminator, (`id`,) a route plan, then its amounts.

    `after` is appended to the data; `accounts` replaces accounts by index; `length` cuts
    the account list.
    """
    discriminator = hashlib.sha256(f"global:{name}".encode()).digest()[:8]
    shared_id = bytes([0]) if name == "shared_accounts_route" else b""
    tail = struct.pack("<QQHB", amount_in, QUOTED_OUT, slippage_bps, platform_fee_bps)
    data = discriminator + shared_id + (plan() if route_plan is None else route_plan) + tail
    keys = route_accounts(name)
    for index, key in (accounts or {}).items():
        keys[index] = key
    metas = [AccountMeta(key, is_signer=key == WALLET, is_writable=True) for key in keys]
    return Instruction(JUPITER, data + after, metas[:length])


def creating(
    payer: Pubkey = WALLET,
    account: Pubkey | None = None,
    owner: Pubkey = WALLET,
    mint: Pubkey = WSOL,
) -> Instruction:
    """The Associated Token Account program's CreateIdempotent: payer, account, owner, mint."""
    accounts = [
        AccountMeta(payer, is_signer=payer == WALLET, is_writable=True),
        AccountMeta(account or ata(owner, mint), is_signer=False, is_writable=True),
        AccountMeta(owner, is_signer=False, is_writable=False),
        AccountMeta(mint, is_signer=False, is_writable=False),
        AccountMeta(SYSTEM, is_signer=False, is_writable=False),
        AccountMeta(TOKEN, is_signer=False, is_writable=False),
    ]
    return Instruction(ATA, bytes([1]), accounts)


def syncing() -> Instruction:
    wsol = ata(WALLET, WSOL)
    return Instruction(TOKEN, bytes([17]), [AccountMeta(wsol, is_signer=False, is_writable=True)])


def wrapping() -> list[Instruction]:
    """What Jupiter puts around a SOL-in swap: open and fund the wSOL account, and close it."""
    wsol = ata(WALLET, WSOL)
    return [
        creating(),
        transfer(TransferParams(from_pubkey=WALLET, to_pubkey=wsol, lamports=AMOUNT_IN)),
        syncing(),
    ]


def closing(destination: Pubkey = WALLET, authority: Pubkey = WALLET) -> Instruction:
    wsol = ata(WALLET, WSOL)
    accounts = [
        AccountMeta(wsol, is_signer=False, is_writable=True),
        AccountMeta(destination, is_signer=False, is_writable=True),
        AccountMeta(authority, is_signer=True, is_writable=False),
    ]
    return Instruction(TOKEN, bytes([9]), accounts)


def budget(units: int | None = 400_000, microlamports: int = 25_000) -> list[Instruction]:
    """A unit limit (none if `units` is None) and a unit price."""
    limit = [] if units is None else [set_compute_unit_limit(units)]
    return [*limit, set_compute_unit_price(microlamports)]


def message(
    *instructions: Instruction, payer: Pubkey = WALLET, table: list[Pubkey] | None = None
) -> MessageV0:
    """A v0 message; the accounts in `table` (none of its signers) come from a lookup table."""
    tables = [AddressLookupTableAccount(Pubkey.new_unique(), table)] if table else []
    return MessageV0.try_compile(payer, list(instructions), tables, Hash.new_unique())


def a_swap(
    table: list[Pubkey] | None = None, **changes: Instruction | list[Instruction]
) -> MessageV0:
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
    return message(*flat, table=table)


@pytest.mark.parametrize("name", ["route", "shared_accounts_route"])
def test_a_swap_as_jupiter_builds_it_is_signed(name: str) -> None:
    check(a_swap(route=route(name)), EXPECTED)


def test_a_route_may_name_the_users_destination_as_its_destination_account() -> None:
    check(a_swap(route=route("route", accounts={4: ata(WALLET, USDC)})), EXPECTED)


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
            closing=create_account_with_seed(
                CreateAccountWithSeedParams(
                    from_pubkey=WALLET,
                    to_pubkey=Pubkey.create_with_seed(WALLET, "seed", SYSTEM),
                    base=WALLET,
                    seed="seed",
                    lamports=1,
                    space=0,
                    owner=SYSTEM,
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
    # The route's accounts: the wallet's authority, its own token accounts, the quote's mints.
    "another transfer authority (route)": (
        lambda: a_swap(route=route("route", accounts={1: STRANGER})),
        "transfer authority is",
    ),
    "another transfer authority (shared)": (
        lambda: a_swap(route=route(accounts={2: STRANGER})),
        "transfer authority is",
    ),
    "tokens sold from another account (route)": (
        lambda: a_swap(route=route("route", accounts={2: ata(STRANGER, WSOL)})),
        "source token account is",
    ),
    "tokens sold from another account (shared)": (
        lambda: a_swap(route=route(accounts={3: ata(STRANGER, WSOL)})),
        "source token account is",
    ),
    "proceeds to another account (route)": (
        lambda: a_swap(route=route("route", accounts={3: ata(STRANGER, USDC)})),
        "destination token account is",
    ),
    "proceeds to another account (route's destination account)": (
        lambda: a_swap(route=route("route", accounts={4: ata(STRANGER, USDC)})),
        "destination token account is",
    ),
    "proceeds to another account (shared)": (
        lambda: a_swap(route=route(accounts={6: ata(STRANGER, USDC)})),
        "destination token account is",
    ),
    "proceeds to the wallet's account of another mint": (
        lambda: a_swap(route=route(accounts={6: ata(WALLET, USDT)})),
        "destination token account is",
    ),
    "proceeds to a Token-2022 account": (
        lambda: a_swap(route=route(accounts={6: ata(WALLET, USDC, TOKEN_2022)})),
        "destination token account is",
    ),
    "another mint sold (shared)": (
        lambda: a_swap(route=route(accounts={7: USDT})),
        "source mint is",
    ),
    "another mint bought (route)": (
        lambda: a_swap(route=route("route", accounts={5: USDT})),
        "destination mint is",
    ),
    "another mint bought (shared)": (
        lambda: a_swap(route=route(accounts={8: USDT})),
        "destination mint is",
    ),
    "too few accounts (route)": (
        lambda: a_swap(route=route("route", length=8)),
        "names 8 accounts, too few",
    ),
    "too few accounts (shared)": (
        lambda: a_swap(route=route(length=12)),
        "names 12 accounts, too few",
    ),
    "the destination from a lookup table": (
        lambda: a_swap(table=[ata(WALLET, USDC)]),
        "destination token account is an account from a lookup table",
    ),
    # The swap's data, read whole from the front as Anchor reads it.
    "a fake tail appended (route)": (
        lambda: a_swap(
            route=route(
                "route",
                slippage_bps=10_000,
                after=struct.pack("<QQHB", AMOUNT_IN, QUOTED_OUT, 100, 0),
            )
        ),
        "is 54 bytes, not the 35 of a one-step route",
    ),
    "a fake tail appended (shared)": (
        lambda: a_swap(
            route=route(
                amount_in=AMOUNT_IN * 10, after=struct.pack("<QQHB", AMOUNT_IN, QUOTED_OUT, 100, 0)
            )
        ),
        "is 55 bytes, not the 36 of a one-step route",
    ),
    "a byte appended": (lambda: a_swap(route=route(after=b"\x00")), "not the 36"),
    "a byte missing": (lambda: a_swap(route=route(route_plan=plan()[:-1])), "not the 36"),
    "a route plan of two steps": (
        lambda: a_swap(route=route(route_plan=plan(steps=2) + plan()[4:])),
        "not the 36",
    ),
    "a route plan said to be of two steps": (
        lambda: a_swap(route=route(route_plan=plan(steps=2))),
        "has 2 steps",
    ),
    "an empty route plan": (
        lambda: a_swap(route=route(route_plan=struct.pack("<I", 0) + bytes(4))),
        "has 0 steps",
    ),
    "a step routing part of the amount": (
        lambda: a_swap(route=route(route_plan=plan(percent=50))),
        "routing 50%",
    ),
    "a Swap variant carrying data": (
        lambda: a_swap(route=route(route_plan=plan(variant=17)[:5] + b"\x01" + plan()[5:])),
        "not the 36",
    ),
    # The compute budget: the default limit when none is set, the fee rounded up.
    "priority over the cap at the default limit": (
        lambda: a_swap(budget=budget(units=None, microlamports=2_000_000)),
        "priority fee of 2000000 lamports is over the cap",
    ),
    # Opening a token account: the wallet's own, for a mint, paid by the wallet.
    "an account opened paid by another": (
        lambda: a_swap(wrapping=[creating(payer=STRANGER)]),
        "or not paid by it",
    ),
    "an account opened for another": (
        lambda: a_swap(wrapping=[creating(owner=STRANGER)]),
        "creates a token account not the wallet's",
    ),
    "an account opened for another, not its associated account": (
        lambda: a_swap(wrapping=[creating(account=ata(WALLET, USDC))]),
        "other than the wallet's associated one",
    ),
    "an account opened with its accounts missing": (
        lambda: a_swap(wrapping=[Instruction(ATA, bytes([1]), creating().accounts[:3])]),
        "other than the wallet's associated one",
    ),
    # Signatures: the wallet's alone.
    "another signer": (lambda: a_swap(closing=closing(authority=STRANGER)), "needs 2 signatures"),
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


@pytest.mark.parametrize("name", ["route", "shared_accounts_route"])
def test_the_route_accounts_are_checked_in_each_layout(name: str) -> None:
    proceeds = 3 if name == "route" else 6

    with pytest.raises(SwapRejected, match="destination token account"):
        check(a_swap(route=route(name, accounts={proceeds: ata(STRANGER, USDC)})), EXPECTED)


def test_without_a_unit_limit_each_instruction_may_use_200_000_units() -> None:
    # 5 instructions other than the Compute Budget's: 1_000_000 units, at 1 lamport each.
    at_the_cap = a_swap(budget=budget(units=None, microlamports=1_000_000))
    over = a_swap(budget=budget(units=None, microlamports=1_000_001))

    check(at_the_cap, EXPECTED)
    with pytest.raises(SwapRejected, match="priority fee of 1000001 lamports"):
        check(over, EXPECTED)


def test_the_unit_limit_is_at_most_1_400_000() -> None:
    # 8 instructions other than the Compute Budget's: 1_600_000 units, capped at 1_400_000.
    many = [closing(), syncing(), syncing(), syncing()]
    by_default = a_swap(budget=budget(units=None, microlamports=700_000), closing=many)
    set_above = a_swap(budget=budget(units=2_000_000, microlamports=700_000))

    check(by_default, EXPECTED)
    check(set_above, EXPECTED)


def test_the_priority_fee_is_rounded_up_as_the_runtime_charges_it() -> None:
    no_priority = Expected(
        wallet=WALLET,
        mint_in=WSOL,
        mint_out=USDC,
        amount_in=AMOUNT_IN,
        minimum_out=MINIMUM,
        max_priority_lamports=0,
    )

    check(a_swap(budget=budget(units=1, microlamports=0)), no_priority)
    with pytest.raises(SwapRejected, match="priority fee of 1 lamports is over the cap of 0"):
        check(a_swap(budget=budget(units=1, microlamports=1)), no_priority)
