"""The client examples in examples/, run as a user runs them against `python -m orderengine`.

Each follows an order three ways (POST then the answer's socket, the order as the socket's
first message, a POST that upgrades) and then prints the feed of all orders. The engine has
a key in force, so each also shows that the key it is given is sent, on requests and
sockets alike. The Node example needs `node` and `npm`, and installs its one dependency on
first use (`npm ci`), so it runs on a fresh clone.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from tests.engine_process import EngineProcess, StartEngine
from tests.harness import without_engine_settings

ROOT = Path(__file__).resolve().parents[2]
PYTHON_EXAMPLE = ROOT / "examples" / "python" / "follow.py"
NODE_DIR = ROOT / "examples" / "node"
NODE_EXAMPLE = NODE_DIR / "follow.mjs"
KEY = "examples-key-0123456789"
WAYS = ("post-then-open", "first-message", "post-upgrade")
RUN_LIMIT_S = 30.0
INSTALL_LIMIT_S = 120.0


async def engine_with_a_key(start_engine: StartEngine) -> EngineProcess:
    return await start_engine(latency_scale=0, failure_rate=0, seed=7, api_keys=f"examples:{KEY}")


async def run(*command: str | Path, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Run a command from the repository's root; its exit status, standard output and error."""
    process = await asyncio.create_subprocess_exec(
        *command,
        cwd=ROOT,
        env={**without_engine_settings(os.environ), **(env or {})},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(RUN_LIMIT_S):
            out, err = await process.communicate()
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def assert_followed(output: str) -> None:
    """Each way streamed its order to `confirmed` and a 1000 close; the feed had them all.

    A line is `WAY ORDER_ID SEQ STATUS` (SEQ `-` for the accepted order), `WAY ORDER_ID
    closed CODE`, or `feed POSITION ORDER_ID SEQ STATUS`.
    """
    lines = [line.split() for line in output.splitlines()]
    streams: dict[str, list[list[str]]] = defaultdict(list)
    for line in lines:
        streams[line[0]].append(line[1:])
    assert set(streams) == {*WAYS, "feed"}, output

    streamed: dict[str, list[tuple[int, str]]] = {}
    for way in WAYS:
        *events, closing = streams[way]
        order_id = closing[0]
        assert closing[1:] == ["closed", "1000"], output
        assert {event[0] for event in events} == {order_id}, output
        streamed[order_id] = [(int(seq), status) for _, seq, status in events if seq != "-"]
        assert [seq for seq, _ in streamed[order_id]] == list(range(1, len(streamed[order_id]) + 1))
        assert streamed[order_id][-1][1] == "confirmed", output
    assert streams["post-then-open"][0][1:] == ["1", "pending"], output
    for way in ("first-message", "post-upgrade"):
        assert streams[way][0][1:] == ["-", "pending"], output

    positions = [int(position) for position, *_ in streams["feed"]]
    assert positions == sorted(set(positions)), output
    fed: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for _, order_id, seq, status in streams["feed"]:
        fed[order_id].append((int(seq), status))
    assert fed == streamed, output


async def test_the_python_example_follows_orders_three_ways_and_the_feed(
    start_engine: StartEngine,
) -> None:
    engine = await engine_with_a_key(start_engine)
    example = (sys.executable, PYTHON_EXAMPLE, "--url", engine.url)

    status, out, err = await run(*example, "--key", KEY)
    refused, _, refusal = await run(*example)

    assert status == 0, err
    assert_followed(out)
    assert refused != 0
    assert refusal.startswith("401 from "), refusal


async def npm_ci() -> None:
    """Install the Node example's locked dependencies, once per clone."""
    if (NODE_DIR / "node_modules").is_dir():
        return
    process = await asyncio.create_subprocess_exec(
        "npm",
        "ci",
        "--prefix",
        NODE_DIR,
        "--no-audit",
        "--no-fund",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    async with asyncio.timeout(INSTALL_LIMIT_S):
        out, _ = await process.communicate()
    assert process.returncode == 0, f"npm ci failed:\n{out.decode()}"


@pytest.mark.skipif(
    shutil.which("node") is None or shutil.which("npm") is None,
    reason="the Node example needs node and npm, which are not installed",
)
@pytest.mark.timeout(INSTALL_LIMIT_S + 60)
async def test_the_node_example_follows_orders_three_ways_and_the_feed(
    start_engine: StartEngine,
) -> None:
    await npm_ci()
    engine = await engine_with_a_key(start_engine)

    status, out, err = await run(
        "node", NODE_EXAMPLE, "--url", engine.url, env={"ORDERENGINE_KEY": KEY}
    )

    assert status == 0, err
    assert_followed(out)
