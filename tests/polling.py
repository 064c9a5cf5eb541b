"""Waiting on another process or a loop: poll a condition at a short interval, within a limit."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from structlog.testing import capture_logs


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


async def told_while_running(
    run: Callable[[], Coroutine[Any, Any, None]],
    until: Callable[[], Awaitable[bool]],
    prefix: str,
) -> list[str]:
    """The log events named `prefix…` that `run()` writes until `until()` holds, then stopped.

    For a loop that runs until cancelled, such as a watcher's.
    """
    with capture_logs() as logs:
        running = asyncio.create_task(run())
        try:
            await eventually(until)
        finally:
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)
    return [line["event"] for line in logs if line["event"].startswith(prefix)]
