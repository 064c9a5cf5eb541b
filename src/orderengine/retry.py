"""When a failed attempt is tried again, and after how long: backoff and retry-or-fail."""

from __future__ import annotations

import random
from dataclasses import dataclass

from orderengine.settings import Settings

PENDING_SHARE = 0.25
"""A sent swap that has not landed is asked after again in this share of its time since sent."""


@dataclass(frozen=True)
class Retry:
    """Try again after `delay_s`, as attempt `attempt`."""

    attempt: int
    delay_s: float

    @property
    def retry_in_ms(self) -> int:
        """The delay as the client is told it."""
        return round(self.delay_s * 1000)


@dataclass(frozen=True)
class GiveUp:
    """No attempt is left: the order fails with `error`."""

    error: str


class RetryPolicy:
    """`max_attempts` attempts in all, spaced by exponential backoff with equal jitter.

    The delay before attempt n+1 is drawn from [c/2, c] with c = min(cap, base · 2^(n−1)),
    so until the cap each delay is at least the one before, while retries that fail together
    spread out.
    """

    def __init__(self, settings: Settings) -> None:
        self._max_attempts = settings.max_attempts
        self._base_ms = settings.retry_base_ms
        self._cap_ms = settings.retry_cap_ms
        self._rng = random.Random(settings.seed)

    def after_failure(self, attempt: int, reason: str) -> Retry | GiveUp:
        """What follows attempt `attempt` failing for `reason`."""
        if attempt >= self._max_attempts:
            return GiveUp(f"failed after {attempt} attempt(s): {reason}")
        return Retry(attempt + 1, self.backoff_s(attempt))

    def backoff_s(self, attempt: int) -> float:
        """The delay after attempt `attempt` (1 for the first)."""
        ceiling = min(self._cap_ms, self._base_ms * 2 ** (attempt - 1))
        return float(ceiling / 2 + self._rng.uniform(0, ceiling / 2)) / 1000

    def pending_s(self, sent_ago_s: float) -> float:
        """The wait before asking again after a swap sent `sent_ago_s` ago that has not landed.

        A share of the time since it was sent (`PENDING_SHARE`), from the first retry's backoff
        to the longest. A swap usually lands within seconds, so it is soon asked after again;
        one that has not for a while (sent late by an engine that was frozen, or never to land
        before its blockhash expires) is asked after less often, since each question costs a
        claim, the venue's answer (on a live cluster a request of the node's budget) and a
        release.
        """
        return min(self._cap_ms / 1000, max(self.backoff_s(1), sent_ago_s * PENDING_SHARE))

    def gives_up_after_crashes(self, crashes: int) -> bool:
        """Whether an order that crashed this often, before its swap was sent, should fail.

        Failing it instead of looping spends the same budget as failed attempts.
        """
        return crashes >= self._max_attempts
