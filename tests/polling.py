"""Waiting on another process: poll a condition at a short interval, within a limit."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable


async def eventually(
    condition: Callable[[], Awaitable[bool]], limit_s: float = 30, interval_s: float = 0.02
) -> None:
    """Return once `condition()` holds; fail the test if it does not within `limit_s`."""
    for _ in range(max(1, round(limit_s / interval_s))):
        if await condition():
            return
        await asyncio.sleep(interval_s)
    raise AssertionError(f"condition not met within {limit_s}s")
