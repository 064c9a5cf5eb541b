"""The Solana JSON-RPC calls a live venue makes: send, ask after a signature, read the chain.

`sendTransaction` runs the cluster's preflight simulation first: a transaction it refuses
(error -32002, the program's error and logs in `data`) was never forwarded, so that refusal
is definite. Any other error from it, or no answer at all, leaves the outcome unknown.
"""

from __future__ import annotations

import base64
import itertools
from dataclasses import dataclass
from typing import Any

from orderengine.errors import VenueError
from orderengine.venues.endpoint import Endpoint

COMMITMENT = "confirmed"
"""What the engine counts as landed: voted on by a supermajority of the cluster."""
PREFLIGHT_FAILED = -32002
"""The JSON-RPC error of a transaction the preflight simulation refused: never forwarded."""


class RpcError(VenueError):
    """A JSON-RPC error answer: `code`, `message`, and the method's `data`."""

    code = "venue_unavailable"

    def __init__(self, method: str, error: dict[str, Any]) -> None:
        super().__init__(f"{method}: {error.get('message', 'error')}")
        self.rpc_code = error.get("code")
        self.data = error.get("data")

    @property
    def refused_before_sending(self) -> bool:
        """Whether the preflight refused the transaction: it never reached the cluster."""
        return self.rpc_code == PREFLIGHT_FAILED


@dataclass(frozen=True)
class SignatureStatus:
    """`getSignatureStatuses` for one signature the cluster knows."""

    confirmation: str | None
    err: Any

    @property
    def landed(self) -> bool:
        return self.confirmation in ("confirmed", "finalized")


class SolanaRpc:
    """JSON-RPC 2.0 over one endpoint."""

    def __init__(self, endpoint: Endpoint) -> None:
        self._endpoint = endpoint
        self._ids = itertools.count(1)

    async def send_transaction(self, raw: bytes) -> str:
        """Send a signed transaction once; its signature, as the cluster took it."""
        options = {"encoding": "base64", "preflightCommitment": COMMITMENT}
        params = [base64.b64encode(raw).decode(), options]
        result = await self._call("sendTransaction", params, repeatable=False)
        return str(result)

    async def signature_status(self, signature: str) -> SignatureStatus | None:
        """What the cluster knows of `signature`, its whole history searched; None if nothing."""
        params = [[signature], {"searchTransactionHistory": True}]
        result = await self._call("getSignatureStatuses", params)
        value = result["value"][0]
        if value is None:
            return None
        return SignatureStatus(confirmation=value.get("confirmationStatus"), err=value.get("err"))

    async def block_height(self) -> int:
        return int(await self._call("getBlockHeight", [{"commitment": COMMITMENT}]))

    async def transaction(self, signature: str) -> dict[str, Any] | None:
        """The landed transaction with its metadata (balances before and after, fee)."""
        options = {
            "encoding": "json",
            "commitment": COMMITMENT,
            "maxSupportedTransactionVersion": 0,
        }
        result = await self._call("getTransaction", [signature, options])
        return result if isinstance(result, dict) else None

    async def _call(self, method: str, params: list[Any], *, repeatable: bool = True) -> Any:
        request = {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": params}
        answer = await self._endpoint.post("", request, repeatable=repeatable)
        if not isinstance(answer, dict):
            raise RpcError(method, {"message": "the answer is not a JSON-RPC response"})
        if "error" in answer:
            raise RpcError(method, answer["error"])
        return answer.get("result")
