"""An in-memory chain for simulated venues in tests where the chain's store is not the subject.

The venues' chain in PostgreSQL (`orderengine.venues.chain.Chain`) is tested against a real
database; routing and pool tests build their venues on this one, which keeps the same rules
(blockhashes and their expiry, outcomes effective from their landing time) in dicts, on a
clock the test may drive.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from orderengine.venues.chain import (
    AlreadyProcessed,
    Recorded,
    Sent,
    new_blockhash,
    refusal,
    status_of,
)
from orderengine.venues.values import RecentBlockhash, TransactionStatus


def utc_now() -> datetime:
    return datetime.now(UTC)


class MemoryLedger:
    """Blockhashes and outcomes by signature, kept in dicts; time from `clock`."""

    def __init__(
        self, *, blockhash_ttl_s: float = 60.0, clock: Callable[[], datetime] = utc_now
    ) -> None:
        self.blockhash_ttl = timedelta(seconds=blockhash_ttl_s)
        self.clock = clock
        self.blockhashes: dict[str, datetime] = {}
        self.recorded: dict[str, Recorded] = {}

    async def issue_blockhash(self) -> RecentBlockhash:
        blockhash = new_blockhash()
        self.blockhashes[blockhash] = self.clock() + self.blockhash_ttl
        return RecentBlockhash(blockhash=blockhash, expires_at=self.blockhashes[blockhash])

    async def record(self, sent: Sent) -> None:
        now = self.clock()
        if sent.signature in self.recorded:
            raise AlreadyProcessed(f"transaction {sent.signature} was already processed")
        expires_at = self.blockhashes.get(sent.blockhash)
        refused = refusal(sent, expires_at, expires_at is not None and now <= expires_at)
        if refused is not None:
            raise refused
        lands_at = now + timedelta(seconds=sent.lands_in_s)
        self.recorded[sent.signature] = Recorded(outcome=sent.outcome, lands_at=lands_at)

    async def status(self, signature: str, expires_at: datetime) -> TransactionStatus:
        return status_of(signature, self.recorded.get(signature), expires_at, self.clock())
