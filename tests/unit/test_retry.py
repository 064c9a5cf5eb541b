"""The retry policy's delays: after a failed attempt, and after a sent swap not landed yet."""

from __future__ import annotations

import pytest

from orderengine.retry import RetryPolicy
from orderengine.settings import Settings

BASE_MS = 500
CAP_MS = 10_000


def policy() -> RetryPolicy:
    return RetryPolicy(
        Settings(database_url="postgresql://unused", retry_base_ms=BASE_MS, retry_cap_ms=CAP_MS)
    )


def test_a_swap_sent_a_moment_ago_is_asked_after_again_as_soon_as_a_first_retry() -> None:
    retry = policy()

    waits = [retry.pending_s(0.1) for _ in range(100)]

    assert all(BASE_MS / 2 / 1000 <= wait <= BASE_MS / 1000 for wait in waits)


@pytest.mark.parametrize(("sent_ago_s", "wait_s"), [(8.0, 2.0), (20.0, 5.0), (600.0, 10.0)])
def test_a_swap_long_unlanded_is_asked_after_less_often_up_to_the_longest_backoff(
    sent_ago_s: float, wait_s: float
) -> None:
    assert policy().pending_s(sent_ago_s) == wait_s
