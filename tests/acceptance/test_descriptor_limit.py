"""A real engine process under a small descriptor limit, flooded with idle connections.

600 idle connections against a 512-descriptor limit once left `/health` unreachable while
asyncio logged accept errors by the thousand. The engine now caps its connections below its
descriptor limit, closing the longest-idle one for each newcomer, so it never runs out of
descriptors and honest clients are still answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import resource
from collections.abc import Iterator
from pathlib import Path

import aiohttp

from tests.engine_process import HOST, StartEngine
from tests.streams import MARKET

LIMIT = 512
FLOOD = 600


@contextlib.contextmanager
def descriptor_limit(limit: int) -> Iterator[None]:
    """Processes started inside inherit a soft descriptor limit of `limit`."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(limit, hard), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def open_files_limit(pid: int) -> int:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    raise AssertionError("no open files limit")


async def test_a_flood_of_idle_connections_leaves_the_engine_serving(
    start_engine: StartEngine,
) -> None:
    with descriptor_limit(LIMIT):
        engine = await start_engine(keepalive_timeout_s=30, request_timeout_s=30)
    assert open_files_limit(engine.pid) == LIMIT

    flood: list[asyncio.StreamWriter] = []
    try:
        for _ in range(FLOOD):
            _, writer = await asyncio.open_connection(HOST, engine.port)
            flood.append(writer)
        await asyncio.sleep(0.5)

        timeout = aiohttp.ClientTimeout(total=5)
        async with aiohttp.ClientSession(engine.url, timeout=timeout) as session:
            async with session.get("/health") as health:
                assert health.status == 200
            async with session.post("/api/orders/execute", json=MARKET) as posted:
                assert posted.status == 201
    finally:
        for writer in flood:
            writer.close()

    log = engine.log_path.read_text()
    assert "Too many open files" not in log
    assert "out of system resource" not in log
    [listening] = [json.loads(line) for line in log.splitlines() if '"listening"' in line]
    assert 0 < listening["max_connections"] < LIMIT


async def test_a_newcomer_refused_at_the_cap_reads_its_503(start_engine: StartEngine) -> None:
    """On the engine's own event loop (uvloop), whose transports are not asyncio's."""
    engine = await start_engine(max_connections=2, request_timeout_s=30)
    busy: list[asyncio.StreamWriter] = []
    try:
        for _ in range(2):  # each in the middle of a body: busy, never closed for a newcomer
            _, writer = await asyncio.open_connection(HOST, engine.port)
            writer.write(
                b"POST /api/orders/execute HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
            )
            busy.append(writer)
        await asyncio.sleep(0.3)

        reader, writer = await asyncio.open_connection(HOST, engine.port)
        writer.write(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        answer = await asyncio.wait_for(reader.read(), 5)
        writer.close()
    finally:
        for held in busy:
            held.close()

    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503"), answer
    assert json.loads(body)["error"]["code"] == "too_many_connections"
    assert "Traceback" not in engine.log_path.read_text()
