"""Waiting on another process: poll a condition at a short interval, within a limit."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable


async def eventually(
    condition: Callable[[], Awaitable[bool]], limit_s: float = 30, interval_s: float = 0.02
) -> None:
    """Return once `condition()` holds; fail the test if it does not within `limit_s`.

    The limit is kept by the clock, however long each look at the condition takes.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    while not await condition():
        if loop.time() >= deadline:
            raise AssertionError(f"condition not met within {limit_s}s")
        await asyncio.sleep(interval_s)
