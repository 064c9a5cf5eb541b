"""Building the swap transaction: wrapping SOL where needed, the swap, and its signature."""

from __future__ import annotations

import hashlib
from decimal import Decimal
from typing import Any
from uuid import UUID

import base58

from orderengine.model import Model
from orderengine.tokens import TOKENS, WSOL_MINT
from orderengine.venues.values import Quote


class Instruction(Model):
    """One step of a transaction, named as the Solana program it calls would name it."""

    program: str
    action: str
    args: dict[str, Any]


class Transaction(Model):
    """A signed swap, ready to send: the quote it executes and its slippage bound."""

    order_id: UUID
    signature: str
    quote: Quote
    min_amount_out: Decimal
    instructions: tuple[Instruction, ...]


def min_amount_out(quote: Quote, slippage_bps: int) -> Decimal:
    """The least output the order accepts: the quote less the slippage, rounded down."""
    unit = TOKENS[quote.token_out].unit
    bound = quote.amount_out * (Decimal(10_000) - slippage_bps) / Decimal(10_000)
    return bound.quantize(unit, rounding="ROUND_DOWN")


def sign(order_id: UUID, attempt: int) -> str:
    """A Solana-shaped signature (base58 of 64 bytes), one per order and attempt.

    Deterministic, so rebuilding an attempt that was never sent yields the same signature,
    and a new attempt always yields a new one.
    """
    return str(base58.b58encode(hashlib.sha512(f"{order_id}:{attempt}".encode()).digest()).decode())


def build(order_id: UUID, attempt: int, quote: Quote, slippage_bps: int) -> Transaction:
    """The transaction for one attempt: wrap native SOL in, swap, unwrap native SOL out."""
    minimum = min_amount_out(quote, slippage_bps)
    token_in, token_out = TOKENS[quote.token_in], TOKENS[quote.token_out]
    steps: list[Instruction] = []
    if token_in.native:
        steps += _wrap(quote.amount_in)
    elif token_out.native:
        steps.append(_wsol_account())
    steps.append(
        Instruction(
            program=quote.dex,
            action="swap",
            args={
                "pool": quote.pool,
                "mintIn": token_in.mint,
                "mintOut": token_out.mint,
                "amountIn": str(quote.amount_in),
                "minAmountOut": str(minimum),
            },
        )
    )
    if token_in.native or token_out.native:
        steps.append(
            Instruction(program="spl-token", action="closeAccount", args={"mint": WSOL_MINT})
        )
    return Transaction(
        order_id=order_id,
        signature=sign(order_id, attempt),
        quote=quote,
        min_amount_out=minimum,
        instructions=tuple(steps),
    )


def _wrap(amount: Decimal) -> list[Instruction]:
    """Native SOL into a temporary wSOL account: create it, fund it, sync its balance."""
    lamports = str(int(amount.scaleb(TOKENS["SOL"].decimals)))
    return [
        _wsol_account(),
        Instruction(program="system", action="transfer", args={"lamports": lamports}),
        Instruction(program="spl-token", action="syncNative", args={"mint": WSOL_MINT}),
    ]


def _wsol_account() -> Instruction:
    return Instruction(
        program="associated-token", action="createIdempotent", args={"mint": WSOL_MINT}
    )
