"""A fake Jupiter and a fake Solana cluster for the live venues, on aioresponses.

Every answer is one of the documented bodies in `tests/data/live/` (see its README), with
the values only a test knows filled in: the wallet, the signature, the unsigned swap
transaction. `live_cluster()` patches every aiohttp session for the block, letting through
what goes to 127.0.0.1 (a test's own app and its client).

The fake keeps a tiny chain: a transaction sent lands (confirmed), fails on chain, or is
dropped, as the test said of that send (`next_sends`), confirmed by default; the finalized
block height rises by `blocks_per_call` at each `getEpochInfo`, its slot `SLOTS_AHEAD` above
it, and a node answering `getSignatureStatuses` has reached that slot less `status_lag`; a
blockhash it gave out is valid up to its last valid height, which Jupiter may report lower
(`reported_height_lag`). A
test scripts any other answer, request by request (`script`): an HTTP answer, an exception
raised instead of an answer, or `Lost()`, a request that takes effect and whose answer
never comes. Every request is kept (`calls`), so that a test can count what was sent and
read what was asked.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import re
import struct
from collections import defaultdict, deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cache
from pathlib import Path
from typing import Any

from aioresponses import CallbackResult, aioresponses
from solders.compute_budget import set_compute_unit_limit, set_compute_unit_price
from solders.hash import Hash
from solders.instruction import AccountMeta, Instruction
from solders.keypair import Keypair
from solders.message import MessageV0
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.system_program import TransferParams, transfer
from solders.transaction import VersionedTransaction
from yarl import URL

DATA = Path(__file__).parent / "data" / "live"
JUPITER_URL = "https://lite-api.jup.ag/swap/v1"
PATH_SECRET = "rpc-path-secret-8f3a61"
QUERY_SECRET = "rpc-query-secret-5c1d27"
RPC_URL = f"https://mainnet.rpc-provider.test/v2/{PATH_SECRET}?api-key={QUERY_SECRET}"
"""An RPC endpoint whose API key is in its path and its query, as providers give them."""
LOCAL = "http://127.0.0.1"

WALLET = "<WALLET>"
SIGNATURE = "<SIGNATURE>"
UNSIGNED_SWAP = "<UNSIGNED_SWAP_TRANSACTION_BASE64>"

QUOTES = {"Raydium": "quote_raydium.json", "Meteora DLMM": "quote_meteora_dlmm.json"}
"""The quote fixture of each DEX, by the label Jupiter gives it."""
BLOCKHASH_BLOCKS = 150
SLOTS_AHEAD = 331_422_760 - 311_870_325
"""How far slot numbers run ahead of block heights: as in `epoch_info.json`."""
"""How many blocks a blockhash lives: `lastValidBlockHeight` is the height now plus this."""
COMPUTE_UNIT_LIMIT = 388_876
MICROLAMPORTS = 25_715
"""The compute budget of the swap fixture (`computeUnitLimit`, its `microLamports`)."""

JUPITER_PROGRAM = Pubkey.from_string("JUP6LkbZbjS1jKKwapdHNy74zcZ3tLUZoi5QNyVTaV4")
TOKEN_PROGRAM = Pubkey.from_string("TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA")
ASSOCIATED_TOKEN_PROGRAM = Pubkey.from_string("ATokenGPvbdGVxr1b2hvZbsiqW5xWH25efTNsLJA8knL")
SYSTEM_PROGRAM = Pubkey.from_string("11111111111111111111111111111111")
WSOL = Pubkey.from_string("So11111111111111111111111111111111111111112")
SHARED_ACCOUNTS_ROUTE = hashlib.sha256(b"global:shared_accounts_route").digest()[:8]
"""The Anchor discriminator of Jupiter's `shared_accounts_route` instruction."""
PROGRAM_AUTHORITY_ID = 0
PROGRAM_AUTHORITY = Pubkey.find_program_address(
    [b"authority", bytes([PROGRAM_AUTHORITY_ID])], JUPITER_PROGRAM
)[0]
"""The Jupiter program's own authority, whose token accounts a shared-accounts route uses."""
EVENT_AUTHORITY = Pubkey.find_program_address([b"__event_authority"], JUPITER_PROGRAM)[0]
SWAP_VARIANTS = {"Raydium": 7, "Meteora DLMM": 38}
"""The index of each DEX's variant of the `Swap` enum in Jupiter v6's IDL (data-free both)."""

LIVE_SETTINGS: dict[str, Any] = {
    "venues": "live",
    "rpc_url": RPC_URL,
    "jupiter_url": JUPITER_URL,
    "live_poll_ms": 5,
    "live_requests_per_s": 100_000,
    "live_timeout_s": 5,
    "blockhash_ttl_s": 0.5,
}
"""Settings of a live engine for tests: quick polls, no request budget in the way, and an
expiry estimate that passes within a second, when the cluster is asked about expiry."""


def live_settings(keypair: Path, **overrides: Any) -> dict[str, Any]:
    """The settings of an engine on the fake cluster, signing with the keypair at `keypair`."""
    return {**LIVE_SETTINGS, "keypair": keypair, **overrides}


def write_keypair(path: Path) -> Keypair:
    """A new keypair, written at `path` as the Solana CLI writes one."""
    keypair = Keypair()
    path.write_text(json.dumps(list(bytes(keypair))))
    return keypair


@cache
def _fixture_text(name: str) -> str:
    return (DATA / name).read_text()


def fixture(name: str) -> Any:
    """A fresh copy of the fixture `name`, parsed."""
    return json.loads(_fixture_text(name))


def filled(value: Any, placeholders: Mapping[str, str]) -> Any:
    """`value` with every placeholder string replaced by its value."""
    if isinstance(value, str):
        return placeholders.get(value, value)
    if isinstance(value, list):
        return [filled(item, placeholders) for item in value]
    if isinstance(value, dict):
        return {key: filled(item, placeholders) for key, item in value.items()}
    return value


class Fate(StrEnum):
    """What becomes of a transaction the cluster takes."""

    LANDS = "lands"
    FAILS = "fails"
    """It lands, and fails on chain (Jupiter's slippage check)."""
    DROPPED = "dropped"
    """It never lands: the cluster forgets it, its blockhash expires."""


@dataclass(frozen=True)
class Request:
    """A request the fake received: `kind` is `quote`, `swap` or the JSON-RPC method."""

    kind: str
    url: URL
    body: Any
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def params(self) -> Any:
        """The query of a GET; the `params` of a JSON-RPC call."""
        if self.body is None:
            return dict(self.url.query)
        return self.body.get("params")


@dataclass(frozen=True)
class Reply:
    """An HTTP answer; a JSON-RPC body gets the id of the request it answers."""

    body: Any
    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)

    def result(self, request: Request) -> CallbackResult:
        body = self.body
        if isinstance(body, dict) and "jsonrpc" in body and isinstance(request.body, dict):
            body = {**body, "id": request.body.get("id")}
        return CallbackResult(status=self.status, payload=body, headers=dict(self.headers))


@dataclass(frozen=True)
class Lost:
    """The request takes effect, and its answer never comes: the client times out."""


Answer = Reply | Lost | BaseException


def http_fixture(name: str, **headers: str) -> Reply:
    """A fixture written as a whole HTTP answer (`status`, `headers`, `body`)."""
    answer = fixture(name)
    return Reply(answer["body"], answer["status"], {**answer["headers"], **headers})


def rpc_fixture(name: str) -> Reply:
    """A JSON-RPC fixture, answered with 200 as JSON-RPC over HTTP answers."""
    return Reply(fixture(name))


def too_many_requests(retry_after: str = "0") -> Reply:
    """429, asking to wait `retry_after` seconds."""
    return http_fixture("too_many_requests.json", **{"Retry-After": retry_after})


NO_ROUTE = "quote_no_route.json"
UNKNOWN_STATUS = "signature_statuses_unknown.json"
PREFLIGHT_FAILURE = "preflight_failure.json"


def failed_status(confirmation: str, err: Any = None) -> Reply:
    """A signature that failed on chain, seen at `confirmation` (processed, confirmed…).

    With `err`, it failed with that error instead of the fixture's (Jupiter's slippage).
    """
    answer = fixture("signature_statuses_failed.json")
    status = answer["result"]["value"][0]
    status["confirmationStatus"] = confirmation
    if err is not None:
        status["err"], status["status"] = err, {"Err": err}
    return Reply(answer)


def associated(owner: Pubkey, mint: Pubkey) -> Pubkey:
    """The owner's associated token account for `mint`."""
    seeds = [bytes(owner), bytes(TOKEN_PROGRAM), bytes(mint)]
    return Pubkey.find_program_address(seeds, ASSOCIATED_TOKEN_PROGRAM)[0]


def unsigned_swap(payer: Pubkey, quote: Mapping[str, Any]) -> VersionedTransaction:
    """What Jupiter's `/swap` builds for `quote`, in outline, on a blockhash of its own.

    The compute budget; native SOL sold wrapped into the payer's wSOL account and that
    account closed after; between them the route, bounded by the quote's `slippageBps`. A
    v0 message, paid by `payer`, with a placeholder for its one signature.
    """
    mint_in = Pubkey.from_string(quote["inputMint"])
    source = associated(payer, mint_in)
    wraps = mint_in == WSOL
    instructions = [
        set_compute_unit_limit(COMPUTE_UNIT_LIMIT),
        set_compute_unit_price(MICROLAMPORTS),
    ]
    if wraps:
        instructions += _wrapping(payer, source, int(quote["inAmount"]))
    instructions.append(shared_accounts_route(payer, quote))
    if wraps:
        close = [
            AccountMeta(source, is_signer=False, is_writable=True),
            AccountMeta(payer, is_signer=False, is_writable=True),
            AccountMeta(payer, is_signer=True, is_writable=False),
        ]
        instructions.append(Instruction(TOKEN_PROGRAM, bytes([9]), close))
    message = MessageV0.try_compile(payer, instructions, [], Hash.new_unique())
    return VersionedTransaction.populate(message, [Signature.default()])


def _wrapping(payer: Pubkey, wsol: Pubkey, lamports: int) -> list[Instruction]:
    """Open the payer's wSOL account (CreateIdempotent), fund it, sync it."""
    create = [
        AccountMeta(payer, is_signer=True, is_writable=True),
        AccountMeta(wsol, is_signer=False, is_writable=True),
        AccountMeta(payer, is_signer=False, is_writable=False),
        AccountMeta(WSOL, is_signer=False, is_writable=False),
        AccountMeta(SYSTEM_PROGRAM, is_signer=False, is_writable=False),
        AccountMeta(TOKEN_PROGRAM, is_signer=False, is_writable=False),
    ]
    sync = [AccountMeta(wsol, is_signer=False, is_writable=True)]
    return [
        Instruction(ASSOCIATED_TOKEN_PROGRAM, bytes([1]), create),
        transfer(TransferParams(from_pubkey=payer, to_pubkey=wsol, lamports=lamports)),
        Instruction(TOKEN_PROGRAM, bytes([17]), sync),
    ]


def shared_accounts_route(payer: Pubkey, quote: Mapping[str, Any]) -> Instruction:
    """Jupiter v6's `shared_accounts_route` for the quote's one pool, as its IDL lays it out.

    Data: the discriminator, the program authority's `id`, a route plan of one step (the
    DEX's `Swap` variant, 100%, from token 0 to token 1), then `in_amount`,
    `quoted_out_amount`, `slippage_bps` and `platform_fee_bps` (none). Accounts: those the
    IDL names, no platform fee account or Token-2022 program (the Jupiter program's id in
    their place), then the pool.
    """
    mint_in = Pubkey.from_string(quote["inputMint"])
    mint_out = Pubkey.from_string(quote["outputMint"])
    step = quote["routePlan"][0]
    plan = struct.pack("<IBBBB", 1, SWAP_VARIANTS[step["swapInfo"]["label"]], 100, 0, 1)
    amounts = struct.pack(
        "<QQHB", int(quote["inAmount"]), int(quote["outAmount"]), int(quote["slippageBps"]), 0
    )
    data = SHARED_ACCOUNTS_ROUTE + bytes([PROGRAM_AUTHORITY_ID]) + plan + amounts

    def meta(account: Pubkey, writable: bool = False) -> AccountMeta:
        return AccountMeta(account, is_signer=account == payer, is_writable=writable)

    accounts = [
        meta(TOKEN_PROGRAM),
        meta(PROGRAM_AUTHORITY),
        meta(payer, writable=True),
        meta(associated(payer, mint_in), writable=True),
        meta(associated(PROGRAM_AUTHORITY, mint_in), writable=True),
        meta(associated(PROGRAM_AUTHORITY, mint_out), writable=True),
        meta(associated(payer, mint_out), writable=True),
        meta(mint_in),
        meta(mint_out),
        meta(JUPITER_PROGRAM),
        meta(JUPITER_PROGRAM),
        meta(EVENT_AUTHORITY),
        meta(JUPITER_PROGRAM),
        meta(Pubkey.from_string(step["swapInfo"]["ammKey"]), writable=True),
    ]
    return Instruction(JUPITER_PROGRAM, data, accounts)


@dataclass(frozen=True)
class BuiltSwap:
    """A swap the fake Jupiter built: the unsigned transaction, the last valid height it reported.

    That height is lower than the truth by the cluster's `reported_height_lag`.
    """

    transaction: VersionedTransaction
    last_valid_block_height: int


Handler = Callable[[Request], Reply]


class LiveCluster:
    """Jupiter and a Solana JSON-RPC endpoint, answering as documented, for one wallet."""

    def __init__(
        self, wallet: Pubkey, *, rpc_url: str = RPC_URL, jupiter_url: str = JUPITER_URL
    ) -> None:
        self.wallet = wallet
        self.rpc_url = rpc_url
        self.jupiter_url = jupiter_url
        epoch = fixture("epoch_info.json")["result"]
        self.block_height: int = epoch["blockHeight"]
        self.blocks_per_call = 0
        """How far the finalized block height rises at each `getEpochInfo`."""
        self.status_lag = 0
        """How many slots behind the newest finalized one a signature status is answered."""
        self.minimum_ledger_slot: int = fixture("minimum_ledger_slot.json")["result"]
        self.reported_height_lag = 0
        """How many blocks lower than the truth Jupiter reports a swap's `lastValidBlockHeight`."""
        self.blockhashes: dict[str, int] = {}
        """The last block height at which each blockhash the fake gave out is valid."""
        self.swap_payer: Pubkey | None = None
        """Who Jupiter makes pay for the swaps it builds; by default the wallet asking."""
        self.requests: list[Request] = []
        self.swaps: list[BuiltSwap] = []
        self._scripts: defaultdict[str, deque[Answer]] = defaultdict(deque)
        self._fates: deque[Fate] = deque()
        self._chain: dict[str, Fate] = {}
        """The signatures the cluster took, and what became of each."""

    def install(self, mocked: aioresponses) -> None:
        """Answer Jupiter's and the RPC endpoint's URLs (the RPC one with any query)."""
        jupiter = re.escape(str(URL(self.jupiter_url)))
        rpc = re.escape(str(URL(self.rpc_url).with_query(None)))
        mocked.get(re.compile(rf"^{jupiter}/quote(\?.*)?$"), callback=self._quote, repeat=True)
        mocked.post(re.compile(rf"^{jupiter}/swap$"), callback=self._swap, repeat=True)
        mocked.post(re.compile(rf"^{rpc}(\?.*)?$"), callback=self._rpc, repeat=True)

    # ---- what a test says and reads -------------------------------------------------------

    def script(self, kind: str, *answers: Answer) -> None:
        """Answer the next requests of `kind` so, in order; then the fake answers again.

        `kind` is a JSON-RPC method, `swap`, `quote`, or `quote:LABEL` for one DEX's quotes.
        """
        self._scripts[kind].extend(answers)

    def next_sends(self, *fates: Fate) -> None:
        """What becomes of the next transactions sent, in order; then they land."""
        self._fates.extend(fates)

    def land(self, signature: str, fate: Fate = Fate.LANDS) -> None:
        """Put `signature` on the chain, as if an engine before this one had sent it."""
        self._chain[signature] = fate

    def calls(self, kind: str) -> list[Request]:
        return [request for request in self.requests if request.kind == kind]

    def sent(self) -> list[VersionedTransaction]:
        """Every transaction `sendTransaction` carried, in order (a retried one twice)."""
        return [_transaction(request) for request in self.calls("sendTransaction")]

    def sent_signatures(self) -> list[str]:
        return [str(transaction.signatures[0]) for transaction in self.sent()]

    # ---- answering ----------------------------------------------------------------------

    async def _quote(self, url: URL, **kwargs: Any) -> CallbackResult:
        request = self._received("quote", url, None, kwargs.get("headers"))
        label = request.params.get("dexes", "")
        return self._answer(request, (f"quote:{label}", "quote"), self._quoted)

    async def _swap(self, url: URL, **kwargs: Any) -> CallbackResult:
        request = self._received("swap", url, kwargs["json"], kwargs.get("headers"))
        return self._answer(request, ("swap",), self._built)

    async def _rpc(self, url: URL, **kwargs: Any) -> CallbackResult:
        body = kwargs["json"]
        request = self._received(body["method"], url, body)
        handlers: dict[str, Handler] = {
            "sendTransaction": self._taken,
            "getSignatureStatuses": self._statuses,
            "getEpochInfo": self._epoch_info,
            "minimumLedgerSlot": self._minimum_ledger_slot,
            "isBlockhashValid": self._blockhash_valid,
            "getTransaction": self._transaction,
        }
        return self._answer(request, (request.kind,), handlers.get(request.kind, _no_method))

    def _received(
        self, kind: str, url: URL, body: Any, headers: Mapping[str, str] | None = None
    ) -> Request:
        request = Request(kind, url, copy.deepcopy(body), dict(headers or {}))
        self.requests.append(request)
        return request

    def _answer(self, request: Request, keys: tuple[str, ...], default: Handler) -> CallbackResult:
        answer: Answer | None = None
        for key in keys:
            if self._scripts[key]:
                answer = self._scripts[key].popleft()
                break
        if isinstance(answer, BaseException):
            raise answer
        if isinstance(answer, Lost):
            default(request)
            raise TimeoutError
        return (answer or default(request)).result(request)

    def _quoted(self, request: Request) -> Reply:
        params = request.params
        name = QUOTES.get(params.get("dexes", ""))
        if name is None:
            return http_fixture(NO_ROUTE)
        quote = fixture(name)
        if (params.get("inputMint"), params.get("outputMint")) != (
            quote["inputMint"],
            quote["outputMint"],
        ):
            return http_fixture(NO_ROUTE)
        return Reply(_scaled(quote, int(params["amount"])))

    def _built(self, request: Request) -> Reply:
        payer = self.swap_payer or Pubkey.from_string(request.body["userPublicKey"])
        transaction = unsigned_swap(payer, request.body["quoteResponse"])
        last_valid = self.block_height + BLOCKHASH_BLOCKS
        self.blockhashes[str(transaction.message.recent_blockhash)] = last_valid
        reported = last_valid - self.reported_height_lag
        self.swaps.append(BuiltSwap(transaction, reported))
        encoded = base64.b64encode(bytes(transaction)).decode()
        answer = filled(fixture("swap.json"), {UNSIGNED_SWAP: encoded})
        answer["lastValidBlockHeight"] = reported
        return Reply(answer)

    def _taken(self, request: Request) -> Reply:
        transaction = _transaction(request)
        signature = str(transaction.signatures[0])
        if not all(transaction.verify_with_results()):
            error = {"code": -32003, "message": "Transaction signature verification failure"}
            return Reply({"jsonrpc": "2.0", "error": error})
        fate = self._fates.popleft() if self._fates else Fate.LANDS
        if fate is not Fate.DROPPED:
            self._chain.setdefault(signature, fate)
        return Reply(filled(fixture("send_transaction.json"), {SIGNATURE: signature}))

    def _statuses(self, request: Request) -> Reply:
        known: dict[Fate | None, Any] = {
            Fate.LANDS: fixture("signature_statuses_confirmed.json")["result"]["value"][0],
            Fate.FAILS: fixture("signature_statuses_failed.json")["result"]["value"][0],
        }
        answer = fixture("signature_statuses_confirmed.json")
        signatures = request.params[0]
        answer["result"]["value"] = [known.get(self._chain.get(s)) for s in signatures]
        answer["result"]["context"]["slot"] = self.block_height + SLOTS_AHEAD - self.status_lag
        return Reply(answer)

    def _epoch_info(self, request: Request) -> Reply:
        answer = fixture("epoch_info.json")
        answer["result"]["blockHeight"] = self.block_height
        answer["result"]["absoluteSlot"] = self.block_height + SLOTS_AHEAD
        self.block_height += self.blocks_per_call
        return Reply(answer)

    def _minimum_ledger_slot(self, request: Request) -> Reply:
        answer = fixture("minimum_ledger_slot.json")
        answer["result"] = self.minimum_ledger_slot
        return Reply(answer)

    def _blockhash_valid(self, request: Request) -> Reply:
        """Valid up to its last valid height; a blockhash the fake never gave out, never."""
        answer = fixture("blockhash_valid.json")
        last_valid = self.blockhashes.get(request.params[0], -1)
        answer["result"]["value"] = self.block_height <= last_valid
        answer["result"]["context"]["slot"] = self.block_height + SLOTS_AHEAD
        return Reply(answer)

    def _transaction(self, request: Request) -> Reply:
        signature = request.params[0]
        if self._chain.get(signature) is not Fate.LANDS:
            return Reply({"jsonrpc": "2.0", "result": None})
        landed = {WALLET: str(self.wallet), SIGNATURE: signature}
        return Reply(filled(fixture("transaction.json"), landed))


def _no_method(request: Request) -> Reply:
    return Reply({"jsonrpc": "2.0", "error": {"code": -32601, "message": "Method not found"}})


def _transaction(request: Request) -> VersionedTransaction:
    encoded, options = request.params
    assert options["encoding"] == "base64"
    return VersionedTransaction.from_bytes(base64.b64decode(encoded))


def _scaled(quote: dict[str, Any], amount: int) -> dict[str, Any]:
    """The quote for `amount` raw units in, its amounts scaled from the fixture's."""
    fixture_in = int(quote["inAmount"])
    if amount == fixture_in:
        return quote

    def scale(value: str) -> str:
        return str(int(value) * amount // fixture_in)

    for owner in (quote, *(step["swapInfo"] for step in quote["routePlan"])):
        for key in ("inAmount", "outAmount", "otherAmountThreshold", "feeAmount"):
            if key in owner:
                owner[key] = scale(owner[key])
    return quote


@contextmanager
def live_cluster(wallet: Pubkey, *, rpc_url: str = RPC_URL) -> Iterator[LiveCluster]:
    """The fake cluster, answering every aiohttp session of this process for the block."""
    with aioresponses(passthrough=[LOCAL]) as mocked:
        cluster = LiveCluster(wallet, rpc_url=rpc_url)
        cluster.install(mocked)
        yield cluster
