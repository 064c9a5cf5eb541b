"""The engine as a real process, for tests that kill it: `python -m orderengine`."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any

import aiohttp

from tests.streams import MARKET


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class EngineProcess:
    """One run of the engine on a given database; start it again for the next run."""

    def __init__(self, database_url: str, log_dir: Path, **settings: Any) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_dir = log_dir
        self.runs = 0
        self.env = {
            **os.environ,
            "ORDERENGINE_DATABASE_URL": database_url,
            "ORDERENGINE_PORT": str(self.port),
            "ORDERENGINE_LOG_FORMAT": "json",
            "ORDERENGINE_RATE_PER_MINUTE": "600000",
            "ORDERENGINE_RATE_BURST": "1000",
            **{f"ORDERENGINE_{name.upper()}": str(value) for name, value in settings.items()},
        }
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.runs += 1
        log = (self.log_dir / f"engine-{self.runs}.log").open("wb")
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "orderengine", env=self.env, stdout=log, stderr=log
        )
        log.close()
        async with aiohttp.ClientSession() as session:
            for _ in range(300):
                if self.process.returncode is not None:
                    raise RuntimeError(f"engine exited {self.process.returncode}: {self.log()}")
                try:
                    async with session.get(f"{self.url}/health") as response:
                        if response.status == 200:
                            return
                except aiohttp.ClientConnectionError:
                    pass
                await asyncio.sleep(0.05)
        raise RuntimeError(f"engine did not become healthy: {self.log()}")

    def log(self) -> str:
        return (self.log_dir / f"engine-{self.runs}.log").read_text()[-3000:]

    def signal(self, signum: signal.Signals) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    async def wait(self, limit_s: float = 30) -> int:
        assert self.process is not None
        async with asyncio.timeout(limit_s):
            return await self.process.wait()

    async def kill(self) -> None:
        self.signal(signal.SIGKILL)
        await self.wait()

    async def submit(self, session: aiohttp.ClientSession, count: int) -> list[str]:
        async def one() -> str:
            async with session.post(f"{self.url}/api/orders/execute", json=MARKET) as response:
                assert response.status == 201, await response.text()
                order_id: str = (await response.json())["orderId"]
                return order_id

        return list(await asyncio.gather(*(one() for _ in range(count))))
