"""The tokens the engine trades, with their mints, decimals, reference prices and order limits.

`TOKENS` is every token this process knows: the fixed list, plus each token a venue listed
since it started (see `register`). The whole engine reads it, to validate orders, open pools
and build transactions, so a token a venue lists is tradable from the moment it is registered.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Annotated

import base58
from pydantic import AfterValidator, Field, TypeAdapter, field_validator, model_validator

from orderengine.model import Model

WSOL_MINT = "So11111111111111111111111111111111111111112"
SYMBOL = re.compile(r"[A-Z0-9]{2,12}")
"""A symbol a token may be listed under (uppercased first): 2 to 12 ASCII letters or digits."""
LISTED_DECIMALS = 6
"""The decimal places of every token a venue lists."""
U64_MAX = 2**64 - 1
LISTED_MAX_AMOUNT = Decimal(10) ** 12
"""The most of a listed token one order may sell: more than any pool holds, and few enough
that its raw units (at `LISTED_DECIMALS`) fit in the u64 a swap instruction carries."""


@dataclass(frozen=True)
class Token:
    """A token: its symbol, mint address, decimal places and a reference price in USD.

    `max_amount` is the most of it one order may sell unless the settings say otherwise
    (`ORDERENGINE_MAX_AMOUNTS`): about 1.5 million dollars' worth for the fixed tokens.
    `listed` says that a venue listed it, rather than it being one of the fixed tokens.
    """

    symbol: str
    mint: str
    decimals: int
    usd_price: Decimal
    max_amount: Decimal
    listed: bool = False

    @property
    def unit(self) -> Decimal:
        """The smallest amount of the token (one lamport for SOL)."""
        return Decimal(1).scaleb(-self.decimals)

    @property
    def native(self) -> bool:
        """Native SOL must be wrapped into wSOL before an SPL swap."""
        return self.symbol == "SOL"


FIXED_TOKENS: tuple[Token, ...] = (
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
"""The tokens every venue opens a pool for, between each two of them."""

TOKENS: dict[str, Token] = {t.symbol: t for t in FIXED_TOKENS}
"""Every token this process knows, by symbol: the fixed ones, then those venues listed."""


def listed_token(symbol: str, usd_price: Decimal) -> Token:
    """The token a venue lists under `symbol` (already uppercased), worth `usd_price`.

    Its mint is derived from the symbol alone (32 bytes, a valid address), so every engine,
    and every restart, gives a listed symbol the same mint.
    """
    if not SYMBOL.fullmatch(symbol):
        raise ValueError(f"{symbol!r} is not a symbol a token may be listed under")
    mint = base58.b58encode(hashlib.sha256(f"listed:{symbol}".encode()).digest()).decode()
    return Token(symbol, mint, LISTED_DECIMALS, usd_price, LISTED_MAX_AMOUNT, listed=True)


def register(token: Token) -> None:
    """Add `token` to `TOKENS`, unless a token of that symbol is known: the first one stays."""
    TOKENS.setdefault(token.symbol, token)


class TokenEntry(Model):
    """One token of a token list file, for live trading: as on chain, and a reference price.

    `usdPrice` need only be rough: it sizes the amount a price watcher quotes for the token.
    """

    symbol: Annotated[str, Field(pattern=f"^{SYMBOL.pattern}$")]
    mint: str
    decimals: Annotated[int, Field(ge=0, le=12)]
    usd_price: Annotated[Decimal, Field(gt=0, allow_inf_nan=False)]
    max_amount: Annotated[Decimal, Field(gt=0, allow_inf_nan=False)]

    @field_validator("mint")
    @classmethod
    def an_address(cls, mint: str) -> str:
        """A base58 address of 32 bytes, as every mint is."""
        try:
            decoded = base58.b58decode(mint)
        except ValueError as error:
            raise ValueError(f"{mint!r} is not base58") from error
        if len(decoded) != 32:
            raise ValueError(f"{mint!r} is not a 32-byte address")
        return mint

    @model_validator(mode="after")
    def fits_a_u64(self) -> TokenEntry:
        """The most one order may sell fits, in raw units, in the u64 a swap carries."""
        if self.max_amount.scaleb(self.decimals) > U64_MAX:
            raise ValueError(f"maxAmount of {self.symbol} is over a u64 of raw units")
        return self

    def token(self) -> Token:
        return Token(self.symbol, self.mint, self.decimals, self.usd_price, self.max_amount)


def read_token_list(path: Path) -> tuple[Token, ...]:
    """The tokens a token list file names (a JSON array of `TokenEntry`); ValueError if bad.

    A symbol or a mint the engine knows already must be that same token.
    """
    entries = TypeAdapter(list[TokenEntry]).validate_json(path.read_bytes())
    tokens = tuple(entry.token() for entry in entries)
    by_mint = {token.mint: token for token in TOKENS.values()}
    for token in tokens:
        known = TOKENS.get(token.symbol) or by_mint.get(token.mint)
        if known is not None and (known.symbol, known.mint) != (token.symbol, token.mint):
            raise ValueError(f"{token.symbol} ({token.mint}) clashes with the known {known}")
    return tokens


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
