"""The Solana JSON-RPC calls a live venue makes: send, ask after a signature, read the chain.

`sendTransaction` runs the cluster's preflight simulation first: a transaction it refuses
(error -32002, the program's error and logs in `data`) was never forwarded, so that refusal
is definite — unless the request went more than once (after a 429), when the refusal may be
of a repeat of a transaction the first request delivered, or says the transaction was
processed already. Any other error from it, or no answer at all, leaves the outcome unknown.
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
ALREADY_PROCESSED = "AlreadyProcessed"
"""The preflight's error for a signature the cluster has processed already."""
BLOCKHASH_NOT_FOUND = "BlockhashNotFound"
"""The preflight's error for a transaction on a blockhash the node has not seen (yet)."""


class RpcError(VenueError):
    """A JSON-RPC error answer: its `rpc_code`, its message, and the method's `data`.

    `resent` when the request went more than once, after the endpoint refused it with a 429.
    """

    code = "venue_unavailable"

    def __init__(self, method: str, error: dict[str, Any], *, resent: bool = False) -> None:
        super().__init__(f"{method}: {error.get('message', 'error')}")
        self.rpc_code = error.get("code")
        self.data = error.get("data")
        self.resent = resent

    @property
    def program_error(self) -> Any:
        """The transaction error the preflight reported (`data.err`), if any."""
        return self.data.get("err") if isinstance(self.data, dict) else None

    @property
    def blockhash_unseen(self) -> bool:
        """Whether the preflight refused it, unsent, for a blockhash the node has not seen."""
        return self.refused_before_sending and self.program_error == BLOCKHASH_NOT_FOUND

    @property
    def refused_before_sending(self) -> bool:
        """Whether the transaction surely never reached the cluster.

        Its preflight refused it for a reason of its own, and the request refused went once.
        """
        return (
            self.rpc_code == PREFLIGHT_FAILED
            and not self.resent
            and self.program_error != ALREADY_PROCESSED
        )


@dataclass(frozen=True)
class SignatureStatus:
    """`getSignatureStatuses` for one signature the cluster knows."""

    confirmation: str | None
    confirmations: int | None
    err: Any

    @property
    def landed(self) -> bool:
        """In a confirmed block.

        A node that names no status and no confirmation count either reports a rooted
        (finalized) one, as older nodes do.
        """
        if self.confirmation is None:
            return self.confirmations is None
        return self.confirmation in ("confirmed", "finalized")


@dataclass(frozen=True)
class Looked:
    """What a node answered about a signature, and the slot it had reached when it did."""

    status: SignatureStatus | None
    slot: int


@dataclass(frozen=True)
class Height:
    """The finalized block height, and the slot of that block."""

    block_height: int
    slot: int


class SolanaRpc:
    """JSON-RPC 2.0 over one endpoint."""

    def __init__(self, endpoint: Endpoint) -> None:
        self._endpoint = endpoint
        self._ids = itertools.count(1)

    async def send_transaction(self, raw: bytes) -> None:
        """Send a signed transaction; `RpcError` for an error answer."""
        options = {"encoding": "base64", "preflightCommitment": COMMITMENT}
        request = self._request("sendTransaction", [base64.b64encode(raw).decode(), options])
        answer, sends = await self._endpoint.send("", request)
        self._result("sendTransaction", answer, resent=sends > 1)

    async def signature_status(self, signature: str) -> Looked:
        """What the cluster knows of `signature`, its whole history searched."""
        params = [[signature], {"searchTransactionHistory": True}]
        result = await self._call("getSignatureStatuses", params)
        value = result["value"][0]
        status = None
        if value is not None:
            status = SignatureStatus(
                confirmation=value.get("confirmationStatus"),
                confirmations=value.get("confirmations"),
                err=value.get("err"),
            )
        return Looked(status=status, slot=int(result["context"]["slot"]))

    async def finalized_height(self) -> Height:
        result = await self._call("getEpochInfo", [{"commitment": "finalized"}])
        return Height(block_height=int(result["blockHeight"]), slot=int(result["absoluteSlot"]))

    async def blockhash_valid(self, blockhash: str) -> bool:
        """Whether a transaction made on `blockhash` may still land, by the node's newest bank.

        A node answers no for a blockhash it has not seen as well as for one expired: ask only
        once its finalized blocks have passed where the blockhash could have come from.
        """
        result = await self._call("isBlockhashValid", [blockhash, {"commitment": "processed"}])
        return bool(result["value"])

    async def minimum_ledger_slot(self) -> int:
        """The oldest slot the node still holds: it knows nothing of transactions before."""
        return int(await self._call("minimumLedgerSlot", []))

    async def transaction(self, signature: str) -> dict[str, Any] | None:
        """The landed transaction with its metadata (balances before and after, fee)."""
        options = {
            "encoding": "json",
            "commitment": COMMITMENT,
            "maxSupportedTransactionVersion": 0,
        }
        result = await self._call("getTransaction", [signature, options])
        return result if isinstance(result, dict) else None

    async def _call(self, method: str, params: list[Any]) -> Any:
        return self._result(method, await self._endpoint.post("", self._request(method, params)))

    def _request(self, method: str, params: list[Any]) -> dict[str, Any]:
        return {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": params}

    @staticmethod
    def _result(method: str, answer: Any, *, resent: bool = False) -> Any:
        if not isinstance(answer, dict):
            raise RpcError(method, {"message": "the answer is not a JSON-RPC response"})
        if "error" in answer:
            raise RpcError(method, answer["error"], resent=resent)
        return answer.get("result")
