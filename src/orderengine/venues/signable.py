"""What the engine agrees to sign: a swap transaction someone else built, checked first.

A live venue signs the transaction Jupiter's API built, and a signature lends it the wallet's
authority over all it holds. So before signing, every instruction is checked against what a
swap needs, and anything else is refused (`SwapRejected`: nothing is signed or sent):

- the wallet pays the fees, and no account it cannot name (one from a lookup table) is where
  the wallet's lamports go;
- Compute Budget: a unit limit and a unit price whose fee stays under the priority fee cap;
- System: only a transfer into the wallet's own wrapped-SOL account (wrapping SOL);
- SPL Token and Token-2022 at the top level: only SyncNative, and CloseAccount whose lamports
  go back to the wallet; never a transfer, an approval or a change of authority (the swap's
  own transfers happen inside Jupiter's program, bounded by its least output);
- Associated Token Account: creating an account, paid by the wallet;
- Jupiter: exactly one `route` or `shared_accounts_route` (its exact-in swaps), for the
  quote's amount in, accepting no less than the engine's minimum out, with no platform fee.
  Their arguments end with `in_amount` (u64), `quoted_out_amount` (u64), `slippage_bps`
  (u16) and `platform_fee_bps` (u8), little-endian.

Any other program, or an instruction of these programs not named here, is refused: a
transaction the engine does not understand is one it does not sign.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

from solders.message import Message, MessageV0
from solders.pubkey import Pubkey

from orderengine.errors import SwapRejected
from orderengine.transaction import (
    ASSOCIATED_TOKEN_PROGRAM,
    TOKEN_PROGRAM,
    WSOL,
    associated_token_address,
)

COMPUTE_BUDGET_PROGRAM = Pubkey.from_string("ComputeBudget111111111111111111111111111111")
SYSTEM_PROGRAM = Pubkey.from_string("11111111111111111111111111111111")
TOKEN_2022_PROGRAM = Pubkey.from_string("TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb")
JUPITER_PROGRAM = Pubkey.from_string("JUP6LkbZbjS1jKKwapdHNy74zcZ3tLUZoi5QNyVTaV4")
JUPITER_SWAPS = frozenset(
    hashlib.sha256(f"global:{name}".encode()).digest()[:8]
    for name in ("route", "shared_accounts_route")
)
SWAP_TAIL = struct.Struct("<QQHB")
"""in_amount, quoted_out_amount, slippage_bps, platform_fee_bps: how a Jupiter swap ends."""
SET_UNIT_LIMIT, SET_UNIT_PRICE = 2, 3
SYSTEM_TRANSFER = 2
SYNC_NATIVE, CLOSE_ACCOUNT = 17, 9
ATA_CREATE = (b"", b"\x00", b"\x01")
"""Create and CreateIdempotent (an empty instruction is the original Create)."""
MICROLAMPORTS_PER_LAMPORT = 1_000_000
DEFAULT_UNIT_LIMIT = 200_000
"""The compute units a transaction may use when it sets no limit (per instruction, at most)."""


@dataclass(frozen=True)
class Expected:
    """What the swap must be.

    Paid by `wallet`, selling `amount_in` raw units, accepting no less than `minimum_out`,
    paying at most `max_priority_lamports` for priority.
    """

    wallet: Pubkey
    amount_in: int
    minimum_out: int
    max_priority_lamports: int


def check(message: object, expected: Expected) -> None:
    """Refuse (`SwapRejected`) a swap transaction the engine should not sign."""
    if not isinstance(message, Message | MessageV0):
        raise _refused("its message is of a version this engine does not read")
    keys = list(message.account_keys)
    if not keys or keys[0] != expected.wallet:
        raise _refused("it is not paid by this wallet")
    budget = Budget()
    swaps = 0
    for instruction in message.instructions:
        program = keys[instruction.program_id_index]
        data, accounts = bytes(instruction.data), _named(keys, bytes(instruction.accounts))
        if program == COMPUTE_BUDGET_PROGRAM:
            budget.read(data)
        elif program == JUPITER_PROGRAM:
            _swaps(data, expected)
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


@dataclass
class Budget:
    """The compute unit limit and price the transaction's Compute Budget instructions set."""

    unit_limit: int = DEFAULT_UNIT_LIMIT
    unit_price: int = 0

    def read(self, data: bytes) -> None:
        """Take a unit limit or a unit price; any other Compute Budget instruction is refused."""
        if len(data) == 5 and data[0] == SET_UNIT_LIMIT:
            self.unit_limit = struct.unpack_from("<I", data, 1)[0]
        elif len(data) == 9 and data[0] == SET_UNIT_PRICE:
            self.unit_price = struct.unpack_from("<Q", data, 1)[0]
        else:
            raise _refused("it holds a Compute Budget instruction other than a unit limit or price")

    @property
    def priority_lamports(self) -> int:
        return self.unit_limit * self.unit_price // MICROLAMPORTS_PER_LAMPORT


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
    if data not in ATA_CREATE or not accounts or accounts[0] != wallet:
        raise _refused("it holds an associated-token instruction other than creating one")


def _swaps(data: bytes, expected: Expected) -> None:
    """One of Jupiter's exact-in swaps, for the amount, at the bound, with no platform fee."""
    if data[:8] not in JUPITER_SWAPS or len(data) < 8 + SWAP_TAIL.size:
        raise _refused("its Jupiter instruction is not an exact-in route this engine knows")
    amount_in, quoted_out, slippage_bps, platform_fee_bps = SWAP_TAIL.unpack_from(
        data, len(data) - SWAP_TAIL.size
    )
    least = quoted_out * (10_000 - slippage_bps) // 10_000 if slippage_bps <= 10_000 else 0
    if amount_in != expected.amount_in:
        raise _refused(f"it sells {amount_in} raw units, not the quote's {expected.amount_in}")
    if least < expected.minimum_out:
        raise _refused(f"it accepts {least} raw units out, under the least, {expected.minimum_out}")
    if platform_fee_bps != 0:
        raise _refused(f"it pays a platform fee of {platform_fee_bps} bps")


def _named(keys: list[Pubkey], indexes: bytes) -> list[Pubkey | None]:
    """The accounts an instruction names; None for one from a lookup table, unknown here."""
    return [keys[index] if index < len(keys) else None for index in indexes]


def _refused(why: str) -> SwapRejected:
    return SwapRejected(f"the swap transaction Jupiter built was not signed: {why}")
