"""Group commit for calls that each want a statement of their own.

The first call runs at once, with no added wait. Calls that arrive while a run is in flight
queue up and run together, as one, as soon as it returns: under load each run carries every
call that arrived meanwhile (at most `most`), so that many share one statement, one round
trip and one commit, and alone a call waits for nobody.

A run answers each call on its own: a result, or the error that call alone met. An error
that ends the whole run is every call's. A caller cancelled while its call is queued or
running does not cancel the run: its call may still be carried out, as a statement already
sent may still commit.

`each_alone` carries out a group's calls again one at a time, for a run whose statement the
store refused as a whole, so that only the call at fault fails.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")

Run = Callable[[Sequence[ItemT]], Awaitable[Sequence[ResultT | Exception]]]
"""Carries out a group of calls; one result or error per call, in their order."""


async def each_alone(run: Run[ItemT, ResultT], items: Sequence[ItemT]) -> list[ResultT | Exception]:
    """Carry out `items` one at a time, each a group of its own; an error is its call's alone.

    For a group whose statement the store refused as a whole: run again one by one, only the
    call at fault fails.
    """
    outcomes: list[ResultT | Exception] = []
    for item in items:
        try:
            outcomes.extend(await run([item]))
        except Exception as error:
            outcomes.append(error)
    return outcomes


class Grouped(Generic[ItemT, ResultT]):
    """Runs calls in groups of at most `most` with `run`; `await grouped(item)` for one."""

    def __init__(self, run: Run[ItemT, ResultT], most: int) -> None:
        self._run = run
        self._most = most
        self._waiting: list[tuple[ItemT, asyncio.Future[ResultT]]] = []
        self._runner: asyncio.Task[None] | None = None

    async def __call__(self, item: ItemT) -> ResultT:
        answer: asyncio.Future[ResultT] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, answer))
        if self._runner is None or self._runner.done():
            self._runner = asyncio.create_task(self._run_waiting(), name="grouped-runner")
        return await answer

    async def _run_waiting(self) -> None:
        while self._waiting:
            group = self._waiting[: self._most]
            del self._waiting[: self._most]
            try:
                results = await self._run([item for item, _ in group])
            except asyncio.CancelledError:
                for _, answer in [*group, *self._waiting]:
                    answer.cancel()
                self._waiting.clear()
                raise
            except Exception as error:
                results = [error] * len(group)
            for (_, answer), result in zip(group, results, strict=True):
                if answer.done():
                    continue
                if isinstance(result, Exception):
                    answer.set_exception(result)
                else:
                    answer.set_result(result)
