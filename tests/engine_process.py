"""The engine as a real process, `python -m orderengine`, for the tests and the benchmark.

The tests that kill the engine and the benchmark that measures it both need to start it,
stop it, signal it and read its log; this is the one place that does it.

The engine's environment is the caller's less any engine setting of its own, plus the
settings given here, so a shell's exports never change a run. It talks to the PostgreSQL of a
database URL, or starts the embedded one on a data directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, Final
from uuid import UUID

import aiohttp

from orderengine.embedded_db import in_use
from tests.harness import without_engine_settings
from tests.streams import MARKET

HOST: Final = "127.0.0.1"
HEALTH_LIMIT_S: Final = 60.0
HEALTH_POLL_S: Final = 0.05
STOP_LIMIT_S: Final = 30.0
POSTGRES_STOP_LIMIT_S: Final = 10.0
LOG_TAIL_LINES: Final = 30
# A test engine is not paced by the token bucket unless the test asks for it.
DEFAULT_SETTINGS: Final[Mapping[str, Any]] = {
    "log_format": "json",
    "rate_per_minute": 600_000,
    "rate_burst": 1_000,
}


def free_port() -> int:
    """A loopback port free right now; the engine binds it a moment later."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def engine_environment(
    database: str | Path, port: int, settings: Mapping[str, Any]
) -> dict[str, str]:
    """The environment of one engine: the caller's without engine settings, plus these.

    A setting given as None is left to the engine's default.
    """
    where = {"database_url": database} if isinstance(database, str) else {"data_dir": database}
    values = {**DEFAULT_SETTINGS, **settings, **where, "host": HOST, "port": port}
    env = without_engine_settings(os.environ)
    env.update(
        (f"ORDERENGINE_{name.upper()}", str(value))
        for name, value in values.items()
        if value is not None
    )
    return env


async def refused_start(
    database_url: str, settings: Mapping[str, Any], port: int | None = None
) -> str:
    """The output of an engine started with `settings`, which must exit 1 on its own.

    It listens on `port`, or on a free one if none is given.
    """
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "orderengine",
        env=engine_environment(database_url, port or free_port(), settings),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), HEALTH_LIMIT_S)
    assert process.returncode == 1, output.decode()
    return output.decode()


def leftover_postgres(data_dir: Path) -> int | None:
    """The pid of the embedded PostgreSQL still running on `data_dir`, if any.

    A clean exit of the last engine using the server stops it, which removes
    `postmaster.pid`. The pid found there
    only counts if its command line names `data_dir`, so a stale file can never point at an
    unrelated process.
    """
    try:
        pid = int((data_dir / "postmaster.pid").read_text().split()[0])
        command_line = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError, IndexError):
        return None
    return pid if str(data_dir).encode() in command_line else None


def process_exists(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


class EngineProcess:
    """Runs of the engine on one database: a URL (str) or an embedded data directory (Path).

    Each `start()` is a new process with a log of its own in `log_dir` (created if missing);
    the database, port and settings stay, so a test can kill the engine and start it again on
    what it left. Several engines on one database each need a `log_dir` of their own.
    """

    def __init__(self, database: str | Path, log_dir: Path, **settings: Any) -> None:
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.ws_url = f"ws://{HOST}:{self.port}"
        self.data_dir = None if isinstance(database, str) else database.resolve()
        self.log_dir = log_dir
        log_dir.mkdir(parents=True, exist_ok=True)
        keypair = {"keypair": log_dir / "keypair.json"}
        self.env = engine_environment(self.data_dir or database, self.port, {**keypair, **settings})
        self.runs = 0
        self.process: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int:
        return self._process().pid

    @property
    def log_path(self) -> Path:
        """The log of the current (or last) run: stdout and stderr together."""
        return self.log_dir / f"engine-{self.runs}.log"

    def log(self) -> str:
        """The last lines of the current run's log, to explain a failure."""
        with contextlib.suppress(OSError):
            lines = self.log_path.read_text(errors="replace").splitlines()
            return "\n".join(lines[-LOG_TAIL_LINES:])
        return ""

    def engine_id(self) -> UUID:
        """The current run's id, as its log says at start: the `lease_owner` of its orders.

        Needs the JSON log (the default here); the run has started, as `start()` waits for.
        """
        for line in self.log_path.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                entry = json.loads(line)
                if isinstance(entry, dict) and entry.get("event") == "engine_started":
                    return UUID(entry["engine_id"])
        raise RuntimeError(f"the engine did not log its id:\n{self.log()}")

    async def start(self) -> None:
        """Start a new run and return once it answers /health; stop it if it never does."""
        self.runs += 1
        with self.log_path.open("wb") as log:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "orderengine",
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            await self._wait_healthy()
        except BaseException:
            await self.stop()
            raise

    async def _wait_healthy(self) -> None:
        process = self._process()
        timeout = aiohttp.ClientTimeout(total=2)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            for _ in range(round(HEALTH_LIMIT_S / HEALTH_POLL_S)):
                if process.returncode is not None:
                    raise RuntimeError(f"engine exited {process.returncode}:\n{self.log()}")
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with session.get(f"{self.url}/health") as response:
                        if response.status == 200:
                            return
                await asyncio.sleep(HEALTH_POLL_S)
        raise RuntimeError(f"engine not healthy within {HEALTH_LIMIT_S:.0f} s:\n{self.log()}")

    def signal(self, signum: signal.Signals) -> None:
        self._process().send_signal(signum)

    async def wait(self, limit_s: float = STOP_LIMIT_S) -> int:
        """The exit code, once the process has ended; TimeoutError after `limit_s`."""
        async with asyncio.timeout(limit_s):
            return await self._process().wait()

    async def kill(self) -> None:
        """SIGKILL, as a crash would.

        An embedded PostgreSQL is left running, as after a real crash; the next start takes
        it over, and `stop()` ends it.
        """
        self.signal(signal.SIGKILL)
        await self.wait()

    async def stop(self) -> int | None:
        """End the run whatever its state and leave nothing running; its exit code, if any.

        SIGTERM first (the engine drains in-flight swaps), SIGKILL if it hangs; then the
        embedded PostgreSQL, if a killed engine left it running.
        """
        if self.process is None:
            return None
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.signal(signal.SIGTERM)
            try:
                await self.wait()
            except TimeoutError:
                await self.kill()
        await self._stop_leftover_postgres()
        return self.process.returncode

    async def _stop_leftover_postgres(self) -> None:
        """Stop the embedded PostgreSQL if the engine died without stopping it.

        Not while another process (another engine on the same data directory) uses it.
        """
        if self.data_dir is None or in_use(self.data_dir):
            return
        pid = leftover_postgres(self.data_dir)
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGINT)
        for _ in range(round(POSTGRES_STOP_LIMIT_S / HEALTH_POLL_S)):
            if not process_exists(pid):
                return
            await asyncio.sleep(HEALTH_POLL_S)

    async def submit(self, session: aiohttp.ClientSession, count: int) -> list[str]:
        """POST `count` market orders at once; their ids, each one accepted."""

        async def one() -> str:
            async with session.post(f"{self.url}/api/orders/execute", json=MARKET) as response:
                assert response.status == 201, await response.text()
                order_id: str = (await response.json())["orderId"]
                return order_id

        return list(await asyncio.gather(*(one() for _ in range(count))))

    def _process(self) -> asyncio.subprocess.Process:
        if self.process is None:
            raise RuntimeError("the engine was never started")
        return self.process


StartEngine = Callable[..., Awaitable[EngineProcess]]
