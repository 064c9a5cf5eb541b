"""What the engine agrees to sign: a swap transaction someone else built, checked first.

A live venue signs the transaction Jupiter's API built, and a signature lends it the wallet's
authority over all it holds. So before signing, every instruction is checked against what a
swap needs, and anything else is refused (`SwapRejected`: nothing is signed or sent):

- the message is one this engine reads (legacy or v0), the wallet is its fee payer (its
  first account), and it needs one signature only, the wallet's;
- Compute Budget: only SetComputeUnitLimit and SetComputeUnitPrice, whose priority fee,
  `ceil(units × microlamports / 1_000_000)`, is at most the cap; the units are the limit set
  or else 200_000 for each other instruction, at most 1_400_000 either way (`Budget`);
- System: only a transfer from the wallet into its own wrapped-SOL account (wrapping SOL);
- SPL Token and Token-2022 at the top level: only SyncNative, and CloseAccount whose lamports
  go back to the wallet; never a transfer, an approval or a change of authority (the swap's
  own transfers happen inside Jupiter's program, bounded by its least output);
- Associated Token Account: only Create or CreateIdempotent, its payer and the new account's
  owner the wallet, the account the wallet's associated token account for the mint named;
- Jupiter: exactly one `route` or `shared_accounts_route` (its exact-in swaps).
  Its data is read whole, as Anchor reads it (`_read_swap`): the discriminator,
  (`shared_accounts_route`'s `id`,) a route plan of one step of a data-free `Swap` variant
  routing 100%, then `in_amount` (the quote's), `quoted_out_amount` and `slippage_bps`
  (accepting no less than the engine's minimum out), `platform_fee_bps` (0), and nothing
  after. Its accounts (`SwapLayout`, after Jupiter v6's IDL): the transfer authority is the
  wallet; the user's source account is the wallet's associated token account for the mint
  sold, and the user's destination its account for the mint bought (for `route`, its
  optional destination_token_account is absent or that same account); the mints it names
  are those two (`route`'s destination_mint; `shared_accounts_route`'s source_mint and
  destination_mint).

An account an instruction takes from an address lookup table cannot be named here, so it
never passes where an account is checked. The associated token accounts checked are those of
the SPL Token program: a swap of a Token-2022 mint, whose account is derived otherwise, is
refused.

Any other program, or an instruction of these programs not named here, is refused: a
transaction the engine does not understand is one it does not sign.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Mapping
from dataclasses import dataclass

from solders.compute_budget import ID as COMPUTE_BUDGET_PROGRAM
from solders.message import Message, MessageV0
from solders.pubkey import Pubkey
from solders.system_program import ID as SYSTEM_PROGRAM

from orderengine.errors import SwapRejected
from orderengine.transaction import (
    ASSOCIATED_TOKEN_PROGRAM,
    TOKEN_PROGRAM,
    WSOL,
    associated_token_address,
)

TOKEN_2022_PROGRAM = Pubkey.from_string("TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb")
JUPITER_PROGRAM = Pubkey.from_string("JUP6LkbZbjS1jKKwapdHNy74zcZ3tLUZoi5QNyVTaV4")
SET_UNIT_LIMIT, SET_UNIT_PRICE = 2, 3
SYSTEM_TRANSFER = 2
SYNC_NATIVE, CLOSE_ACCOUNT = 17, 9
ATA_CREATE = (b"", b"\x00", b"\x01")
"""Create and CreateIdempotent (an empty instruction is the original Create)."""
MICROLAMPORTS_PER_LAMPORT = 1_000_000
DEFAULT_UNIT_LIMIT = 200_000
"""The compute units the runtime allows each instruction, other than a Compute Budget one, of
a transaction that sets no unit limit (newer runtimes allow builtin programs less: this is
the most). The transaction's limit is their sum, at most `MAX_UNIT_LIMIT`."""
MAX_UNIT_LIMIT = 1_400_000
"""The most compute units a transaction may use, whatever limit it sets."""

ROUTE_STEP = struct.Struct("<IBBBB")
"""The route plan of one step: its length (u32), then the step: the `Swap` variant's index
(u8, a variant carrying no data), `percent`, `input_index` and `output_index` (u8 each)."""
SWAP_TAIL = struct.Struct("<QQHB")
"""in_amount, quoted_out_amount, slippage_bps, platform_fee_bps: how a Jupiter swap ends."""


@dataclass(frozen=True)
class Expected:
    """What the swap must be.

    Paid by `wallet`, selling `amount_in` raw units of `mint_in` for `mint_out`, accepting no
    less than `minimum_out`, paying at most `max_priority_lamports` for priority. The wallet's
    associated token accounts for the mints are its SPL Token ones: a Token-2022 mint's
    account differs, and its swap is refused.
    """

    wallet: Pubkey
    mint_in: Pubkey
    mint_out: Pubkey
    amount_in: int
    minimum_out: int
    max_priority_lamports: int

    def accounts(self) -> dict[str, Pubkey]:
        """What the accounts of the swap must be, by the role `SwapLayout` gives them."""
        return {
            "transfer authority": self.wallet,
            "source token account": associated_token_address(self.wallet, self.mint_in),
            "destination token account": associated_token_address(self.wallet, self.mint_out),
            "source mint": self.mint_in,
            "destination mint": self.mint_out,
        }


@dataclass(frozen=True)
class SwapLayout:
    """One of Jupiter v6's exact-in swaps, as its IDL lays out its data and accounts.

    `roles` maps the index of an account to its role (`Expected.accounts`); `optional` the
    index of an optional account that is either the Jupiter program id (Anchor's "absent")
    or the account of that role. `before_plan` counts the bytes of its arguments before the
    route plan (the discriminator, and `shared_accounts_route`'s `id`).
    """

    name: str
    before_plan: int
    least_accounts: int
    roles: Mapping[int, str]
    optional: Mapping[int, str]

    @property
    def discriminator(self) -> bytes:
        return hashlib.sha256(f"global:{self.name}".encode()).digest()[:8]

    @property
    def data_length(self) -> int:
        """The length of the instruction's data with a one-step plan of a data-free variant."""
        return self.before_plan + ROUTE_STEP.size + SWAP_TAIL.size


ROUTE = SwapLayout(
    name="route",
    before_plan=8,
    least_accounts=9,
    roles={
        1: "transfer authority",
        2: "source token account",
        3: "destination token account",
        5: "destination mint",
    },
    optional={4: "destination token account"},
)
"""token_program, user_transfer_authority, user_source_token_account,
user_destination_token_account, destination_token_account (optional), destination_mint,
platform_fee_account (optional), event_authority, program; then the route's own accounts."""
SHARED_ACCOUNTS_ROUTE = SwapLayout(
    name="shared_accounts_route",
    before_plan=9,
    least_accounts=13,
    roles={
        2: "transfer authority",
        3: "source token account",
        6: "destination token account",
        7: "source mint",
        8: "destination mint",
    },
    optional={},
)
"""token_program, program_authority, user_transfer_authority, source_token_account,
program_source_token_account, program_destination_token_account, destination_token_account,
source_mint, destination_mint, platform_fee_account, token_2022_program, event_authority,
program; then the route's own accounts."""
JUPITER_SWAPS = {layout.discriminator: layout for layout in (ROUTE, SHARED_ACCOUNTS_ROUTE)}


@dataclass(frozen=True)
class Swap:
    """The amounts a Jupiter swap's instruction data states."""

    in_amount: int
    quoted_out_amount: int
    slippage_bps: int
    platform_fee_bps: int

    @property
    def least_out(self) -> int:
        """The least output Jupiter's program accepts: the quote less the slippage."""
        if self.slippage_bps > 10_000:
            return 0
        return self.quoted_out_amount * (10_000 - self.slippage_bps) // 10_000


def check(message: object, expected: Expected) -> None:
    """Refuse (`SwapRejected`) a swap transaction the engine should not sign."""
    if not isinstance(message, Message | MessageV0):
        raise _refused("its message is of a version this engine does not read")
    keys = list(message.account_keys)
    _signed_by_the_wallet_alone(message, keys, expected.wallet)
    budget = Budget()
    swaps = 0
    for instruction in message.instructions:
        program = keys[instruction.program_id_index]
        data, accounts = bytes(instruction.data), _named(keys, bytes(instruction.accounts))
        if program == COMPUTE_BUDGET_PROGRAM:
            budget.read(data)
            continue
        budget.instructions += 1
        if program == JUPITER_PROGRAM:
            _swaps(data, accounts, expected)
            swaps += 1
        else:
            _around_the_swap(program, data, accounts, expected.wallet)
    if swaps != 1:
        raise _refused(f"it holds {swaps} Jupiter swaps, not one")
    if budget.priority_lamports > expected.max_priority_lamports:
        raise _refused(
            f"its priority fee of {budget.priority_lamports} lamports is over the cap of"
            f" {expected.max_priority_lamports}"
        )


def _signed_by_the_wallet_alone(
    message: Message | MessageV0, keys: list[Pubkey], wallet: Pubkey
) -> None:
    """The wallet pays the fees and is the only signer.

    A transaction that needs another signature is one someone else completes and sends: the
    engine signs only what it can send by itself.
    """
    if not keys or keys[0] != wallet:
        raise _refused("it is not paid by this wallet")
    signatures = message.header.num_required_signatures
    if signatures != 1:
        raise _refused(f"it needs {signatures} signatures, not the wallet's alone")


@dataclass
class Budget:
    """The compute budget the transaction's instructions set, and what its priority costs.

    The runtime charges `ceil(unit limit × unit price / 1_000_000)` lamports for priority. The
    limit is the one set, or else `DEFAULT_UNIT_LIMIT` for each of the transaction's other
    `instructions`; either way at most `MAX_UNIT_LIMIT`.
    """

    unit_limit: int | None = None
    unit_price: int = 0
    instructions: int = 0
    """How many of the transaction's instructions are not Compute Budget ones."""

    def read(self, data: bytes) -> None:
        """Take a unit limit or a unit price; any other Compute Budget instruction is refused."""
        if len(data) == 5 and data[0] == SET_UNIT_LIMIT:
            self.unit_limit = struct.unpack_from("<I", data, 1)[0]
        elif len(data) == 9 and data[0] == SET_UNIT_PRICE:
            self.unit_price = struct.unpack_from("<Q", data, 1)[0]
        else:
            raise _refused("it holds a Compute Budget instruction other than a unit limit or price")

    @property
    def units(self) -> int:
        if self.unit_limit is None:
            return min(DEFAULT_UNIT_LIMIT * self.instructions, MAX_UNIT_LIMIT)
        return min(self.unit_limit, MAX_UNIT_LIMIT)

    @property
    def priority_lamports(self) -> int:
        return -(-self.units * self.unit_price // MICROLAMPORTS_PER_LAMPORT)


def _around_the_swap(
    program: Pubkey, data: bytes, accounts: list[Pubkey | None], wallet: Pubkey
) -> None:
    """An instruction beside the swap: wrapping, unwrapping, opening the wallet's accounts."""
    if program == SYSTEM_PROGRAM:
        _wraps_sol(data, accounts, wallet)
    elif program in (TOKEN_PROGRAM, TOKEN_2022_PROGRAM):
        _keeps_tokens(data, accounts, wallet)
    elif program == ASSOCIATED_TOKEN_PROGRAM:
        _creates_account(data, accounts, wallet)
    else:
        raise _refused(f"it calls the program {program}, which a swap does not need")


def _wraps_sol(data: bytes, accounts: list[Pubkey | None], wallet: Pubkey) -> None:
    """A System transfer from the wallet into its own wrapped-SOL account, and nothing else."""
    if len(data) != 12 or struct.unpack_from("<I", data)[0] != SYSTEM_TRANSFER:
        raise _refused("it holds a System instruction other than a transfer")
    if accounts[:2] != [wallet, associated_token_address(wallet, WSOL)]:
        raise _refused("it transfers SOL elsewhere than the wallet's wrapped-SOL account")


def _keeps_tokens(data: bytes, accounts: list[Pubkey | None], wallet: Pubkey) -> None:
    """SyncNative, or CloseAccount with the lamports back to the wallet; nothing else."""
    if data == bytes([SYNC_NATIVE]):
        return
    if data == bytes([CLOSE_ACCOUNT]) and len(accounts) >= 2 and accounts[1] == wallet:
        return
    raise _refused("it holds a token instruction that could move the wallet's tokens")


def _creates_account(data: bytes, accounts: list[Pubkey | None], wallet: Pubkey) -> None:
    """Creating the wallet's own associated token account for a mint, paid by the wallet.

    Its accounts: the payer, the new account, its owner, the mint. Paying the rent of someone
    else's account would be a gift of the wallet's lamports.
    """
    if data not in ATA_CREATE:
        raise _refused("it holds an associated-token instruction other than creating one")
    payer, account, owner, mint = (accounts + [None] * 4)[:4]
    if payer != wallet or owner != wallet:
        raise _refused("it creates a token account not the wallet's, or not paid by it")
    if mint is None or account != associated_token_address(wallet, mint):
        raise _refused("it creates a token account other than the wallet's associated one")


def _swaps(data: bytes, accounts: list[Pubkey | None], expected: Expected) -> None:
    """One of Jupiter's exact-in swaps, of the wallet's tokens, at the bound, with no fee."""
    layout = JUPITER_SWAPS.get(data[:8])
    if layout is None:
        raise _refused("its Jupiter instruction is not an exact-in route this engine knows")
    swap = _read_swap(data, layout)
    if swap.in_amount != expected.amount_in:
        raise _refused(f"it sells {swap.in_amount} raw units, not the quote's {expected.amount_in}")
    if swap.least_out < expected.minimum_out:
        raise _refused(
            f"it accepts {swap.least_out} raw units out, under the least, {expected.minimum_out}"
        )
    if swap.platform_fee_bps != 0:
        raise _refused(f"it pays a platform fee of {swap.platform_fee_bps} bps")
    _swaps_the_wallets_tokens(layout, accounts, expected)


def _read_swap(data: bytes, layout: SwapLayout) -> Swap:
    """The amounts of a Jupiter swap whose data is exactly a one-step route, and nothing else.

    Anchor reads an instruction's arguments from the front and ignores any bytes left over,
    so the data is read whole, never from its end: the route plan's length (1), its one step
    (a `Swap` variant, `percent` 100, the input and output indexes), then `SWAP_TAIL`, which
    must end the data exactly. The variant is taken to carry no data: had it any, the program
    would run out of bytes reading the arguments, and the transaction could only fail.
    """
    if len(data) != layout.data_length:
        raise _refused(
            f"its Jupiter {layout.name} is {len(data)} bytes, not the {layout.data_length}"
            " of a one-step route"
        )
    steps, _variant, percent, _input, _output = ROUTE_STEP.unpack_from(data, layout.before_plan)
    if steps != 1 or percent != 100:
        raise _refused(f"its Jupiter route has {steps} steps, routing {percent}%, not one of 100%")
    return Swap(*SWAP_TAIL.unpack_from(data, layout.before_plan + ROUTE_STEP.size))


def _swaps_the_wallets_tokens(
    layout: SwapLayout, accounts: list[Pubkey | None], expected: Expected
) -> None:
    """The swap's authority, token accounts and mints are the wallet's and the quote's."""
    if len(accounts) < layout.least_accounts:
        raise _refused(f"its Jupiter {layout.name} names {len(accounts)} accounts, too few")
    wanted = expected.accounts()
    for index, role in layout.roles.items():
        if accounts[index] != wanted[role]:
            raise _wrong_account(role, accounts[index], wanted[role])
    for index, role in layout.optional.items():
        if accounts[index] not in (JUPITER_PROGRAM, wanted[role]):
            raise _wrong_account(role, accounts[index], wanted[role])


def _wrong_account(role: str, account: Pubkey | None, wanted: Pubkey) -> SwapRejected:
    named = "an account from a lookup table" if account is None else str(account)
    return _refused(f"its Jupiter swap's {role} is {named}, not {wanted}")


def _named(keys: list[Pubkey], indexes: bytes) -> list[Pubkey | None]:
    """The accounts an instruction names; None for one from a lookup table, unknown here."""
    return [keys[index] if index < len(keys) else None for index in indexes]


def _refused(why: str) -> SwapRejected:
    return SwapRejected(f"the swap transaction Jupiter built was not signed: {why}")
