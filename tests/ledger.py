"""An in-memory ledger for simulated venues in tests where the chain is not the subject.

The venues' chain in PostgreSQL (`orderengine.venues.chain.Chain`) is tested against a real
database; routing and pool tests only quote, and build their venues on this one.
"""

from __future__ import annotations

from uuid import UUID

from orderengine.venues.values import Dex, Execution, TransactionState, TransactionStatus


class MemoryLedger:
    """Outcomes by signature, kept in a dict."""

    def __init__(self) -> None:
        self.outcomes: dict[str, Execution | str] = {}

    async def record(
        self, signature: str, dex: Dex, order_id: UUID, outcome: Execution | str
    ) -> None:
        assert signature not in self.outcomes, "a signature is processed once"
        self.outcomes[signature] = outcome

    async def find(self, signature: str) -> TransactionStatus | None:
        outcome = self.outcomes.get(signature)
        if outcome is None:
            return None
        if isinstance(outcome, Execution):
            return TransactionStatus(
                signature=signature, state=TransactionState.LANDED, execution=outcome
            )
        return TransactionStatus(
            signature=signature, state=TransactionState.REJECTED, error=outcome
        )
