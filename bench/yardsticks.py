"""Yardsticks for the engine's figures, measured in the same run on the same machine.

On one embedded PostgreSQL (the one the engine's comparison run uses), each in a fresh
database of its own with the tables of bench/pgbench/schema.sql:

- the straightforward server (bench/straightforward.py): validate, commit the order's row and
  first event in one transaction per request, answer 201; how most such systems ingest;
- the HTTP ceiling: the same handler writing nothing;
- the database ceiling: pgbench (bench/database_ceiling.py) running accept.sql, the write one
  accepted order needs, and lifecycle.sql, an order's whole life as separate transactions.

The two servers are measured with the engine's own load generator (bench/load.py), at the
same client counts and order count as the engine; each runs as a process of its own, as the
engine does, and is stopped before the next is started. bench/throughput.py measures the
engine, calls `measure_yardsticks` and prints `report_lines`: one line per figure, then the
ratios of the engine's figures to these.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import aiohttp
import asyncpg

from bench.database_ceiling import (
    ACCEPT,
    LIFECYCLE,
    LIFECYCLE_TRANSACTIONS,
    SCHEMA,
    PgbenchRun,
    pgbench_path,
    run_pgbench,
)
from bench.load import Intake, format_percentiles, intake_of
from orderengine.settings import Settings
from tests.engine_process import HOST, LOG_TAIL_LINES, free_port
from tests.harness import with_database

PGBENCH_CLIENTS: Final = 16
START_LIMIT_S: Final = 30.0
STOP_LIMIT_S: Final = 10.0
POLL_S: Final = 0.05
REPOSITORY: Final = Path(__file__).resolve().parents[1]
DESCRIBED_SETTINGS: Final = ("server_version", "fsync", "synchronous_commit")


@dataclass(frozen=True)
class Plan:
    orders: int
    """Orders POSTed at each client count, as for the engine."""
    intake_clients: tuple[int, ...]
    pgbench_s: int
    """How long pgbench runs each time, in seconds."""
    pool_size: int = Settings.model_fields["db_pool_size"].default
    """The straightforward server's database connections: as many as the engine's."""

    @property
    def accept_clients(self) -> tuple[int, ...]:
        """The client counts of accept.sql: 16, and each intake count."""
        return tuple(dict.fromkeys((PGBENCH_CLIENTS, *self.intake_clients)))


@dataclass(frozen=True)
class EngineFigures:
    """The engine's figures to compare, from bench/throughput.py's measure of it."""

    intake: dict[int, Intake]
    """By client count: the same counts as the plan's."""
    executed_per_s: float
    """Orders executed per second, from the first POST until the last order was terminal."""
    executed_clients: int
    """The client count of the run that `executed_per_s` comes from."""
    complete: bool
    """Whether every order was accepted and executed."""


@dataclass(frozen=True)
class Yardsticks:
    postgres: str
    """The server's version and how it makes commits durable."""
    straightforward: dict[int, Intake]
    http_ceiling: dict[int, Intake]
    accept: dict[int, PgbenchRun]
    lifecycle: PgbenchRun

    @property
    def complete(self) -> bool:
        """Whether every POST to the servers was answered 201 and no pgbench run failed."""
        intakes = [*self.straightforward.values(), *self.http_ceiling.values()]
        runs = [*self.accept.values(), self.lifecycle]
        return all(not run.failed for run in runs) and all(
            intake.accepted == intake.statuses.total() for intake in intakes
        )


# ---- measuring ----------------------------------------------------------------------------


def measure_yardsticks(server_url: str, data_dir: Path, workdir: Path, plan: Plan) -> Yardsticks:
    """Every yardstick on the embedded server of `server_url`, whose data are `data_dir`.

    The servers' logs and pgbench's go to `workdir`.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    schema = SCHEMA.read_text()
    return asyncio.run(_measure(server_url, pgbench_path(data_dir), schema, workdir, plan))


async def _measure(
    server_url: str, pgbench: Path, schema: str, workdir: Path, plan: Plan
) -> Yardsticks:
    postgres = await describe_postgres(server_url)
    database = await fresh_database(server_url, "yardstick_straightforward", schema)
    async with serving(workdir / "straightforward.log", database, plan.pool_size) as url:
        straightforward = await intakes("straightforward server", url, plan)
    async with serving(workdir / "http-ceiling.log", None, plan.pool_size) as url:
        http_ceiling = await intakes("HTTP ceiling", url, plan)
    database = await fresh_database(server_url, "yardstick_pgbench", schema)
    accept = {}
    for clients in plan.accept_clients:
        print(f"pgbench {ACCEPT.name}, {clients_text(clients)} ...", flush=True)
        accept[clients] = await run_pgbench(
            pgbench, database, ACCEPT, clients, plan.pgbench_s, workdir
        )
    print(f"pgbench {LIFECYCLE.name}, {PGBENCH_CLIENTS} clients ...", flush=True)
    lifecycle = await run_pgbench(
        pgbench, database, LIFECYCLE, PGBENCH_CLIENTS, plan.pgbench_s, workdir
    )
    return Yardsticks(postgres, straightforward, http_ceiling, accept, lifecycle)


async def intakes(name: str, url: str, plan: Plan) -> dict[int, Intake]:
    found = {}
    for clients in plan.intake_clients:
        print(f"{name}, {clients_text(clients)} ...", flush=True)
        found[clients] = await intake_of(url, plan.orders, clients)
    return found


async def describe_postgres(server_url: str) -> str:
    """The server's version and durability settings: what a commit waits for matters here.

    For example "18.4 (fsync on, synchronous_commit on)".
    """
    connection = await asyncpg.connect(server_url)
    try:
        shown = [await connection.fetchval(f"SHOW {name}") for name in DESCRIBED_SETTINGS]
    finally:
        await connection.close()
    version, *durability = shown
    settings = ", ".join(
        f"{n} {v}" for n, v in zip(DESCRIBED_SETTINGS[1:], durability, strict=True)
    )
    return f"{version} ({settings})"


async def fresh_database(server_url: str, name: str, schema: str | None) -> str:
    """Create database `name` on the server, with the `schema` statements if given; its URL."""
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f"CREATE DATABASE {name}")
    finally:
        await admin.close()
    url = with_database(server_url, name)
    if schema is not None:
        connection = await asyncpg.connect(url)
        try:
            await connection.execute(schema)
        finally:
            await connection.close()
    return url


@contextlib.asynccontextmanager
async def serving(log: Path, database_url: str | None, pool_size: int) -> AsyncIterator[str]:
    """`python -m bench.straightforward` on a free port, until the block ends; its URL.

    With no database URL, the HTTP ceiling. Stopped with SIGTERM, killed if it hangs.
    """
    port = free_port()
    store = ["--database-url", database_url] if database_url else []
    with log.open("wb") as output:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            *("-m", "bench.straightforward", "--port", str(port), "--pool-size", str(pool_size)),
            *store,
            cwd=REPOSITORY,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        url = f"http://{HOST}:{port}"
        await wait_healthy(process, url, log)
        yield url
    finally:
        await stop(process)


async def wait_healthy(process: asyncio.subprocess.Process, url: str, log: Path) -> None:
    """Return once `url` answers /health; raise with the log if the server exits or never does."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        for _ in range(round(START_LIMIT_S / POLL_S)):
            if process.returncode is not None:
                raise RuntimeError(f"{url} exited {process.returncode}:\n{_tail(log)}")
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with session.get(f"{url}/health") as reply:
                    if reply.status == 200:
                        return
            await asyncio.sleep(POLL_S)
    raise RuntimeError(f"{url} did not answer within {START_LIMIT_S:.0f} s:\n{_tail(log)}")


def _tail(log: Path) -> str:
    """The last lines of a server's log, to explain why it did not start."""
    return "\n".join(log.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:])


async def stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGTERM)
    try:
        async with asyncio.timeout(STOP_LIMIT_S):
            await process.wait()
    except TimeoutError:
        process.kill()
        await process.wait()


# ---- report -------------------------------------------------------------------------------


def machine_line(postgres: str, load: tuple[float, float, float]) -> str:
    """Where and when: cores, platform, Python, PostgreSQL, and the load before the run."""
    cores = len(os.sched_getaffinity(0))
    now = datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    return (
        f"machine: {cores} cores, {platform.platform()},"
        f" {platform.python_implementation()} {platform.python_version()}, PostgreSQL {postgres};"
        f" {now}; load average before the run {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}"
    )


def report_lines(engine: EngineFigures, found: Yardsticks, machine: str) -> list[str]:
    """One line per figure, then one per ratio of the engine's figure to a yardstick's."""
    lines = [machine]
    for clients, intake in engine.intake.items():
        lines.append(_intake_line("engine", clients, intake))
        lines.append(
            _intake_line("straightforward server", clients, found.straightforward[clients])
        )
        lines.append(_intake_line("HTTP ceiling", clients, found.http_ceiling[clients]))
    lines.extend(_pgbench_line(run) for run in (*found.accept.values(), found.lifecycle))
    lines.append(
        f"end to end, {clients_text(engine.executed_clients)}, engine: {engine.executed_per_s:.1f}"
        " orders/s executed (from the first POST until the last order was terminal)"
    )
    lines.extend(_ratio_line(ratio) for ratio in ratios(engine, found))
    return lines


def _intake_line(server: str, clients: int, intake: Intake) -> str:
    refused = intake.statuses.total() - intake.accepted
    others = f" ({refused} not 201: {dict(intake.statuses)})" if refused else ""
    return (
        f"intake, {clients_text(clients)}, {server}: {intake.accepted_per_s:.1f} orders/s accepted;"
        f" POST p50/p95/p99 {format_percentiles(intake.latencies_s, 1000, 'ms')}{others}"
    )


def _pgbench_line(run: PgbenchRun) -> str:
    latency = format_percentiles(run.latencies_s, 1000, "ms")
    failed = f" ({run.failed} failed)" if run.failed else ""
    if run.script == LIFECYCLE.name:
        transactions = run.orders_per_s * LIFECYCLE_TRANSACTIONS
        what = (
            f"{run.orders_per_s:.1f} orders/s, each a whole life of"
            f" {LIFECYCLE_TRANSACTIONS} transactions ({transactions:.0f} transactions/s);"
            f" per life p50/p95/p99 {latency}"
        )
    else:
        what = (
            f"{run.orders_per_s:.1f} orders/s accepted, one transaction each; p50/p95/p99 {latency}"
        )
    return f"pgbench {run.script}, {clients_text(run.clients)}, {run.seconds} s: {what}{failed}"


def clients_text(count: int) -> str:
    """A count of clients in words: `1 client`, `64 clients`."""
    return f"{count} client" + ("" if count == 1 else "s")


@dataclass(frozen=True)
class Ratio:
    """The engine's orders per second ÷ a yardstick's, each at its own client count."""

    name: str
    engine_clients: int
    yardstick_clients: int
    engine_per_s: float
    yardstick_per_s: float

    @property
    def value(self) -> float | None:
        return self.engine_per_s / self.yardstick_per_s if self.yardstick_per_s else None

    @property
    def clients(self) -> str:
        engine, yardstick = self.engine_clients, self.yardstick_clients
        if engine == yardstick:
            return clients_text(engine)
        return f"{clients_text(engine)} ÷ {clients_text(yardstick)}"


def ratios(engine: EngineFigures, found: Yardsticks) -> list[Ratio]:
    """Engine ÷ each yardstick at each client count, and end to end ÷ pgbench's lifecycle."""
    found_ratios = []
    for clients, intake in engine.intake.items():
        yardsticks = (
            ("straightforward server", found.straightforward[clients].accepted_per_s),
            ("HTTP ceiling", found.http_ceiling[clients].accepted_per_s),
            (f"pgbench {ACCEPT.name}", found.accept[clients].orders_per_s),
        )
        found_ratios += [
            Ratio(f"engine ÷ {name}", clients, clients, intake.accepted_per_s, per_s)
            for name, per_s in yardsticks
        ]
    lifecycle = found.lifecycle
    name = f"end to end, engine executed ÷ pgbench {lifecycle.script} whole lives"
    found_ratios.append(
        Ratio(
            name,
            engine.executed_clients,
            lifecycle.clients,
            engine.executed_per_s,
            lifecycle.orders_per_s,
        )
    )
    return found_ratios


def _ratio_line(ratio: Ratio) -> str:
    value = "n/a" if ratio.value is None else f"{ratio.value:.2f}"
    return (
        f"ratio, {ratio.clients}, {ratio.name}: {value}"
        f" ({ratio.engine_per_s:.1f} / {ratio.yardstick_per_s:.1f} orders/s)"
    )


def summary(engine: EngineFigures, found: Yardsticks, machine: str) -> dict[str, Any]:
    """Every figure and ratio of `report_lines`, for a JSON file."""
    return {
        "machine": machine,
        "postgres": found.postgres,
        "intake": {
            str(clients): {
                "engine": intake.summary(),
                "straightforward": found.straightforward[clients].summary(),
                "http_ceiling": found.http_ceiling[clients].summary(),
            }
            for clients, intake in engine.intake.items()
        },
        "pgbench": [run.summary() for run in (*found.accept.values(), found.lifecycle)],
        "lifecycle_transactions_per_order": LIFECYCLE_TRANSACTIONS,
        "engine_executed": {
            "clients": engine.executed_clients,
            "orders_per_s": round(engine.executed_per_s, 1),
        },
        "ratios": [_ratio_summary(ratio) for ratio in ratios(engine, found)],
    }


def _ratio_summary(ratio: Ratio) -> dict[str, Any]:
    return {
        "name": ratio.name,
        "engine_clients": ratio.engine_clients,
        "yardstick_clients": ratio.yardstick_clients,
        "engine_per_s": round(ratio.engine_per_s, 1),
        "yardstick_per_s": round(ratio.yardstick_per_s, 1),
        "ratio": None if ratio.value is None else round(ratio.value, 3),
    }
