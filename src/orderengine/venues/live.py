"""A live venue: Raydium or Meteora on a real Solana cluster, quoted and built by Jupiter.

Quotes come from Jupiter restricted to the venue's DEX (`jupiter.py`); the swap transaction
Jupiter builds is checked to do nothing but the swap (`signable.py`) and signed here with the
engine's keypair;
it is sent and followed over the cluster's JSON-RPC (`rpc.py`). A signature is definite only
when the cluster says so: landed (its real amounts read from the chain, `balances.py`),
failed on chain, or never landed with the finalized block height past its
`lastValidBlockHeight` and its blockhash no longer taken (see `transaction_status` for what
else that takes).
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
from solders.compute_budget import ID as COMPUTE_BUDGET_PROGRAM
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.system_program import ID as SYSTEM_PROGRAM
from solders.transaction import VersionedTransaction

from orderengine.errors import SlippageExceeded, SwapRejected, VenueError
from orderengine.tokens import TOKENS, Token
from orderengine.transaction import (
    ASSOCIATED_TOKEN_PROGRAM,
    TOKEN_PROGRAM,
    Instruction,
    Transaction,
    public_key,
    raw_units,
)
from orderengine.venues import signable
from orderengine.venues.balances import Unreadable, moved
from orderengine.venues.jupiter import Jupiter, with_minimum
from orderengine.venues.rpc import PREFLIGHT_FAILED, RpcError, SignatureStatus, SolanaRpc
from orderengine.venues.signable import JUPITER_PROGRAM, Expected
from orderengine.venues.values import (
    Dex,
    Execution,
    Quote,
    TransactionState,
    TransactionStatus,
    price_of,
)

log = structlog.get_logger(__name__)

MAX_PROCESSING_AGE = 150
"""Blocks a blockhash lives: a transaction lands at a block height no lower than its
`lastValidBlockHeight` less this, and a slot is never lower than its block's height."""
SLOTS_PER_BLOCK_BOUND = 2
"""The most slots a block is taken to have cost, on average, since a swap could have landed
(a cluster skips about one slot in twenty): how far back a node's ledger must reach for its
"unknown" to mean "never landed"."""
REMEMBERED_FEES = 10_000
JUPITER_SLIPPAGE_EXCEEDED = 6001
"""Jupiter's program error when the route would pay less than the swap's least output."""
PROGRAM_NAMES = {
    COMPUTE_BUDGET_PROGRAM: "compute-budget",
    SYSTEM_PROGRAM: "system",
    TOKEN_PROGRAM: "spl-token",
    ASSOCIATED_TOKEN_PROGRAM: "associated-token",
    JUPITER_PROGRAM: "jupiter",
}


class JupiterQuote(Quote):
    """A quote with the answer Jupiter gave for it, which its swap is built from."""

    response: dict[str, Any] = Field(exclude=True, repr=False)


class LiveVenue:
    """One DEX on a live cluster: `label` is what Jupiter calls it."""

    def __init__(
        self,
        name: Dex,
        label: str,
        jupiter: Jupiter,
        rpc: SolanaRpc,
        *,
        poll_s: float,
        lifetime_s: float,
    ) -> None:
        """A venue for the DEX Jupiter calls `label`.

        `lifetime_s` is about how long a fresh blockhash lives (150 blocks of about 400 ms):
        the estimate shown as `expiresAt`, before which the cluster is not asked whether a
        swap expired. The block height, not this, decides that it has.
        """
        self._name = name
        self._lifetime = timedelta(seconds=lifetime_s)
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
        asked = (sold.mint, bought.mint, str(raw_in))
        if (answer.get("inputMint"), answer.get("outputMint"), answer.get("inAmount")) != asked:
            raise VenueError(f"Jupiter's quote on {self._label} is not for the swap asked")
        amount_out = Decimal(int(answer["outAmount"])).scaleb(-bought.decimals)
        fee = _fee_in(answer, sold, bought, amount_in, amount_out)
        return JupiterQuote(
            dex=self._name,
            pool=answer["routePlan"][0]["swapInfo"]["ammKey"],
            token_in=token_in,
            token_out=token_out,
            amount_in=amount_in,
            amount_out=amount_out,
            price=price_of(amount_in, amount_out),
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
        swap = await self._jupiter.swap(bounded, public_key(signer))
        try:
            unsigned = VersionedTransaction.from_bytes(swap.unsigned)
        except ValueError as error:
            raise SwapRejected(f"Jupiter's swap transaction is unreadable: {error}") from error
        sold = TOKENS[quote.token_in]
        expected = Expected(
            wallet=public_key(signer),
            mint_in=Pubkey.from_string(sold.mint),
            mint_out=Pubkey.from_string(bought.mint),
            amount_in=raw_units(quote.amount_in, sold.decimals),
            minimum_out=minimum,
            max_priority_lamports=self._jupiter.priority.most_lamports,
        )
        signable.check(unsigned.message, expected)
        signed = VersionedTransaction(unsigned.message, [signer])
        threshold = Decimal(int(bounded["otherAmountThreshold"])).scaleb(-bought.decimals)
        signature = str(signed.signatures[0])
        return Transaction(
            order_id=order_id,
            signature=signature,
            quote=quote,
            min_amount_out=threshold,
            instructions=_summary(signed),
            expires_at=datetime.now(UTC) + self._lifetime,
            last_valid_block_height=swap.last_valid_block_height,
            blockhash=str(unsigned.message.recent_blockhash),
            raw=bytes(signed),
        )

    async def execute(self, transaction: Transaction) -> Execution:
        """Send once, then follow the signature until it is definite, or for a while.

        Raises `SwapRejected` when the preflight refused it, it failed on chain, or it
        expired unlanded; any other error leaves the outcome unknown. So does following it
        for twice its expected lifetime with nothing definite (a landed swap whose amounts the
        node will not give, a node whose ledger is too short to tell expiry): the engine then
        asks again later, rather than hold a worker until the node can answer.
        """
        self._remember_fee(transaction.signature, transaction.quote.fee)
        try:
            await self._send(transaction)
        except RpcError as error:
            if error.refused_before_sending:
                refusal = f"the cluster refused the swap: {_program_error(error)}"
                raise _rejection(refusal, slipped=_slipped(error.program_error)) from error
            if error.rpc_code != PREFLIGHT_FAILED:
                raise
            log.info("preflight_refusal_not_definite", error=_program_error(error))
        while True:
            status = await self.transaction_status(
                transaction.signature,
                transaction.expires_at,
                transaction.last_valid_block_height,
                transaction.blockhash,
            )
            if status.state is TransactionState.LANDED:
                assert status.execution is not None
                return status.execution
            if status.state is not TransactionState.PENDING:
                reason = status.error or f"{transaction.signature} {status.state}"
                raise _rejection(reason, slipped=status.slipped)
            if datetime.now(UTC) > transaction.expires_at + self._lifetime:
                raise VenueError(
                    f"{transaction.signature} is not definite twice its expected lifetime "
                    "after it was built; it is asked after again later"
                )
            await asyncio.sleep(self._poll_s)

    async def _send(self, transaction: Transaction) -> None:
        """Send the transaction; the same bytes again while the node has not seen its blockhash.

        Jupiter builds on a blockhash its own node has seen, which the engine's may not have
        yet: the preflight then refuses the transaction, unsent. The same signed bytes, one
        signature that lands at most once, go again each poll until the estimate of its
        expiry, rather than spending an attempt on a new swap.
        """
        while True:
            try:
                await self._rpc.send_transaction(transaction.raw)
                return
            except RpcError as error:
                if not error.blockhash_unseen or datetime.now(UTC) >= transaction.expires_at:
                    raise
            log.info("preflight_blockhash_unseen", tx_hash=transaction.signature)
            await asyncio.sleep(self._poll_s)

    async def transaction_status(
        self,
        signature: str,
        expires_at: datetime,
        last_valid_block_height: int | None = None,
        blockhash: str | None = None,
    ) -> TransactionStatus:
        """As the cluster answers; `expired` only when no landing is possible and none is seen.

        A signature no one knows has expired when the finalized block height has passed its
        `lastValidBlockHeight` (no block after can take it), the node no longer takes its
        `blockhash` (the height is Jupiter's word, and a stale one would let a second swap
        go while the first can still land), the node still holds every slot it could have
        landed in, and a node that had reached that finalized slot still knows nothing of
        it: so an answer from a node behind the others, or one that forgot old slots, is
        never taken for "never landed".
        """
        looked = await self._rpc.signature_status(signature)
        if looked.status is None:
            seen_at = await self._expiry_slot(expires_at, last_valid_block_height, blockhash)
            if seen_at is not None:
                looked = await self._rpc.signature_status(signature)
                if looked.status is None and looked.slot >= seen_at:
                    self._quoted_fees.pop(signature, None)
                    error = f"transaction {signature} expired without landing"
                    return TransactionStatus(
                        signature=signature, state=TransactionState.EXPIRED, error=error
                    )
        return await self._status_of(signature, looked.status)

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
        try:
            execution = self._execution(signature, landed)
        except (Unreadable, LookupError, TypeError, ValueError) as error:
            # It landed, so it is never retried; until its amounts can be read, it waits.
            log.error("landed_swap_unreadable", tx_hash=signature, error=repr(error))
            return TransactionStatus(signature=signature, state=TransactionState.PENDING)
        return TransactionStatus(
            signature=signature, state=TransactionState.LANDED, execution=execution
        )

    async def _expiry_slot(
        self, expires_at: datetime, last_valid_block_height: int | None, blockhash: str | None
    ) -> int | None:
        """The finalized slot past which the signature can land no more; None if not yet.

        The cluster is asked only once the estimate `expires_at` has passed, so that
        following a swap costs one request a poll until then. None too when the node no
        longer holds every slot the signature could have landed in.
        """
        if expires_at > datetime.now(UTC):
            return None
        if last_valid_block_height is None:
            return 0
        height = await self._rpc.finalized_height()
        if height.block_height <= last_valid_block_height:
            return None
        if blockhash is not None and await self._rpc.blockhash_valid(blockhash):
            log.warning(
                "blockhash_valid_past_its_last_valid_height",
                blockhash=blockhash,
                last_valid_block_height=last_valid_block_height,
                finalized_height=height.block_height,
            )
            return None
        blocks_back = height.block_height - (last_valid_block_height - MAX_PROCESSING_AGE)
        needed = height.slot - SLOTS_PER_BLOCK_BOUND * blocks_back
        oldest = await self._rpc.minimum_ledger_slot()
        if oldest > needed:
            log.warning("ledger_too_short_to_tell_expiry", oldest_slot=oldest, needed_slot=needed)
            return None
        return height.slot

    def _remember_fee(self, signature: str, fee: Decimal) -> None:
        """Keep the quoted pool fee of a swap being sent, for its confirmation.

        The oldest are forgotten past `REMEMBERED_FEES`: a fee is shown only when known.
        """
        self._quoted_fees[signature] = fee
        while len(self._quoted_fees) > REMEMBERED_FEES:
            del self._quoted_fees[next(iter(self._quoted_fees))]

    def _execution(self, signature: str, landed: dict[str, Any]) -> Execution:
        """The landed swap's execution, from what the chain recorded of it."""
        swap = moved(landed)
        return Execution(
            dex=self._name,
            tx_hash=signature,
            amount_in=swap.amount_in,
            amount_out=swap.amount_out,
            executed_price=price_of(swap.amount_in, swap.amount_out),
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
        program = keys[instruction.program_id_index]
        summary.append(
            Instruction(
                program=PROGRAM_NAMES.get(program, "program"),
                program_id=str(program),
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
