"""Yardsticks for the engine's figures, measured in the same run on the same machine, in rounds.

On one embedded PostgreSQL (the one the engine's comparison run uses), each in a fresh
database of its own with the tables of bench/pgbench/schema.sql:

- the straightforward server (bench/straightforward.py): validate, commit the order's row and
  first event in one transaction per request, answer 201; how most such systems ingest;
- the HTTP ceiling: the same handler writing nothing;
- the database ceiling: pgbench (bench/database_ceiling.py) running accept.sql, the write one
  accepted order needs, and lifecycle.sql, an order's whole life as separate transactions.

The two servers are measured with the engine's own load generator (bench/load.py), at the
same client counts and order count as the engine; each runs as a process of its own, as the
engine does. This machine's speed moves by a fifth or more from one minute to the next, so
the engine and its yardsticks are measured in rounds (`Plan.rounds`): in each, every
server's intake at each client count, one straight after another (which goes first turns
from round to round), then the engine's end-to-end rate and pgbench's whole lives. Each
ratio is taken within a round, between figures seconds apart; the report gives the median
of the rounds' ratios and each round's. accept.sql, which no target is set against, runs
once, before the servers start (at 64 clients it needs connections the servers hold).

bench/throughput.py starts the engines and calls `compare` with them; `report_lines` prints
one line per figure, then the ratios.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import signal
import statistics
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
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
    run_pgbench,
)
from bench.load import Intake, format_percentiles, intake_of, percentiles
from orderengine.settings import Settings
from tests.engine_process import HOST, LOG_TAIL_LINES, free_port
from tests.harness import with_database

PGBENCH_CLIENTS: Final = 16
START_LIMIT_S: Final = 30.0
STOP_LIMIT_S: Final = 10.0
POLL_S: Final = 0.05
REPOSITORY: Final = Path(__file__).resolve().parents[1]
DESCRIBED_SETTINGS: Final = ("server_version", "fsync", "synchronous_commit")
ENGINE: Final = "engine"
STRAIGHTFORWARD: Final = "straightforward server"
HTTP_CEILING: Final = "HTTP ceiling"
SERVERS: Final = (ENGINE, STRAIGHTFORWARD, HTTP_CEILING)


@dataclass(frozen=True)
class Plan:
    orders: int
    """Orders POSTed at each client count, by each server, in each round."""
    intake_clients: tuple[int, ...]
    pgbench_s: int
    """How long pgbench runs each time, in seconds."""
    rounds: int
    pool_size: int = Settings.model_fields["db_pool_size"].default
    """The straightforward server's database connections: as many as the engine's."""

    @property
    def accept_clients(self) -> tuple[int, ...]:
        """The client counts of accept.sql: 16, and each intake count."""
        return tuple(dict.fromkeys((PGBENCH_CLIENTS, *self.intake_clients)))


Executed = Callable[[], Awaitable[tuple[float, bool]]]
"""Measures the engine end to end once: orders executed per second, and whether every order
was accepted and executed."""


@dataclass(frozen=True)
class Round:
    """One round: each server's intake by client count, then end to end, then pgbench."""

    intake: dict[str, dict[int, Intake]]
    """By server (`SERVERS`), then by client count."""
    executed_per_s: float
    """The engine's orders executed per second, from the first POST until the last order
    was terminal."""
    executed_complete: bool
    lifecycle: PgbenchRun

    @property
    def complete(self) -> bool:
        """Whether every POST was answered 201, every order executed, and pgbench ran clean."""
        intakes = [intake for by_count in self.intake.values() for intake in by_count.values()]
        return (
            self.executed_complete
            and not self.lifecycle.failed
            and all(intake.accepted == intake.statuses.total() for intake in intakes)
        )


@dataclass(frozen=True)
class Comparison:
    postgres: str
    """The server's version and how it makes commits durable."""
    accept: dict[int, PgbenchRun]
    rounds: list[Round]
    executed_clients: int
    """The client count of the end-to-end runs: the busiest intake count."""

    def complete(self, orders: int) -> bool:
        """Whether every round was complete with all of its `orders` accepted."""
        return all(
            round_.complete
            and all(intake.accepted == orders for intake in round_.intake[ENGINE].values())
            for round_ in self.rounds
        ) and not any(run.failed for run in self.accept.values())

    @property
    def intake_clients(self) -> list[int]:
        """The client counts at which intake was measured, in the order measured."""
        return list(self.rounds[0].intake[ENGINE]) if self.rounds else []

    def intakes(self, server: str, clients: int) -> list[Intake]:
        """The server's intake at `clients`, one per round."""
        return [round_.intake[server][clients] for round_ in self.rounds]


# ---- measuring ----------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def yardstick_servers(
    server_url: str, workdir: Path, plan: Plan
) -> AsyncIterator[tuple[str, str]]:
    """The straightforward server on a fresh database, and the HTTP ceiling; their URLs.

    Their logs go to `workdir`, which exists.
    """
    database = await fresh_database(server_url, "yardstick_straightforward", SCHEMA.read_text())
    async with (
        serving(workdir / "straightforward.log", database, plan.pool_size) as straightforward,
        serving(workdir / "http-ceiling.log", None, plan.pool_size) as http_ceiling,
    ):
        yield straightforward, http_ceiling


async def database_ceiling(
    server_url: str, pgbench: Path, plan: Plan, logs: Path
) -> tuple[str, dict[int, PgbenchRun], str]:
    """The server's description, accept.sql's runs, and a database for lifecycle.sql.

    accept.sql runs at each of the plan's counts, its logs under `logs` (which exists); the
    database has the yardsticks' tables, for the rounds' lifecycle.sql. Run before any
    server starts: at 64 clients, accept.sql needs connections they hold.
    """
    postgres = await describe_postgres(server_url)
    database = await fresh_database(server_url, "yardstick_pgbench", SCHEMA.read_text())
    accept = {}
    for clients in plan.accept_clients:
        print(f"pgbench {ACCEPT.name}, {clients_text(clients)} ...", flush=True)
        accept[clients] = await run_pgbench(
            pgbench, database, ACCEPT, clients, plan.pgbench_s, logs
        )
    return postgres, accept, database


async def measure_round(
    number: int,
    urls: dict[str, str],
    executed: Executed,
    pgbench: tuple[Path, str],
    plan: Plan,
    logs: Path,
) -> Round:
    """Round `number` (from 0): each server's intake, then end to end, then lifecycle.sql.

    The servers are `urls` by name, taken in turn, the first one turning with `number`;
    `pgbench` is the program and its database; its logs go under `logs`, which exists.
    """
    servers = list(urls.items())
    first = number % len(servers)
    servers = servers[first:] + servers[:first]
    intake: dict[str, dict[int, Intake]] = {name: {} for name in urls}
    for clients in plan.intake_clients:
        for name, url in servers:
            print(f"round {number + 1}: {name}, {clients_text(clients)} ...", flush=True)
            intake[name][clients] = await intake_of(url, plan.orders, clients)
    print(f"round {number + 1}: engine end to end ...", flush=True)
    executed_per_s, executed_complete = await executed()
    print(f"round {number + 1}: pgbench {LIFECYCLE.name}, {PGBENCH_CLIENTS} clients ...")
    program, database = pgbench
    lifecycle = await run_pgbench(
        program, database, LIFECYCLE, PGBENCH_CLIENTS, plan.pgbench_s, logs
    )
    return Round(intake, executed_per_s, executed_complete, lifecycle)


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


def report_lines(comparison: Comparison, machine: str) -> list[str]:
    """One line per figure, then one per ratio of the engine's figure to a yardstick's.

    A rate is the median of the rounds', each round's following it; latencies are of every
    POST (or run of a script) of every round together, and an intake's p99 of each round.
    """
    lines = [machine]
    for clients in comparison.intake_clients:
        lines.extend(
            _intake_line(server, clients, comparison.intakes(server, clients)) for server in SERVERS
        )
    lines.extend(_pgbench_line([run]) for run in comparison.accept.values())
    lines.append(_pgbench_line([round_.lifecycle for round_ in comparison.rounds]))
    executed = [round_.executed_per_s for round_ in comparison.rounds]
    lines.append(
        f"end to end, {clients_text(comparison.executed_clients)}, engine:"
        f" {_rates(executed)} orders/s executed (from the first POST until the last order"
        " was terminal)"
    )
    lines.extend(_ratio_line(ratio) for ratio in ratios(comparison))
    return lines


def _rates(per_s: Sequence[float]) -> str:
    """`median (rounds a, b, c)`, or the one figure when there was one round."""
    median = f"{statistics.median(per_s):.1f}"
    if len(per_s) == 1:
        return median
    return f"{median} (rounds {', '.join(f'{value:.1f}' for value in per_s)})"


def _intake_line(server: str, clients: int, intakes: Sequence[Intake]) -> str:
    pooled = _pooled(intakes)
    refused = pooled.statuses.total() - pooled.accepted
    others = f" ({refused} not 201: {dict(pooled.statuses)})" if refused else ""
    rates = _rates([intake.accepted_per_s for intake in intakes])
    return (
        f"intake, {clients_text(clients)}, {server}: {rates} orders/s accepted;"
        f" POST p50/p95/p99 {format_percentiles(pooled.latencies_s, 1000, 'ms')}"
        f"{_p99_by_round(intakes)}{others}"
    )


def _p99_by_round(intakes: Sequence[Intake]) -> str:
    """`; p99 by round a, b, c ms`: one slow round sets the p99 of all rounds together."""
    found = [percentiles(intake.latencies_s) for intake in intakes]
    p99s = [each[99] for each in found if each is not None]
    if len(intakes) < 2 or len(p99s) < len(intakes):
        return ""
    return "; p99 by round " + ", ".join(f"{p99 * 1000:.1f}" for p99 in p99s) + " ms"


def _pooled(intakes: Sequence[Intake]) -> Intake:
    """The rounds' intakes as one: their times, latencies and answers together."""
    statuses: Counter[str] = Counter()
    for intake in intakes:
        statuses += intake.statuses
    return Intake(
        sum(intake.elapsed_s for intake in intakes),
        [latency for intake in intakes for latency in intake.latencies_s],
        statuses,
    )


def _pgbench_line(runs: Sequence[PgbenchRun]) -> str:
    """One script at one client count, over one run or the rounds' runs."""
    first = runs[0]
    latency = format_percentiles([s for run in runs for s in run.latencies_s], 1000, "ms")
    failed = sum(run.failed for run in runs)
    failures = f" ({failed} failed)" if failed else ""
    per_s = [run.orders_per_s for run in runs]
    if first.script == LIFECYCLE.name:
        transactions = statistics.median(per_s) * LIFECYCLE_TRANSACTIONS
        what = (
            f"{_rates(per_s)} orders/s, each a whole life of {LIFECYCLE_TRANSACTIONS}"
            f" transactions ({transactions:.0f} transactions/s); per life p50/p95/p99 {latency}"
        )
    else:
        what = f"{_rates(per_s)} orders/s accepted, one transaction each; p50/p95/p99 {latency}"
    return (
        f"pgbench {first.script}, {clients_text(first.clients)}, {first.seconds} s: {what}"
        f"{failures}"
    )


def clients_text(count: int) -> str:
    """A count of clients in words: `1 client`, `64 clients`."""
    return f"{count} client" + ("" if count == 1 else "s")


@dataclass(frozen=True)
class Ratio:
    """The engine's orders per second ÷ a yardstick's, each at its own client count, by round.

    With accept.sql, which runs once, every round's engine figure is set against that run.
    """

    name: str
    engine_clients: int
    yardstick_clients: int
    engine_per_s: list[float]
    yardstick_per_s: list[float]

    @property
    def values(self) -> list[float]:
        return [
            engine / yardstick
            for engine, yardstick in zip(self.engine_per_s, self.yardstick_per_s, strict=True)
            if yardstick
        ]

    @property
    def median(self) -> float | None:
        values = self.values
        return statistics.median(values) if values else None

    @property
    def clients(self) -> str:
        engine, yardstick = self.engine_clients, self.yardstick_clients
        if engine == yardstick:
            return clients_text(engine)
        return f"{clients_text(engine)} ÷ {clients_text(yardstick)}"


def ratios(comparison: Comparison) -> list[Ratio]:
    """Engine ÷ each yardstick at each client count, and end to end ÷ pgbench's lifecycle."""
    rounds = comparison.rounds
    found_ratios = []
    for clients in comparison.intake_clients:
        engine = [intake.accepted_per_s for intake in comparison.intakes(ENGINE, clients)]
        for server in SERVERS[1:]:
            yardstick = [intake.accepted_per_s for intake in comparison.intakes(server, clients)]
            found_ratios.append(Ratio(f"engine ÷ {server}", clients, clients, engine, yardstick))
        accept = comparison.accept[clients].orders_per_s
        name = f"engine ÷ pgbench {ACCEPT.name}"
        found_ratios.append(Ratio(name, clients, clients, engine, [accept] * len(engine)))
    found_ratios.append(
        Ratio(
            f"end to end, engine executed ÷ pgbench {LIFECYCLE.name} whole lives",
            comparison.executed_clients,
            PGBENCH_CLIENTS,
            [round_.executed_per_s for round_ in rounds],
            [round_.lifecycle.orders_per_s for round_ in rounds],
        )
    )
    return found_ratios


def _ratio_line(ratio: Ratio) -> str:
    median = ratio.median
    value = "n/a" if median is None else f"{median:.2f}"
    by_round = ratio.values
    if len(by_round) > 1:
        value += f" (rounds {', '.join(f'{each:.2f}' for each in by_round)})"
    engine, yardstick = (
        statistics.median(ratio.engine_per_s),
        statistics.median(ratio.yardstick_per_s),
    )
    return (
        f"ratio, {ratio.clients}, {ratio.name}: {value}"
        f" (medians {engine:.1f} / {yardstick:.1f} orders/s)"
    )


def summary(comparison: Comparison, machine: str) -> dict[str, Any]:
    """Every figure of every round, and the ratios, for a JSON file."""
    return {
        "machine": machine,
        "postgres": comparison.postgres,
        "pgbench_accept": [run.summary() for run in comparison.accept.values()],
        "rounds": [_round_summary(round_) for round_ in comparison.rounds],
        "lifecycle_transactions_per_order": LIFECYCLE_TRANSACTIONS,
        "engine_executed_clients": comparison.executed_clients,
        "ratios": [_ratio_summary(ratio) for ratio in ratios(comparison)],
    }


def _round_summary(round_: Round) -> dict[str, Any]:
    return {
        "intake": {
            server: {str(clients): intake.summary() for clients, intake in by_count.items()}
            for server, by_count in round_.intake.items()
        },
        "engine_executed_per_s": round(round_.executed_per_s, 1),
        "pgbench_lifecycle": round_.lifecycle.summary(),
    }


def _ratio_summary(ratio: Ratio) -> dict[str, Any]:
    median = ratio.median
    return {
        "name": ratio.name,
        "engine_clients": ratio.engine_clients,
        "yardstick_clients": ratio.yardstick_clients,
        "engine_per_s": [round(value, 1) for value in ratio.engine_per_s],
        "yardstick_per_s": [round(value, 1) for value in ratio.yardstick_per_s],
        "ratios": [round(value, 3) for value in ratio.values],
        "median": None if median is None else round(median, 3),
    }
