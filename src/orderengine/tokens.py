"""The tokens the engine trades, with their mints, decimals and reference prices."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

WSOL_MINT = "So11111111111111111111111111111111111111112"


@dataclass(frozen=True)
class Token:
    """A token: its symbol, mint address, decimal places and a reference price in USD."""

    symbol: str
    mint: str
    decimals: int
    usd_price: Decimal

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
        Token("SOL", WSOL_MINT, 9, Decimal("150")),
        Token("USDC", "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v", 6, Decimal("1")),
        Token("USDT", "Es9vMFrzaCERmJfrF4H2FYD4KCoNkY11McCe8BenwNYB", 6, Decimal("1")),
        Token("JUP", "JUPyiwrYJFskUPiHa7hkeR8VUtAeFoSYbKedZNsDvCN", 6, Decimal("0.80")),
        Token("BONK", "DezXAZ8z7PnrnRJjz3wXBoRgixCa6xjnB7YaB1pPB263", 5, Decimal("0.00002")),
    )
}
