"""Jupiter's swap API: a quote on one DEX, and the swap transaction that executes it.

`GET {base}/quote` with `dexes` naming one DEX (as Jupiter labels it: `Raydium`,
`Meteora DLMM`) and `onlyDirectRoutes=true` quotes a single pool of that DEX, so that the
router compares the venues themselves, each with its real fee and price impact. `POST
{base}/swap` turns a quote into an unsigned versioned transaction for the wallet, with its
`lastValidBlockHeight`; native SOL is wrapped and unwrapped inside it (`wrapAndUnwrapSol`).

The swap program checks the least output from the quote's `outAmount` and `slippageBps`, so
the engine's own bound goes in as `slippageBps` (`with_minimum`).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from solders.pubkey import Pubkey

from orderengine.errors import NoRoute, SwapRejected
from orderengine.venues.endpoint import Endpoint, EndpointError

MAX_COMPUTE_UNITS = 1_400_000
"""The most compute units one transaction may use on Solana."""
QUOTE_SLIPPAGE_BPS = 50
"""The slippage a quote is asked with; the engine's own bound replaces it before the swap."""
NO_ROUTE_CODES = frozenset({"COULD_NOT_FIND_ANY_ROUTE", "NO_ROUTES_FOUND", "TOKEN_NOT_TRADABLE"})
"""The `errorCode`s of Jupiter's 400 answer to a quote for which it has no route."""


@dataclass(frozen=True)
class PriorityFee:
    """What a swap pays for priority: a fixed compute-unit price, or Jupiter's estimate capped.

    `microlamports` per compute unit when set; otherwise Jupiter picks a fee from recent ones
    (`veryHigh`) and pays no more than `max_lamports` in all.
    """

    microlamports: int | None
    max_lamports: int

    @property
    def most_lamports(self) -> int:
        """The most a swap may pay for priority.

        The cap, or the fixed price at the most compute units a transaction may use, in
        lamports rounded up as the runtime rounds the fee it charges.
        """
        if self.microlamports is None:
            return self.max_lamports
        return -(-self.microlamports * MAX_COMPUTE_UNITS // 1_000_000)

    def request(self) -> dict[str, Any]:
        """The swap request's fields for this fee."""
        if self.microlamports is not None:
            return {"computeUnitPriceMicroLamports": self.microlamports}
        level = {"maxLamports": self.max_lamports, "priorityLevel": "veryHigh"}
        return {"prioritizationFeeLamports": {"priorityLevelWithMaxLamports": level}}


@dataclass(frozen=True)
class SwapTransaction:
    """The unsigned swap Jupiter built, and the block height past which it cannot land."""

    unsigned: bytes
    last_valid_block_height: int


class Jupiter:
    """The quote and swap calls, on one endpoint."""

    def __init__(self, endpoint: Endpoint, priority: PriorityFee) -> None:
        self._endpoint = endpoint
        self.priority = priority

    async def quote(self, mint_in: str, mint_out: str, amount: int, dex: str) -> dict[str, Any]:
        """Jupiter's quote for `amount` raw units of `mint_in` on the DEX labelled `dex`.

        Raises `NoRoute` when that DEX has no pool for the pair, or Jupiter's answer is not a
        single-pool quote on it.
        """
        params = {
            "inputMint": mint_in,
            "outputMint": mint_out,
            "amount": str(amount),
            "slippageBps": str(QUOTE_SLIPPAGE_BPS),
            "swapMode": "ExactIn",
            "dexes": dex,
            "onlyDirectRoutes": "true",
        }
        try:
            answer = await self._endpoint.get("quote", params)
        except EndpointError as error:
            if not _no_route(error):
                raise
            raise NoRoute(f"Jupiter has no route on {dex} for this pair") from error
        if not isinstance(answer, dict) or not _single_pool_on(answer, dex):
            raise NoRoute(f"Jupiter has no single-pool route on {dex} for this pair")
        return answer

    async def swap(self, quote: dict[str, Any], wallet: Pubkey) -> SwapTransaction:
        """The unsigned transaction that executes `quote` from `wallet`, which pays its fees."""
        body = {
            "quoteResponse": quote,
            "userPublicKey": str(wallet),
            "wrapAndUnwrapSol": True,
            "dynamicComputeUnitLimit": True,
            **self.priority.request(),
        }
        return _swap_transaction(await self._endpoint.post("swap", body))


def with_minimum(quote: dict[str, Any], minimum: int) -> dict[str, Any]:
    """`quote` with the slippage that makes the swap accept no less than `minimum` raw units.

    Raises `SwapRejected` when the quote itself pays less than `minimum`.

    The program accepts `outAmount × (10000 − slippageBps) / 10000`, rounded down, so the
    slippage is rounded down to keep that at or above `minimum`; `otherAmountThreshold`
    states the result.
    """
    out = int(quote["outAmount"])
    if minimum > out:
        raise SwapRejected(f"the quote pays {out} raw units, under the least accepted, {minimum}")
    bps = (out - minimum) * 10_000 // out if out > 0 else 0
    threshold = out * (10_000 - bps) // 10_000
    return {**quote, "slippageBps": bps, "otherAmountThreshold": str(threshold)}


def _no_route(error: EndpointError) -> bool:
    """Whether Jupiter refused the quote for want of a route (400, with its error code)."""
    body = error.body if isinstance(error.body, dict) else {}
    return error.http_status == HTTPStatus.BAD_REQUEST and body.get("errorCode") in NO_ROUTE_CODES


def _single_pool_on(quote: dict[str, Any], dex: str) -> bool:
    plan = quote.get("routePlan")
    if not isinstance(plan, list) or len(plan) != 1:
        return False
    info = plan[0].get("swapInfo", {})
    return bool(info.get("label") == dex and info.get("ammKey"))


def _swap_transaction(answer: Any) -> SwapTransaction:
    """The swap in Jupiter's answer; `SwapRejected` for an answer that does not hold one.

    Nothing was signed or sent, so refusing ends the attempt safely.
    """
    if not isinstance(answer, dict):
        raise SwapRejected(f"Jupiter's swap answer is not an object: {type(answer).__name__}")
    encoded, height = answer.get("swapTransaction"), answer.get("lastValidBlockHeight")
    if not isinstance(encoded, str) or not encoded:
        raise SwapRejected("Jupiter's swap answer holds no swapTransaction")
    if not isinstance(height, int) or isinstance(height, bool):
        raise SwapRejected(f"Jupiter's swap answer holds no lastValidBlockHeight: {height!r}")
    try:
        unsigned = base64.b64decode(encoded, validate=True)
    except binascii.Error as error:
        raise SwapRejected(f"Jupiter's swapTransaction is not base64: {error}") from error
    return SwapTransaction(unsigned=unsigned, last_valid_block_height=height)
