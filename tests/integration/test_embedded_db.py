"""The embedded server's stop: a shutdown for data that are kept, at once for data that go."""

from __future__ import annotations

import asyncio
import shutil

import asyncpg
import pytest

from orderengine.embedded_db import embedded_postgres
from tests.engine_process import leftover_postgres
from tests.harness import embedded_scratch_dir


async def _write(url: str) -> None:
    connection = await asyncpg.connect(url)
    try:
        await connection.execute("CREATE TABLE written AS SELECT generate_series(1, 1000) AS n")
    finally:
        await connection.close()


@pytest.mark.parametrize(("throwaway", "request_logged"), [(False, "fast"), (True, "immediate")])
def test_the_last_user_stops_the_server_the_way_its_data_call_for(
    throwaway: bool, request_logged: str
) -> None:
    scratch = embedded_scratch_dir("oe-stop-")
    data_dir = (scratch / "data").resolve()
    try:
        with embedded_postgres(data_dir, throwaway=throwaway) as url:
            assert leftover_postgres(data_dir) is not None
            asyncio.run(_write(url))

        assert leftover_postgres(data_dir) is None
        log = (data_dir / "log").read_text()
        assert f"received {request_logged} shutdown request" in log
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
