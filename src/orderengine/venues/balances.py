"""What a landed transaction moved for the wallet that paid for it, read from `getTransaction`.

The metadata holds every account's lamports and every token account's balance, before and
after. The wallet's change in each mint is the sum of its token accounts' changes; its change
in SOL is that of its lamports, with the network fee and the rent of token accounts it opened
added back (they were paid, not traded) and the rent of those it closed taken off (refunded,
not traded), plus any change of wrapped SOL. A token account's rent is its lamports, less the
wrapped SOL it holds when it is a wSOL account. The swap is the one mint that went down (what
was sold) and the one that went up (what was bought).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from orderengine.tokens import TOKENS, WSOL_MINT, Token

LAMPORTS_PER_SIGNATURE = 5_000
"""The base fee per signature; what a transaction pays above it bought priority."""
SOL_DECIMALS = 9


@dataclass(frozen=True)
class Moved:
    """The swap as the chain recorded it: tokens and amounts, and the network fee paid."""

    token_in: str
    token_out: str
    amount_in: Decimal
    amount_out: Decimal
    network_fee: Decimal
    priority_fee: Decimal


class Unreadable(ValueError):
    """The transaction does not show one token sold and one bought by its fee payer."""


def moved(transaction: dict[str, Any]) -> Moved:
    """The fee payer's swap in `transaction` (a `getTransaction` result, JSON encoding)."""
    meta = transaction.get("meta")
    if not isinstance(meta, dict):
        raise Unreadable("the transaction carries no metadata")
    message = transaction["transaction"]["message"]
    payer = message["accountKeys"][0]
    changes = _token_changes(meta, payer)
    fee = int(meta["fee"])
    lamports = int(meta["postBalances"][0]) - int(meta["preBalances"][0])
    changes[WSOL_MINT] += lamports + fee + _rent_of_opened_and_closed(meta, payer)
    sold = [mint for mint, change in changes.items() if change < 0]
    bought = [mint for mint, change in changes.items() if change > 0]
    if len(sold) != 1 or len(bought) != 1:
        raise Unreadable(f"expected one token sold and one bought, found {dict(changes)}")
    token_in, token_out = _token(sold[0]), _token(bought[0])
    signatures = len(transaction["transaction"]["signatures"])
    return Moved(
        token_in=token_in.symbol,
        token_out=token_out.symbol,
        amount_in=_units(-changes[sold[0]], token_in.decimals),
        amount_out=_units(changes[bought[0]], token_out.decimals),
        network_fee=_units(fee, SOL_DECIMALS),
        priority_fee=_units(max(0, fee - LAMPORTS_PER_SIGNATURE * signatures), SOL_DECIMALS),
    )


def _token_changes(meta: dict[str, Any], payer: str) -> defaultdict[str, int]:
    changes: defaultdict[str, int] = defaultdict(int)
    for sign, key in ((-1, "preTokenBalances"), (1, "postTokenBalances")):
        for balance in meta.get(key) or []:
            if balance.get("owner") == payer:
                changes[balance["mint"]] += sign * int(balance["uiTokenAmount"]["amount"])
    return changes


def _rent_of_opened_and_closed(meta: dict[str, Any], payer: str) -> int:
    """The rent the payer's token accounts opened now hold, less that those it closed held."""
    before = meta.get("preTokenBalances") or []
    after = meta.get("postTokenBalances") or []
    existed = {b["accountIndex"] for b in before}
    remains = {b["accountIndex"] for b in after}
    opened = sum(
        _rent(meta["postBalances"], b)
        for b in after
        if b.get("owner") == payer and b["accountIndex"] not in existed
    )
    closed = sum(
        _rent(meta["preBalances"], b)
        for b in before
        if b.get("owner") == payer and b["accountIndex"] not in remains
    )
    return opened - closed


def _rent(lamports: list[int], balance: dict[str, Any]) -> int:
    """A token account's rent: its lamports, less the wrapped SOL a wSOL account holds."""
    wrapped = int(balance["uiTokenAmount"]["amount"]) if balance["mint"] == WSOL_MINT else 0
    return int(lamports[balance["accountIndex"]]) - wrapped


def _token(mint: str) -> Token:
    for token in TOKENS.values():
        if token.mint == mint:
            return token
    raise Unreadable(f"the mint {mint} is not a token the engine knows")


def _units(raw: int, decimals: int) -> Decimal:
    return Decimal(raw).scaleb(-decimals)
