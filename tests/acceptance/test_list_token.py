"""`python -m orderengine list-token` against an engine started by `python -m orderengine`.

The command line as an operator types it: the listing reaches the engine over HTTP and the
engine trades the new pair; an error answer and an engine that is not there both make the
command fail, saying why. Plain `python -m orderengine` still serves, as the engine fixture
shows by starting one.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid

import aiohttp

from orderengine import cli
from tests.engine_process import StartEngine, free_port
from tests.harness import without_engine_settings


async def list_token(*arguments: str) -> tuple[int, str, str]:
    """Run the command; its exit status, standard output and standard error."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "orderengine",
        "list-token",
        *arguments,
        env=without_engine_settings(os.environ),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_a_token_listed_from_the_command_line_trades_on_the_engine(
    start_engine: StartEngine,
) -> None:
    engine = await start_engine(latency_scale=0, failure_rate=0)
    symbol = "T" + uuid.uuid4().hex[:8].upper()
    arguments = ["--dex", "meteora", "--token", symbol, "--price", "0.0001"]

    listed = await list_token(*arguments, "--liquidity", "5000", "--url", engine.url)
    refused = await list_token(*arguments, "--liquidity", "7000", "--url", engine.url)
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"{engine.url}/api/quotes",
            params={"tokenIn": "SOL", "tokenOut": symbol, "amountIn": "0.5"},
        ) as response,
    ):
        preview = await response.json()

    status, out, err = listed
    assert (status, err) == (cli.LISTED, "")
    listing = json.loads(out)
    assert (listing["dex"], listing["token"], listing["quoteToken"]) == ("meteora", symbol, "SOL")
    assert (listing["price"], listing["liquidity"]) == ("0.0001", "5000")
    status, out, err = refused
    assert (status, out) == (cli.REFUSED, "")
    assert "HTTP 409" in err
    assert "already_listed" in err
    assert preview["dex"] == "meteora"
    assert [quote["pool"] for quote in preview["quotes"]] == [listing["pool"]]


async def test_the_command_fails_saying_so_when_no_engine_answers() -> None:
    url = f"http://127.0.0.1:{free_port()}"

    status, out, err = await list_token(
        "--dex", "meteora", "--token", "NOONE", "--price", "1", "--liquidity", "1", "--url", url
    )

    assert status == cli.UNREACHABLE
    assert out == ""
    assert err.startswith(f"no engine answered at {url}: ")


async def test_a_command_line_it_cannot_read_is_a_usage_error() -> None:
    status, out, err = await list_token("--dex", "meteora", "--token", "X1")

    assert (status, out) == (2, "")
    assert "required" in err
    assert "--price" in err
