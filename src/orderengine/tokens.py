"""The tokens the engine trades, with their mints, decimals, reference prices and order limits."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated

from pydantic import AfterValidator, Field

WSOL_MINT = "So11111111111111111111111111111111111111112"
SYMBOL = re.compile(r"[A-Z0-9]{2,12}")
"""A symbol a token may be listed under (uppercased first): 2 to 12 ASCII letters or digits."""


@dataclass(frozen=True)
class Token:
    """A token: its symbol, mint address, decimal places and a reference price in USD.

    `max_amount` is the most of it one order may sell unless the settings say otherwise
    (`ORDERENGINE_MAX_AMOUNTS`): about 1.5 million dollars' worth.
    """

    symbol: str
    mint: str
    decimals: int
    usd_price: Decimal
    max_amount: Decimal

    @property
    def unit(self) -> Decimal:
        """The smallest amount of the token (one lamport for SOL)."""
        return Decimal(1).scaleb(-self.decimals)

    @property
    def native(self) -> bool:
        """Native SOL must be wrapped into wSOL before an SPL swap."""
        return self.symbol == "SOL"


TOKENS: dict[str, Token] = {
    t.symbol: t
    for t in (
        Token("SOL", WSOL_MINT, 9, Decimal("150"), Decimal("10000")),
        Token(
            "USDC",
            "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v",
            6,
            Decimal("1"),
            Decimal("1500000"),
        ),
        Token(
            "USDT",
            "Es9vMFrzaCERmJfrF4H2FYD4KCoNkY11McCe8BenwNYB",
            6,
            Decimal("1"),
            Decimal("1500000"),
        ),
        Token(
            "JUP",
            "JUPyiwrYJFskUPiHa7hkeR8VUtAeFoSYbKedZNsDvCN",
            6,
            Decimal("0.80"),
            Decimal("2000000"),
        ),
        Token(
            "BONK",
            "DezXAZ8z7PnrnRJjz3wXBoRgixCa6xjnB7YaB1pPB263",
            5,
            Decimal("0.00002"),
            Decimal("75000000000"),
        ),
    )
}


def token_named(symbol: str) -> Token | None:
    """The token whose symbol this is, in any case of ASCII letters; None for any other text.

    Only ASCII folds: `str.upper` would also turn `ſol` (long s) into SOL.
    """
    return TOKENS.get(symbol.upper()) if symbol.isascii() else None


def default_max_amounts() -> dict[str, Decimal]:
    """Each token's largest order, as the token list sets it."""
    return {symbol: token.max_amount for symbol, token in TOKENS.items()}


def _with_defaults(given: Mapping[str, Decimal]) -> dict[str, Decimal]:
    """The defaults, with each token `given` names in place of its own; unknown symbols refused."""
    limits = default_max_amounts()
    for symbol, amount in given.items():
        token = token_named(symbol)
        if token is None:
            raise ValueError(f"unknown token {symbol!r}; known: {', '.join(TOKENS)}")
        limits[token.symbol] = amount
    return limits


MaxAmounts = Annotated[
    dict[str, Annotated[Decimal, Field(gt=0, allow_inf_nan=False)]],
    AfterValidator(_with_defaults),
]
"""The largest amount of each token one order may sell, in token units.

Given as JSON (`{"SOL": "500"}`); tokens it leaves out keep their default.
"""
