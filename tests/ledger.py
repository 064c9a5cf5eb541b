"""An in-memory chain for simulated venues in tests where the chain's store is not the subject.

The venues' chain in PostgreSQL (`orderengine.venues.chain.Chain`) is tested against a real
database; routing and pool tests build their venues on this one, which keeps the same rules
(blockhashes and their expiry, outcomes effective from their landing time) in dicts, on a
clock the test may drive, the venues' listings, and what swaps left of their pools.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from orderengine.errors import AlreadyListed
from orderengine.venues.chain import (
    AlreadyProcessed,
    Decided,
    Recorded,
    Sending,
    new_blockhash,
    refusal,
    status_of,
)
from orderengine.venues.values import Dex, Listing, RecentBlockhash, Reserves, TransactionStatus


def utc_now() -> datetime:
    return datetime.now(UTC)


class MemoryLedger:
    """Blockhashes, outcomes and pools in dicts, listings in a list; time from `clock`."""

    def __init__(
        self,
        *,
        blockhash_ttl_s: float = 60.0,
        clock: Callable[[], datetime] = utc_now,
        seed: int = 0,
    ) -> None:
        self.blockhash_ttl = timedelta(seconds=blockhash_ttl_s)
        self.clock = clock
        self.seed = seed
        self.blockhashes: dict[str, datetime] = {}
        self.recorded: dict[str, Recorded] = {}
        self.listed: list[Listing] = []
        self.pools: dict[str, tuple[Dex, Reserves]] = {}

    async def issue_blockhash(self) -> RecentBlockhash:
        blockhash = new_blockhash()
        self.blockhashes[blockhash] = self.clock() + self.blockhash_ttl
        return RecentBlockhash(blockhash=blockhash, expires_at=self.blockhashes[blockhash])

    async def record(self, sending: Sending) -> Decided:
        now = self.clock()
        if sending.signature in self.recorded:
            raise AlreadyProcessed(f"transaction {sending.signature} was already processed")
        held = self.pools.get(sending.pool) if sending.pool is not None else None
        decided = sending.decide(held[1] if held is not None else None)
        sent = decided.sent
        expires_at = self.blockhashes.get(sent.blockhash)
        refused = refusal(sent, expires_at, expires_at is not None and now <= expires_at)
        if refused is not None:
            raise refused
        lands_at = now + timedelta(seconds=sent.lands_in_s)
        self.recorded[sent.signature] = Recorded(outcome=sent.outcome, lands_at=lands_at)
        if sending.pool is not None and decided.reserves is not None:
            self.pools[sending.pool] = (sending.dex, decided.reserves)
        return decided

    async def pool_reserves(self, dex: Dex) -> dict[str, Reserves]:
        return {pool: reserves for pool, (of, reserves) in self.pools.items() if of == dex}

    async def status(self, signature: str, expires_at: datetime) -> TransactionStatus:
        return status_of(signature, self.recorded.get(signature), expires_at, self.clock())

    async def add_listing(
        self,
        dex: Dex,
        token: str,
        quote_token: str,
        price: Decimal,
        liquidity: Decimal,
        pool: str,
    ) -> Listing:
        pair = {token, quote_token}
        if any(dex == had.dex and pair == {had.token, had.quote_token} for had in self.listed):
            raise AlreadyListed(f"{dex} already lists {token}/{quote_token}")
        listing = Listing(
            dex=dex,
            token=token,
            quote_token=quote_token,
            price=price,
            liquidity=liquidity,
            pool=pool,
            listed_at=self.clock(),
        )
        self.listed.append(listing)
        return listing

    async def listings(self, dex: Dex | None = None) -> list[Listing]:
        return [listing for listing in self.listed if dex is None or listing.dex == dex]

    async def listing_count(self) -> int:
        return len(self.listed)
