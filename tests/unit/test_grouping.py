"""Group commit of calls: alone a call runs at once; calls made meanwhile run together."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from orderengine.grouping import Grouped


class Recorder:
    """A run that records each group it is given, and holds until released."""

    def __init__(self) -> None:
        self.groups: list[list[int]] = []
        self.release = asyncio.Event()
        self.running = asyncio.Event()

    async def run(self, items: Sequence[int]) -> list[int | Exception]:
        self.groups.append(list(items))
        self.running.set()
        await self.release.wait()
        return [ValueError(f"odd {item}") if item % 2 else item * 10 for item in items]


async def test_a_call_alone_runs_at_once_and_calls_made_meanwhile_run_together() -> None:
    recorder = Recorder()
    grouped: Grouped[int, int] = Grouped(recorder.run, most=10)

    first = asyncio.create_task(grouped(2))
    await recorder.running.wait()
    later = [asyncio.create_task(grouped(item)) for item in (4, 6, 8)]
    await asyncio.sleep(0)
    recorder.release.set()

    assert await first == 20
    assert await asyncio.gather(*later) == [40, 60, 80]
    assert recorder.groups == [[2], [4, 6, 8]]


async def test_a_group_is_at_most_its_size_and_each_call_gets_its_own_outcome() -> None:
    recorder = Recorder()
    recorder.release.set()
    grouped: Grouped[int, int] = Grouped(recorder.run, most=2)

    outcomes = await asyncio.gather(*(grouped(item) for item in range(5)), return_exceptions=True)

    assert recorder.groups == [[0, 1], [2, 3], [4]], "all five were asked before the first ran"
    assert [outcomes[n] for n in (0, 2, 4)] == [0, 20, 40]
    assert [str(outcomes[n]) for n in (1, 3)] == ["odd 1", "odd 3"]


async def test_an_error_that_ends_the_run_is_every_calls_and_the_next_call_runs_anew() -> None:
    calls = 0

    async def failing(items: Sequence[int]) -> list[int | Exception]:
        nonlocal calls
        calls += 1
        if calls == 1:
            await asyncio.sleep(0)
            raise ConnectionError("the store went away")
        return list(items)

    grouped: Grouped[int, int] = Grouped(failing, most=10)

    outcomes = await asyncio.gather(grouped(1), grouped(2), return_exceptions=True)

    assert all(isinstance(outcome, ConnectionError) for outcome in outcomes)
    assert await grouped(3) == 3


async def test_a_caller_cancelled_meanwhile_does_not_cancel_the_run() -> None:
    recorder = Recorder()
    grouped: Grouped[int, int] = Grouped(recorder.run, most=10)

    first = asyncio.create_task(grouped(2))
    await recorder.running.wait()
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    other = asyncio.create_task(grouped(4))
    await asyncio.sleep(0)
    recorder.release.set()

    assert await other == 40
    assert recorder.groups == [[2], [4]], "the cancelled caller's call was still carried out"
