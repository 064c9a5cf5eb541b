"""Building the swap: a real Solana transaction, signed by the engine's keypair.

The instructions are those a wallet sends for a swap on Raydium AMM v4 or Meteora DLMM, with
the programs' real ids. Native SOL going in is wrapped first (create the wSOL associated token
account, transfer the lamports to it, sync it) and the account is closed after the swap; SOL
coming out gets a wSOL account, closed after the swap; a token-to-token swap is the swap alone.

The message is built on a blockhash the chain issued and signed with the engine's keypair; its
first signature is the transaction's id, the txHash. Ed25519 signatures are deterministic: the
same message signed by the same key gives the same signature, and transactions built in one
slot share its blockhash. So every transaction carries a memo (the SPL Memo program) with its
order's id and a random nonce: that is what gives every build a message, and a signature, of
its own, even for two identical swaps on one blockhash.

The swap instruction's data is the venue's discriminator followed by `amount_in` and
`min_amount_out` as little-endian u64 in the tokens' smallest units: Raydium's `swap_base_in`
layout (the byte 9) and Meteora's `swap` (the Anchor discriminator of "global:swap"). Its
accounts are a simplification of the venues' real lists, which name many more of the pool's
accounts: the pool, the owner (signer), the owner's source and destination token accounts, the
input and output mints, and the SPL Token program.
"""

from __future__ import annotations

import hashlib
import secrets
import struct
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_DOWN, ROUND_UP, Decimal, localcontext
from functools import lru_cache
from uuid import UUID

from pydantic import ConfigDict
from solders.hash import Hash
from solders.instruction import AccountMeta
from solders.instruction import Instruction as SolanaInstruction
from solders.keypair import Keypair
from solders.message import Message
from solders.pubkey import Pubkey
from solders.system_program import ID as SYSTEM_PROGRAM
from solders.system_program import TransferParams, transfer
from solders.transaction import Transaction as SolanaTransaction

from orderengine.model import EXACT, Model, plain_decimal
from orderengine.tokens import TOKENS, U64_MAX, WSOL_MINT
from orderengine.venues.values import Dex, Quote, RecentBlockhash

TOKEN_PROGRAM = Pubkey.from_string("TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA")
MEMO_PROGRAM = Pubkey.from_string("MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr")
NONCE_BYTES = 8
SECRET_KEY_BYTES = 32
"""A keypair's bytes are its secret key, then its public key (as Solana's CLI keeps them)."""
ASSOCIATED_TOKEN_PROGRAM = Pubkey.from_string("ATokenGPvbdGVxr1b2hvZbsiqW5xWH25efTNsLJA8knL")
SWAP_PROGRAMS: dict[Dex, Pubkey] = {
    "raydium": Pubkey.from_string("675kPX9MHTjS2zt1qfr1NYHuzeLXfQM9H24wFSUt1Mp8"),
    "meteora": Pubkey.from_string("LBUZKhRxPF3XUpBCjp4YzTKgLccjZhTSDM9YuVaPwxo"),
}
"""Raydium AMM v4 and Meteora DLMM, as deployed on mainnet."""
SWAP_DISCRIMINATORS: dict[Dex, bytes] = {
    "raydium": bytes([9]),
    "meteora": hashlib.sha256(b"global:swap").digest()[:8],
}
CREATE_IDEMPOTENT = bytes([1])
"""Associated Token Account program: create the account unless it exists."""
SYNC_NATIVE = bytes([17])
CLOSE_ACCOUNT = bytes([9])
WSOL = Pubkey.from_string(WSOL_MINT)


class Instruction(Model):
    """A readable summary of one instruction of the transaction, shown on `building`."""

    program: str
    """The program's name: associated-token, system, spl-token, raydium, meteora or memo."""
    program_id: str
    action: str
    args: dict[str, str | int]


class Transaction(Model):
    """A signed swap, ready to send: the quote it executes, its bound and its expiry.

    `raw` is the serialized signed transaction, what the chain receives; the other fields say
    what it holds, and the chain refuses a transaction they misdescribe.
    """

    model_config = ConfigDict(ser_json_bytes="base64", val_json_bytes="base64")

    order_id: UUID
    signature: str
    quote: Quote
    min_amount_out: Decimal
    instructions: tuple[Instruction, ...]
    expires_at: datetime
    """When it can land no more: exact on the simulated chain, estimated on a live one."""
    last_valid_block_height: int | None = None
    """On a live cluster, the block height after which it can land no more (its blockhash's
    `lastValidBlockHeight`): what decides its expiry there. None on the simulated chain."""
    blockhash: str | None = None
    """On a live cluster, the recent blockhash it was signed on: the cluster is asked whether it
    still takes it before the swap counts as expired. None on the simulated chain."""
    raw: bytes


@dataclass(frozen=True)
class Swap:
    """What a swap instruction says: the pool, the mints and the amounts in raw units."""

    pool: Pubkey
    mint_in: Pubkey
    mint_out: Pubkey
    amount_in: int
    min_amount_out: int

    @classmethod
    def of(cls, quote: Quote, minimum: Decimal) -> Swap:
        """The swap that executes `quote` and accepts no less than `minimum` out."""
        token_in, token_out = TOKENS[quote.token_in], TOKENS[quote.token_out]
        return cls(
            pool=Pubkey.from_string(quote.pool),
            mint_in=Pubkey.from_string(token_in.mint),
            mint_out=Pubkey.from_string(token_out.mint),
            amount_in=raw_units(quote.amount_in, token_in.decimals),
            min_amount_out=raw_units(minimum, token_out.decimals),
        )


def min_amount_out(quote: Quote, slippage_bps: int, floor: Decimal | None = None) -> Decimal:
    """The least output the order accepts: the quote less the slippage, rounded down.

    A `floor` (a limit order's amount in times its limit price) raises it: rounded up to
    the token's unit, so that no fill below the limit is accepted.
    """
    unit = TOKENS[quote.token_out].unit
    bound = quote.amount_out * (Decimal(10_000) - slippage_bps) / Decimal(10_000)
    minimum = bound.quantize(unit, rounding=ROUND_DOWN)
    if floor is None:
        return minimum
    return max(minimum, floor.quantize(unit, rounding=ROUND_UP, context=EXACT))


def raw_units(amount: Decimal, decimals: int) -> int:
    """`amount` in the token's smallest units, as a u64 carries it on chain."""
    with localcontext() as context:
        context.prec = 60
        units = amount.scaleb(decimals)
        if units != units.to_integral_value():
            raise ValueError(f"{amount} has more than {decimals} decimal places")
    value = int(units)
    if not 0 <= value <= U64_MAX:
        raise ValueError(f"{amount} is out of range for a token amount (a u64 of units)")
    return value


def public_key(signer: Keypair) -> Pubkey:
    """The signer's public key, read from the keypair's bytes: the secret key, then it.

    `Keypair.pubkey` derives it anew from the secret key, about 30 µs a call, and a cache keyed
    by the keypair costs nearly as much, since hashing a `Keypair` takes 23 µs. Reading it
    takes half a microsecond.
    """
    return Pubkey.from_bytes(bytes(signer)[SECRET_KEY_BYTES:])


@lru_cache(maxsize=1024)
def associated_token_address(owner: Pubkey, mint: Pubkey) -> Pubkey:
    """The owner's associated token account for `mint`, as the ATA program derives it.

    Kept once derived: the derivation hashes until it finds an address off the curve, and an
    engine's one wallet has one account per token.
    """
    seeds = [bytes(owner), bytes(TOKEN_PROGRAM), bytes(mint)]
    address, _bump = Pubkey.find_program_address(seeds, ASSOCIATED_TOKEN_PROGRAM)
    return address


def build(
    order_id: UUID,
    quote: Quote,
    minimum: Decimal,
    signer: Keypair,
    blockhash: RecentBlockhash,
) -> Transaction:
    """The signed transaction for one attempt: wrap native SOL in, swap, unwrap SOL out.

    It accepts no less than `minimum` out (`min_amount_out`). `blockhash` is a recent one
    from the chain; the memo's nonce makes the signature new whatever the blockhash.
    """
    owner = public_key(signer)
    swap = Swap.of(quote, minimum)
    token_in, token_out = TOKENS[quote.token_in], TOKENS[quote.token_out]
    wsol = associated_token_address(owner, WSOL)
    steps: list[tuple[SolanaInstruction, Instruction]] = []
    if token_in.native:
        steps += [
            _create_wsol_account(owner, wsol),
            _transfer(owner, wsol, swap.amount_in),
            _sync_native(wsol),
        ]
    elif token_out.native:
        steps.append(_create_wsol_account(owner, wsol))
    steps.append(_swap(quote, owner, swap, minimum))
    if token_in.native or token_out.native:
        steps.append(_close_account(owner, wsol))
    steps.append(_memo(f"orderengine {order_id} {secrets.token_hex(NONCE_BYTES)}"))
    recent = Hash.from_string(blockhash.blockhash)
    message = Message.new_with_blockhash([step for step, _ in steps], owner, recent)
    signed = SolanaTransaction.populate(message, [signer.sign_message(bytes(message))])
    return Transaction(
        order_id=order_id,
        signature=str(signed.signatures[0]),
        quote=quote,
        min_amount_out=minimum,
        instructions=tuple(summary for _, summary in steps),
        expires_at=blockhash.expires_at,
        raw=bytes(signed),
    )


def find_swap(transaction: SolanaTransaction, dex: Dex) -> Swap | None:
    """The one swap on `dex` that `transaction` holds, or None if it holds none or several."""
    message = transaction.message
    keys = message.account_keys
    discriminator = SWAP_DISCRIMINATORS[dex]
    found: list[Swap] = []
    for instruction in message.instructions:
        if keys[instruction.program_id_index] != SWAP_PROGRAMS[dex]:
            continue
        data, accounts = bytes(instruction.data), [keys[i] for i in bytes(instruction.accounts)]
        if not data.startswith(discriminator) or len(data) != len(discriminator) + 16:
            return None
        if len(accounts) != 7:
            return None
        amount_in, minimum = struct.unpack_from("<QQ", data, len(discriminator))
        found.append(Swap(accounts[0], accounts[4], accounts[5], amount_in, minimum))
    return found[0] if len(found) == 1 else None


def _swap(
    quote: Quote, owner: Pubkey, swap: Swap, minimum: Decimal
) -> tuple[SolanaInstruction, Instruction]:
    program = SWAP_PROGRAMS[quote.dex]
    source = associated_token_address(owner, swap.mint_in)
    destination = associated_token_address(owner, swap.mint_out)
    accounts = [
        AccountMeta(swap.pool, is_signer=False, is_writable=True),
        AccountMeta(owner, is_signer=True, is_writable=True),
        AccountMeta(source, is_signer=False, is_writable=True),
        AccountMeta(destination, is_signer=False, is_writable=True),
        AccountMeta(swap.mint_in, is_signer=False, is_writable=False),
        AccountMeta(swap.mint_out, is_signer=False, is_writable=False),
        AccountMeta(TOKEN_PROGRAM, is_signer=False, is_writable=False),
    ]
    data = SWAP_DISCRIMINATORS[quote.dex] + struct.pack("<QQ", swap.amount_in, swap.min_amount_out)
    summary = Instruction(
        program=quote.dex,
        program_id=str(program),
        action="swap",
        args={
            "pool": quote.pool,
            "mintIn": str(swap.mint_in),
            "mintOut": str(swap.mint_out),
            "amountIn": plain_decimal(quote.amount_in),
            "minAmountOut": plain_decimal(minimum),
        },
    )
    return SolanaInstruction(program, data, accounts), summary


def _memo(text: str) -> tuple[SolanaInstruction, Instruction]:
    """A memo: what makes the message, hence the signature, of every build its own."""
    summary = Instruction(
        program="memo", program_id=str(MEMO_PROGRAM), action="memo", args={"memo": text}
    )
    return SolanaInstruction(MEMO_PROGRAM, text.encode(), []), summary


def _create_wsol_account(owner: Pubkey, wsol: Pubkey) -> tuple[SolanaInstruction, Instruction]:
    accounts = [
        AccountMeta(owner, is_signer=True, is_writable=True),
        AccountMeta(wsol, is_signer=False, is_writable=True),
        AccountMeta(owner, is_signer=False, is_writable=False),
        AccountMeta(WSOL, is_signer=False, is_writable=False),
        AccountMeta(SYSTEM_PROGRAM, is_signer=False, is_writable=False),
        AccountMeta(TOKEN_PROGRAM, is_signer=False, is_writable=False),
    ]
    summary = Instruction(
        program="associated-token",
        program_id=str(ASSOCIATED_TOKEN_PROGRAM),
        action="createIdempotent",
        args={"account": str(wsol), "owner": str(owner), "mint": WSOL_MINT},
    )
    return SolanaInstruction(ASSOCIATED_TOKEN_PROGRAM, CREATE_IDEMPOTENT, accounts), summary


def _transfer(owner: Pubkey, wsol: Pubkey, lamports: int) -> tuple[SolanaInstruction, Instruction]:
    instruction = transfer(TransferParams(from_pubkey=owner, to_pubkey=wsol, lamports=lamports))
    summary = Instruction(
        program="system",
        program_id=str(SYSTEM_PROGRAM),
        action="transfer",
        args={"from": str(owner), "to": str(wsol), "lamports": str(lamports)},
    )
    return instruction, summary


def _sync_native(wsol: Pubkey) -> tuple[SolanaInstruction, Instruction]:
    accounts = [AccountMeta(wsol, is_signer=False, is_writable=True)]
    summary = Instruction(
        program="spl-token",
        program_id=str(TOKEN_PROGRAM),
        action="syncNative",
        args={"account": str(wsol), "mint": WSOL_MINT},
    )
    return SolanaInstruction(TOKEN_PROGRAM, SYNC_NATIVE, accounts), summary


def _close_account(owner: Pubkey, wsol: Pubkey) -> tuple[SolanaInstruction, Instruction]:
    """Close the wSOL account: its lamports, the swapped SOL included, go back to the owner."""
    accounts = [
        AccountMeta(wsol, is_signer=False, is_writable=True),
        AccountMeta(owner, is_signer=False, is_writable=True),
        AccountMeta(owner, is_signer=True, is_writable=False),
    ]
    summary = Instruction(
        program="spl-token",
        program_id=str(TOKEN_PROGRAM),
        action="closeAccount",
        args={"account": str(wsol), "mint": WSOL_MINT, "destination": str(owner)},
    )
    return SolanaInstruction(TOKEN_PROGRAM, CLOSE_ACCOUNT, accounts), summary
