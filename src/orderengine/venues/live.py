"""A live venue: Raydium or Meteora on a real Solana cluster, quoted and built by Jupiter.

Quotes come from Jupiter restricted to the venue's DEX (`jupiter.py`); the swap transaction
Jupiter builds is checked to do nothing but the swap (`signable.py`) and signed here with the
engine's keypair;
it is sent and followed over the cluster's JSON-RPC (`rpc.py`). A signature is definite only
when the cluster says so: landed (its real amounts read from the chain, `balances.py`),
failed on chain, or never landed with the block height past its `lastValidBlockHeight`.
Everything else is an unknown outcome, which the engine resolves by asking again, never by
sending again.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import combinations
from typing import Any
from uuid import UUID

import structlog
from pydantic import Field
from solders.keypair import Keypair
from solders.transaction import VersionedTransaction

from orderengine.errors import SlippageExceeded, SwapRejected
from orderengine.tokens import TOKENS, Token
from orderengine.transaction import Instruction, Transaction, raw_units
from orderengine.venues import signable
from orderengine.venues.balances import moved
from orderengine.venues.jupiter import Jupiter, with_minimum
from orderengine.venues.rpc import RpcError, SignatureStatus, SolanaRpc
from orderengine.venues.signable import Expected
from orderengine.venues.values import (
    Dex,
    Execution,
    Quote,
    TransactionState,
    TransactionStatus,
)

log = structlog.get_logger(__name__)

BLOCKHASH_LIFETIME = timedelta(seconds=60)
"""About how long a fresh blockhash lives (150 blocks of about 400 ms): the estimate shown as
`expiresAt`. The block height, not this, decides when a live swap has expired."""
JUPITER_SLIPPAGE_EXCEEDED = 6001
"""Jupiter's program error when the route would pay less than the swap's least output."""
PROGRAM_NAMES = {
    "ComputeBudget111111111111111111111111111111": "compute-budget",
    "11111111111111111111111111111111": "system",
    "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA": "spl-token",
    "ATokenGPvbdGVxr1b2hvZbsiqW5xWH25efTNsLJA8knL": "associated-token",
    "JUP6LkbZbjS1jKKwapdHNy74zcZ3tLUZoi5QNyVTaV4": "jupiter",
}


class JupiterQuote(Quote):
    """A quote with the answer Jupiter gave for it, which its swap is built from."""

    response: dict[str, Any] = Field(exclude=True, repr=False)


class LiveVenue:
    """One DEX on a live cluster: `label` is what Jupiter calls it."""

    def __init__(
        self, name: Dex, label: str, jupiter: Jupiter, rpc: SolanaRpc, poll_s: float
    ) -> None:
        self._name = name
        self._label = label
        self._jupiter = jupiter
        self._rpc = rpc
        self._poll_s = poll_s
        self._quoted_fees: dict[str, Decimal] = {}

    @property
    def name(self) -> Dex:
        return self._name

    async def quote(self, token_in: str, token_out: str, amount_in: Decimal) -> Quote:
        sold, bought = TOKENS[token_in], TOKENS[token_out]
        raw_in = raw_units(amount_in, sold.decimals)
        answer = await self._jupiter.quote(sold.mint, bought.mint, raw_in, self._label)
        amount_out = Decimal(int(answer["outAmount"])).scaleb(-bought.decimals)
        fee = _fee_in(answer, sold, bought, amount_in, amount_out)
        return JupiterQuote(
            dex=self._name,
            pool=answer["routePlan"][0]["swapInfo"]["ammKey"],
            token_in=token_in,
            token_out=token_out,
            amount_in=amount_in,
            amount_out=amount_out,
            price=(amount_out / amount_in).quantize(Decimal("1e-12")),
            price_impact_pct=(Decimal(str(answer.get("priceImpactPct", "0"))) * 100).normalize(),
            fee=fee,
            fee_bps=(fee / amount_in * 10_000).quantize(Decimal("0.01")),
            response=answer,
        )

    async def build(
        self, order_id: UUID, quote: Quote, min_amount_out: Decimal, signer: Keypair
    ) -> Transaction:
        """Jupiter's transaction for `quote` with the engine's bound, signed by `signer`."""
        if not isinstance(quote, JupiterQuote) or quote.dex != self._name:
            raise SwapRejected(f"{self._name} did not give this quote; routing again")
        bought = TOKENS[quote.token_out]
        minimum = raw_units(min_amount_out, bought.decimals)
        bounded = with_minimum(quote.response, minimum)
        swap = await self._jupiter.swap(bounded, signer.pubkey())
        try:
            unsigned = VersionedTransaction.from_bytes(swap.unsigned)
        except ValueError as error:
            raise SwapRejected(f"Jupiter's swap transaction is unreadable: {error}") from error
        expected = Expected(
            wallet=signer.pubkey(),
            amount_in=int(quote.response["inAmount"]),
            minimum_out=minimum,
            max_priority_lamports=self._jupiter.priority.most_lamports,
        )
        signable.check(unsigned.message, expected)
        signed = VersionedTransaction(unsigned.message, [signer])
        threshold = Decimal(int(bounded["otherAmountThreshold"])).scaleb(-bought.decimals)
        signature = str(signed.signatures[0])
        self._quoted_fees[signature] = quote.fee
        return Transaction(
            order_id=order_id,
            signature=signature,
            quote=quote,
            min_amount_out=threshold,
            instructions=_summary(signed),
            expires_at=datetime.now(UTC) + BLOCKHASH_LIFETIME,
            last_valid_block_height=swap.last_valid_block_height,
            raw=bytes(signed),
        )

    async def execute(self, transaction: Transaction) -> Execution:
        """Send once, then follow the signature until it is definite.

        Raises `SwapRejected` when the preflight refused it, it failed on chain, or it
        expired unlanded; any other error leaves the outcome unknown.
        """
        try:
            await self._rpc.send_transaction(transaction.raw)
        except RpcError as error:
            if not error.refused_before_sending:
                raise
            refusal = f"the cluster refused the swap: {_program_error(error)}"
            data = error.data if isinstance(error.data, dict) else {}
            raise _rejection(refusal, slipped=_slipped(data.get("err"))) from error
        while True:
            status = await self.transaction_status(
                transaction.signature, transaction.expires_at, transaction.last_valid_block_height
            )
            if status.state is TransactionState.LANDED:
                assert status.execution is not None
                return status.execution
            if status.state is not TransactionState.PENDING:
                reason = status.error or f"{transaction.signature} {status.state}"
                raise _rejection(reason, slipped=status.slipped)
            await asyncio.sleep(self._poll_s)

    async def transaction_status(
        self, signature: str, expires_at: datetime, last_valid_block_height: int | None = None
    ) -> TransactionStatus:
        known = await self._rpc.signature_status(signature)
        if known is None and await self._expired(expires_at, last_valid_block_height):
            known = await self._rpc.signature_status(signature)
            if known is None:
                self._quoted_fees.pop(signature, None)
                error = f"transaction {signature} expired without landing"
                return TransactionStatus(
                    signature=signature, state=TransactionState.EXPIRED, error=error
                )
        return await self._status_of(signature, known)

    async def pairs(self) -> frozenset[frozenset[str]]:
        """Every pair of known tokens: Jupiter says which the DEX has a pool for when quoted."""
        return frozenset(frozenset(pair) for pair in combinations(TOKENS, 2))

    async def _status_of(self, signature: str, known: SignatureStatus | None) -> TransactionStatus:
        if known is None or not known.landed:
            # Only a confirmed status is definite: a failure seen at `processed` may be on a
            # fork the cluster abandons, and the same transaction land on another.
            return TransactionStatus(signature=signature, state=TransactionState.PENDING)
        if known.err is not None:
            self._quoted_fees.pop(signature, None)
            slipped = _slipped(known.err)
            why = f"slippage exceeded ({known.err})" if slipped else str(known.err)
            error = f"the swap failed on chain: {why}"
            return TransactionStatus(
                signature=signature, state=TransactionState.REJECTED, error=error, slipped=slipped
            )
        landed = await self._rpc.transaction(signature)
        if landed is None:
            return TransactionStatus(signature=signature, state=TransactionState.PENDING)
        execution = self._execution(signature, landed)
        return TransactionStatus(
            signature=signature, state=TransactionState.LANDED, execution=execution
        )

    async def _expired(self, expires_at: datetime, last_valid_block_height: int | None) -> bool:
        if last_valid_block_height is None:
            return expires_at <= datetime.now(UTC)
        return await self._rpc.block_height() > last_valid_block_height

    def _execution(self, signature: str, landed: dict[str, Any]) -> Execution:
        """The landed swap's execution; a landed transaction it cannot read stays unknown."""
        swap = moved(landed)
        return Execution(
            dex=self._name,
            tx_hash=signature,
            amount_in=swap.amount_in,
            amount_out=swap.amount_out,
            executed_price=(swap.amount_out / swap.amount_in).quantize(Decimal("1e-12")),
            fee=self._quoted_fees.pop(signature, None),
            network_fee=swap.network_fee,
            priority_fee=swap.priority_fee,
        )


def _fee_in(
    answer: dict[str, Any], sold: Token, bought: Token, amount_in: Decimal, amount_out: Decimal
) -> Decimal:
    """The pool's fee as Jupiter quoted it, in the token sold; 0 when it named none."""
    info = answer["routePlan"][0]["swapInfo"]
    mint, amount = info.get("feeMint"), info.get("feeAmount")
    if amount is None or mint not in (sold.mint, bought.mint):
        return Decimal(0)
    if mint == sold.mint:
        return Decimal(int(amount)).scaleb(-sold.decimals)
    in_out = Decimal(int(amount)).scaleb(-bought.decimals) * amount_in / amount_out
    return in_out.quantize(sold.unit)


def _summary(transaction: VersionedTransaction) -> tuple[Instruction, ...]:
    """Each instruction named by its program, as the `building` event shows it."""
    keys = transaction.message.account_keys
    summary = []
    for instruction in transaction.message.instructions:
        program = str(keys[instruction.program_id_index])
        summary.append(
            Instruction(
                program=PROGRAM_NAMES.get(program, "program"),
                program_id=program,
                action="invoke",
                args={
                    "accounts": len(bytes(instruction.accounts)),
                    "dataBytes": len(instruction.data),
                },
            )
        )
    return tuple(summary)


def _slipped(err: Any) -> bool:
    """Whether a transaction error is Jupiter's `SlippageToleranceExceeded`: custom error 6001."""
    match err:
        case {"InstructionError": [_, {"Custom": code}]}:
            return bool(code == JUPITER_SLIPPAGE_EXCEEDED)
    return False


def _rejection(reason: str, *, slipped: bool) -> SwapRejected:
    return SlippageExceeded(reason) if slipped else SwapRejected(reason)


def _program_error(error: RpcError) -> str:
    """The program's error from a refused preflight, with its last log line when there is one."""
    data = error.data if isinstance(error.data, dict) else {}
    logs = data.get("logs") or []
    last = f" ({logs[-1]})" if logs else ""
    return f"{data.get('err', error.message)}{last}"
