"""The leases this engine holds on orders, as it knows them locally.

An engine works on an order only while it holds the order's lease: taken in the statement
that claims the order, renewed while the order is worked on, given up when it ends or waits.
The database decides who holds a lease; this module keeps the engine's own view of when each
of its leases runs out, on a monotonic clock, counting from before the statement that took
or renewed it, so the view never outlives the lease. A lease that a renewal did not extend is
lost: another engine may take the order over, and every later status change from this engine
would be refused as stale anyway.

A lease the engine gave up while the database was out of reach stays the engine's in the
database: it is kept here as unreleased, and given back once the database answers, so that
its order is taken up again then rather than when the lease runs out.

Each claim of an order has a number. A release whose answer comes late may find the order
claimed again meanwhile (its statement committed, and the order fell due): what it says of
the lease it gave up must not end the newer one, so it names the claim it gave up.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable
from uuid import UUID

RENEWALS_PER_LEASE = 3
"""How many times a lease is renewed within its length: two renewals may fail in a row."""


class Leases:
    """Order id -> the monotonic time until which this engine is sure it holds the lease."""

    def __init__(self, lease_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.lease_s = lease_s
        self._clock = clock
        self._until: dict[UUID, float] = {}
        self._unreleased: dict[UUID, float | None] = {}
        self._claims = itertools.count(1)
        self._claim: dict[UUID, int] = {}

    @property
    def renew_every_s(self) -> float:
        return self.lease_s / RENEWALS_PER_LEASE

    def now(self) -> float:
        """The clock, read before a statement that takes or renews leases."""
        return self._clock()

    def taken(self, order_ids: Iterable[UUID], asked_at: float) -> None:
        """Leases taken by a statement sent at `asked_at`."""
        for order_id in order_ids:
            self._until[order_id] = asked_at + self.lease_s
            self._claim[order_id] = next(self._claims)
            self._unreleased.pop(order_id, None)

    def claim(self, order_id: UUID) -> int:
        """The number of the claim this engine's lease on the order comes from.

        0 when it holds none (its lease ran out unrenewed, say): no claim has that number, so
        what a release then says ends no lease taken later.
        """
        return self._claim.get(order_id, 0)

    def renewed(self, kept: Iterable[UUID], asked: Iterable[UUID], asked_at: float) -> set[UUID]:
        """Record a renewal of `asked`, sent at `asked_at`, that extended `kept`; the lost ones.

        A lease released meanwhile (its order ended while the renewal was under way) is not
        taken back; nor is one taken again since (released, then claimed anew): the renewal
        did not see it, and says nothing of it.
        """
        kept = set(kept)
        lost = set()
        for order_id in asked:
            if self._until.get(order_id, float("inf")) > asked_at + self.lease_s:
                continue
            if order_id in kept:
                self._until[order_id] = asked_at + self.lease_s
            else:
                lost.add(order_id)
                del self._until[order_id]
        return lost

    def released(self, order_id: UUID, claim: int | None = None) -> None:
        """The lease was given up: the one of `claim`, or whichever this engine holds if None."""
        if claim is not None and self._claim.get(order_id) != claim:
            return
        self._until.pop(order_id, None)
        self._claim.pop(order_id, None)
        self._unreleased.pop(order_id, None)

    def release_failed(self, order_id: UUID, delay_s: float | None, claim: int) -> None:
        """The engine gave up the lease of `claim`, but the database did not hear it.

        The order is no longer worked on here; its release, due again after `delay_s` (or
        when its stored retry time says, if None), waits for the database to answer. If the
        order was claimed again since, the database heard the release after all.
        """
        if self._claim.get(order_id) != claim:
            return
        self._until.pop(order_id, None)
        self._claim.pop(order_id, None)
        self._unreleased[order_id] = delay_s

    def unreleased(self) -> dict[float | None, list[UUID]]:
        """The leases given up that the database still holds for this engine, by their delay."""
        by_delay: dict[float | None, list[UUID]] = {}
        for order_id, delay_s in self._unreleased.items():
            by_delay.setdefault(delay_s, []).append(order_id)
        return by_delay

    def holds(self, order_id: UUID) -> bool:
        """Whether this engine still surely holds the order's lease now."""
        return self._until.get(order_id, float("-inf")) > self._clock()

    def held(self) -> list[UUID]:
        """Every order whose lease this engine believes it holds, expired or not."""
        return list(self._until)

    def expired(self) -> list[UUID]:
        """Leases whose time ran out without a renewal: the orders may be taken over."""
        now = self._clock()
        return [order_id for order_id, until in self._until.items() if until <= now]
