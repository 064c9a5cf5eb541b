"""An engine's own view of its leases, on a fake clock: when each runs out, and what is lost.

The view must never outlive the lease the database holds: each lease counts from the moment
the statement that took or renewed it was sent, not from its answer. What the database
decides (who holds a lease, when another engine may take it over) is tested with real engine
processes in `tests/acceptance/test_several_engines.py`; here only the bookkeeping is.
"""

from __future__ import annotations

from uuid import UUID, uuid4

import pytest

from orderengine.leases import RENEWALS_PER_LEASE, Leases

LEASE_S = 10.0


class FakeClock:
    """A monotonic clock that only moves when the test moves it."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def leases(clock: FakeClock) -> Leases:
    return Leases(LEASE_S, clock)


def take(leases: Leases, clock: FakeClock, *order_ids: UUID, answer_s: float = 0.0) -> None:
    """Claim `order_ids` as the dispatcher does: read the clock, send, record on the answer."""
    asked_at = leases.now()
    clock.now += answer_s
    leases.taken(order_ids, asked_at)


def test_a_lease_counts_from_before_the_claim_was_sent(leases: Leases, clock: FakeClock) -> None:
    order = uuid4()
    take(leases, clock, order, answer_s=0.5)

    clock.now += LEASE_S - 0.5 - 0.001
    assert leases.holds(order)
    assert leases.expired() == []

    clock.now += 0.001
    assert not leases.holds(order)
    assert leases.expired() == [order]


def test_an_expired_lease_is_still_held_until_released(leases: Leases, clock: FakeClock) -> None:
    order = uuid4()
    take(leases, clock, order)
    clock.now += LEASE_S * 2

    assert leases.held() == [order]
    leases.released(order)
    assert leases.held() == []
    assert leases.expired() == []


def test_a_renewal_extends_from_when_it_was_sent(leases: Leases, clock: FakeClock) -> None:
    order = uuid4()
    take(leases, clock, order)
    clock.now += leases.renew_every_s
    asked_at = leases.now()
    clock.now += 2.0  # a slow answer
    lost = leases.renewed({order}, [order], asked_at)

    assert lost == set()
    clock.now = asked_at + LEASE_S - 0.001
    assert leases.holds(order)
    clock.now = asked_at + LEASE_S
    assert not leases.holds(order)
    assert leases.expired() == [order]


def test_a_lease_the_renewal_did_not_keep_is_lost_at_once(leases: Leases, clock: FakeClock) -> None:
    kept, taken_over = uuid4(), uuid4()
    take(leases, clock, kept, taken_over)
    clock.now += leases.renew_every_s
    asked = leases.held()

    lost = leases.renewed({kept}, asked, leases.now())

    assert lost == {taken_over}
    assert not leases.holds(taken_over)
    assert leases.held() == [kept]
    assert leases.holds(kept)


def test_a_lease_released_while_its_renewal_was_under_way_is_not_taken_back(
    leases: Leases, clock: FakeClock
) -> None:
    finished, working = uuid4(), uuid4()
    take(leases, clock, finished, working)
    asked, asked_at = leases.held(), leases.now()

    leases.released(finished)  # its order ended while the renewal was in flight
    lost = leases.renewed({finished, working}, asked, asked_at)

    assert lost == set()
    assert leases.held() == [working]
    assert not leases.holds(finished)


def test_a_lease_taken_again_while_a_renewal_was_under_way_is_not_lost(
    leases: Leases, clock: FakeClock
) -> None:
    """Released, then claimed anew: the renewal, sent before, says nothing of the new lease."""
    order = uuid4()
    take(leases, clock, order)
    asked_at = leases.now()
    clock.now += 0.5
    leases.released(order)
    take(leases, clock, order)
    clock.now += 0.5

    lost = leases.renewed(kept=[], asked=[order], asked_at=asked_at)

    assert lost == set()
    assert leases.holds(order)
    clock.now += LEASE_S - 1.0 - 0.001
    assert leases.holds(order), "the new lease counts from its claim, not from the renewal"


def test_a_renewal_extends_only_what_it_asked_for(leases: Leases, clock: FakeClock) -> None:
    asked_for, claimed_meanwhile = uuid4(), uuid4()
    take(leases, clock, asked_for)
    asked, asked_at = leases.held(), leases.now()
    clock.now += 1.0
    take(leases, clock, claimed_meanwhile)

    leases.renewed({asked_for, claimed_meanwhile}, asked, asked_at)

    clock.now = asked_at + LEASE_S
    assert leases.expired() == [asked_for]
    assert leases.holds(claimed_meanwhile)


def test_two_failed_renewals_in_a_row_still_leave_the_lease_held(
    leases: Leases, clock: FakeClock
) -> None:
    order = uuid4()
    take(leases, clock, order)

    assert leases.renew_every_s == LEASE_S / RENEWALS_PER_LEASE
    for _ in range(RENEWALS_PER_LEASE - 1):
        clock.now += leases.renew_every_s  # a renewal that failed: nothing recorded
        assert leases.holds(order)
    clock.now += leases.renew_every_s - 0.001
    assert leases.holds(order)
    clock.now += 0.001
    assert not leases.holds(order)


def test_releasing_a_lease_not_held_does_nothing(leases: Leases) -> None:
    leases.released(uuid4())

    assert leases.held() == []
    assert not leases.holds(uuid4())


def test_a_claim_taken_again_counts_from_the_new_claim(leases: Leases, clock: FakeClock) -> None:
    order = uuid4()
    take(leases, clock, order)
    clock.now += LEASE_S + 5
    assert leases.expired() == [order]

    take(leases, clock, order)

    assert leases.holds(order)
    assert leases.expired() == []
    assert leases.held() == [order]


def test_a_release_the_database_missed_is_kept_by_its_delay_until_it_is_heard(
    leases: Leases, clock: FakeClock
) -> None:
    first, second, third = uuid4(), uuid4(), uuid4()
    take(leases, clock, first, second, third)

    leases.release_failed(first, 0.5, leases.claim(first))
    leases.release_failed(second, 0.5, leases.claim(second))
    leases.release_failed(third, None, leases.claim(third))

    assert leases.held() == []
    assert leases.unreleased() == {0.5: [first, second], None: [third]}
    leases.released(first)
    assert leases.unreleased() == {0.5: [second], None: [third]}


def test_an_order_claimed_again_has_no_release_left_to_give(
    leases: Leases, clock: FakeClock
) -> None:
    """Claimed again once its lease ran out, the order is worked on: no late release ends that."""
    order_id = uuid4()
    take(leases, clock, order_id)
    leases.release_failed(order_id, 0.5, leases.claim(order_id))

    take(leases, clock, order_id)

    assert leases.unreleased() == {}
    assert leases.held() == [order_id]


def test_what_a_late_answer_says_of_a_release_leaves_a_newer_claim_alone(
    leases: Leases, clock: FakeClock
) -> None:
    """The release committed, the order fell due and was claimed again before the answer came."""
    order_id, other = uuid4(), uuid4()
    take(leases, clock, order_id, other)
    given_up, other_given_up = leases.claim(order_id), leases.claim(other)

    take(leases, clock, order_id, other)
    leases.release_failed(order_id, 0.5, given_up)
    leases.released(other, other_given_up)

    assert leases.holds(order_id)
    assert leases.holds(other)
    assert leases.unreleased() == {}
    assert given_up > 0
    assert leases.claim(order_id) != given_up


def test_a_release_sent_without_a_lease_ends_none_taken_later(
    leases: Leases, clock: FakeClock
) -> None:
    """Its lease had run out unrenewed and been forgotten when the release was sent."""
    order_id = uuid4()
    held_none = leases.claim(order_id)

    take(leases, clock, order_id)
    leases.released(order_id, held_none)
    leases.release_failed(order_id, 0.5, held_none)

    assert held_none == 0
    assert leases.holds(order_id)
    assert leases.unreleased() == {}
