"""Throughput benchmark: how fast the engine accepts orders and how fast it finishes them.

`python -m bench.throughput` starts `python -m orderengine` on a free loopback port with a
fresh embedded PostgreSQL, no simulated latency (unless `--latency-scale` asks for it), no
simulated failures, no rate limit and 50 workers (`--workers`; the engine ships with 10), so
what is measured is the engine itself: HTTP, the database and the workers.

- intake: N orders are POSTed by C concurrent clients; accepted orders per second and the
  latency of each POST (commit as `pending` included);
- end to end: the time from the first POST until every accepted order is terminal, read from
  the `orderengine_orders_finished_total` counters on `/metrics`, and each order's time from
  acceptance to its terminal status, read from the stored orders;
- engine: the engine process's peak resident set (VmHWM) and CPU time (user + system, start-up
  included); the PostgreSQL server, a separate process, is not included.

Then the same end-to-end measure with several engines on one database (`--engines`, by default
1, 2 and 3): one embedded PostgreSQL, started by the benchmark itself, a fresh database on it
for each count, the engines on ports of their own, and the clients spread over them (client
i talks to engine i mod n, as a load balancer would spread connections). For each count: the
orders accepted and executed per second, where the CPU went during the run — the engine
processes, the PostgreSQL server (the postmaster and every backend, those that ended during
the run included) and the benchmark's own clients — from /proc, and what the server's
backends were doing meanwhile (`pg_stat_activity`, read every 10 ms: running, or waiting,
and for what), so that it shows what ran out: the cores, or something they wait for.

Then, unless --no-yardsticks is given, the engine beside its yardsticks (bench/yardsticks.py),
on one more embedded PostgreSQL, in rounds (--rounds, 5 by default): in each, the engine's
intake at each of --intake-clients (64 and 1 by default) with its workers paced as shipped
(the default rate limit), so that accepting orders is measured as the yardsticks' servers do
it and not beside executing them, and the straightforward server's and the HTTP ceiling's
with the same clients, one straight after another; then a second engine's end-to-end rate,
unpaced, at the busiest count, and pgbench's whole lives. One line per figure (the rounds'
median, and each round's), then the ratios of the engine's to theirs, each taken within a
round.

The clients are bench/load.py's. Each part writes its figures to a JSON file under
bench/results/ as it ends. The engines are run by tests/engine_process.py, as in the
acceptance tests, and always stopped (SIGTERM, then SIGKILL if it hangs, then any PostgreSQL
left running); the temporary directory under /tmp is removed unless --keep is given.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import shutil
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import aiohttp
import asyncpg
from prometheus_client.parser import text_string_to_metric_families

from bench import yardsticks
from bench.database_ceiling import pgbench_path
from bench.load import (
    Intake,
    client_session,
    format_percentiles,
    milliseconds,
    run_intake,
)
from bench.results import run_stamp, write_result
from orderengine.embedded_db import embedded_postgres
from orderengine.settings import Settings
from tests.engine_process import EngineProcess, leftover_postgres
from tests.harness import embedded_scratch_dir, with_database

FINISHED_SAMPLE: Final = "orderengine_orders_finished_total"
POLL_INTERVAL_S: Final = 0.05
PAGE_LIMIT: Final = 200
WORKERS: Final = 50
"""Workers per engine unless `--workers` says otherwise: the end-to-end target is set at 50."""


# ---- options ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    orders: int
    concurrency: int
    workers: int
    timeout_s: float
    keep: bool
    engines: tuple[int, ...] = (1, 2, 3)
    latency_scale: float = 0.0
    yardsticks: bool = True
    intake_clients: tuple[int, ...] = (64, 1)
    pgbench_s: int = 5
    rounds: int = 5


def _counts(text: str) -> tuple[int, ...]:
    """Comma-separated counts, each positive; an empty text asks for none."""
    counts = tuple(positive(part) for part in text.split(",") if part.strip())
    if len(set(counts)) != len(counts):
        raise argparse.ArgumentTypeError(f"{text}: a count is given twice")
    return counts


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive integer")
    return value


def parse_options(argv: Sequence[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m bench.throughput", description=__doc__.splitlines()[0] if __doc__ else ""
    )
    parser.add_argument("-n", "--orders", type=positive, default=2000, help="orders to POST")
    parser.add_argument(
        "-c", "--concurrency", type=positive, default=50, help="concurrent HTTP clients"
    )
    parser.add_argument(
        "-w",
        "--workers",
        type=positive,
        default=WORKERS,
        help=f"workers per engine (ORDERENGINE_CONCURRENCY; default {WORKERS}, as the end-to-end"
        " target is set; the engine ships with 10)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=300.0,
        dest="timeout_s",
        help="seconds to wait for every order to finish, from the first POST",
    )
    parser.add_argument(
        "-e",
        "--engines",
        type=_counts,
        default=(1, 2, 3),
        help="engine counts to measure end to end on one database, comma-separated"
        " (default 1,2,3; an empty list skips it)",
    )
    parser.add_argument(
        "--latency-scale",
        type=float,
        default=0.0,
        help="the engines' simulated latency (ORDERENGINE_LATENCY_SCALE; default 0, none):"
        " with swaps that take time, the workers rather than the database set the pace",
    )
    parser.add_argument(
        "--no-yardsticks",
        action="store_false",
        dest="yardsticks",
        help="skip the yardsticks: the straightforward server, the HTTP ceiling and pgbench",
    )
    parser.add_argument(
        "--intake-clients",
        type=_counts,
        default=(64, 1),
        help="client counts at which the engine's intake is compared with the yardsticks',"
        " comma-separated (default 64,1)",
    )
    parser.add_argument(
        "--pgbench-seconds",
        type=positive,
        default=5,
        dest="pgbench_s",
        help="seconds each pgbench run of the yardsticks lasts (default 5)",
    )
    parser.add_argument(
        "--rounds",
        type=positive,
        default=5,
        help="rounds of the engine beside its yardsticks; each ratio is the rounds' median"
        " (default 5)",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the temporary directory (database and log)"
    )
    args = parser.parse_args(argv)
    if args.latency_scale < 0:
        parser.error("--latency-scale must not be negative")
    if args.yardsticks and not args.intake_clients:
        parser.error("--intake-clients needs a count, unless --no-yardsticks")
    return Options(
        args.orders,
        args.concurrency,
        args.workers,
        args.timeout_s,
        args.keep,
        args.engines,
        args.latency_scale,
        args.yardsticks,
        args.intake_clients,
        args.pgbench_s,
        args.rounds,
    )


# ---- the engine process -------------------------------------------------------------------


def engine_settings(options: Options) -> dict[str, Any]:
    """No simulated failures, no pacing, a backlog that holds every order; latency if asked."""
    return {
        "latency_scale": options.latency_scale,
        "failure_rate": 0,
        "rate_per_minute": 10_000_000,
        "rate_burst": 100_000,
        "queue_limit": 100_000,
        "log_level": "warning",
        "concurrency": options.workers,
    }


def print_log_tail(engine: EngineProcess) -> None:
    tail = engine.log()
    if tail:
        print("--- last lines of the engine's log ---", file=sys.stderr)
        print(tail, file=sys.stderr)


@dataclass(frozen=True)
class Usage:
    """What the engine process used over its whole life, start-up included."""

    peak_rss_kib: int | None
    cpu_s: float | None
    run_cpu_s: float | None = None
    """Of `cpu_s`, what the measured run used, from its first POST to its end: start-up is
    about a second of CPU, which would blur comparisons of a few per cent."""


def process_usage(pid: int) -> Usage:
    """Peak resident set (VmHWM) and user + system CPU time of a live process."""
    return Usage(_peak_rss_kib(pid), _cpu_s(pid))


def _peak_rss_kib(pid: int) -> int | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return None


def _cpu_s(pid: int) -> float | None:
    """CPU seconds used so far, user and system: utime + stime from /proc/PID/stat.

    They are fields 14 and 15, counted here from after the command name, which is in
    parentheses and may itself contain spaces.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()
    ticks = int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


# ---- measurements -------------------------------------------------------------------------


@dataclass(frozen=True)
class EndToEnd:
    elapsed_s: float
    finished: Counter[str]
    complete: bool


async def finished_counts(session: aiohttp.ClientSession) -> Counter[str]:
    """Orders that reached a terminal status so far, by status, from `/metrics`."""
    async with session.get("/metrics") as reply:
        reply.raise_for_status()
        text = await reply.text()
    counts: Counter[str] = Counter()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == FINISHED_SAMPLE:
                counts[sample.labels["status"]] += int(sample.value)
    return counts


async def wait_finished(
    session: aiohttp.ClientSession, baseline: Counter[str], expected: int, deadline: float
) -> tuple[float, Counter[str]]:
    """Poll until `expected` orders finished since `baseline` or the deadline passes.

    Returns the `perf_counter` time of the last poll and the counts it saw.
    """
    finished: Counter[str] = Counter()
    while time.perf_counter() < deadline:
        finished = await finished_counts(session) - baseline
        if finished.total() >= expected:
            break
        await asyncio.sleep(POLL_INTERVAL_S)
    return time.perf_counter(), finished


async def order_latencies(session: aiohttp.ClientSession, pages: int) -> list[float]:
    """Seconds from acceptance to the last status change of every terminal stored order.

    Reads at most `pages` pages of `GET /api/orders`, following the cursor.
    """
    latencies: list[float] = []
    cursor: str | None = None
    for _ in range(pages):
        params = {"limit": str(PAGE_LIMIT), **({"cursor": cursor} if cursor else {})}
        async with session.get("/api/orders", params=params) as reply:
            reply.raise_for_status()
            page: dict[str, Any] = await reply.json()
        latencies.extend(
            (_instant(order["updatedAt"]) - _instant(order["createdAt"])).total_seconds()
            for order in page["orders"]
            if order["status"] in ("confirmed", "failed")
        )
        cursor = page["nextCursor"]
        if cursor is None:
            break
    return latencies


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text)


@dataclass(frozen=True)
class Results:
    intake: Intake
    end_to_end: EndToEnd
    order_latencies_s: list[float]


async def measure(base_url: str, options: Options) -> Results:
    """Both phases against a running engine, through one connection pool of C connections."""
    async with client_session(base_url, options.concurrency) as session:
        baseline = await finished_counts(session)
        began = time.perf_counter()
        intake = await run_intake([session], options.orders, options.concurrency)
        ended, finished = await wait_finished(
            session, baseline, intake.accepted, began + options.timeout_s
        )
        end_to_end = EndToEnd(ended - began, finished, finished.total() >= intake.accepted)
        pages = options.orders // PAGE_LIMIT + 2
        return Results(intake, end_to_end, await order_latencies(session, pages))


# ---- several engines on one database ------------------------------------------------------

FINISHED_ORDERS: Final = "SELECT count(*) FROM orders WHERE status IN ('confirmed', 'failed')"
WAITS_SAMPLE_S: Final = 0.01
ACTIVE_BACKENDS: Final = """
    SELECT coalesce(wait_event_type || ': ' || wait_event, 'running') AS what, count(*) AS n
    FROM pg_stat_activity
    WHERE state = 'active' AND backend_type = 'client backend' AND pid <> pg_backend_pid()
    GROUP BY 1
"""
"""What each backend busy with a statement is doing: running (on a core, or waiting for
one), or waiting, and for what (a lock, the WAL, the client ...)."""


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat that follow the command name (field 3 comes first)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rpartition(")")[2].split()


def postgres_cpu_s(postmaster: int) -> float:
    """CPU seconds the PostgreSQL server has used so far, every process of it.

    The postmaster's own time, that of its live children (backends and background
    processes), and that of the children it has waited for (cutime + cstime), so a backend
    that ends during a run still counts, and the sum only grows.
    """
    fields = _stat(postmaster)
    if fields is None:
        return 0.0
    ticks = sum(int(fields[i]) for i in (11, 12, 13, 14))
    for entry in Path("/proc").iterdir():
        child = _stat(int(entry.name)) if entry.name.isdigit() else None
        if child is not None and int(child[1]) == postmaster:
            ticks += int(child[11]) + int(child[12])
    return ticks / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Cpu:
    """CPU seconds, user + system: the engine processes, PostgreSQL, the benchmark itself."""

    engines_s: float
    postgres_s: float
    clients_s: float

    def __sub__(self, other: Cpu) -> Cpu:
        return Cpu(
            self.engines_s - other.engines_s,
            self.postgres_s - other.postgres_s,
            self.clients_s - other.clients_s,
        )

    @property
    def total_s(self) -> float:
        return self.engines_s + self.postgres_s + self.clients_s


def cpu_now(engines: Sequence[EngineProcess], postmaster: int) -> Cpu:
    return Cpu(
        sum(_cpu_s(engine.pid) or 0.0 for engine in engines),
        postgres_cpu_s(postmaster),
        time.process_time(),
    )


@dataclass(frozen=True)
class ClusterRun:
    """One count of engines: from the first POST until every accepted order was terminal."""

    engines: int
    intake: Intake
    elapsed_s: float
    finished: int
    cpu: Cpu
    """Used between the first POST and the last poll."""
    waits: Counter[str]
    """Backends busy with a statement, summed over `samples` readings, by what they did."""
    samples: int

    def busy_backends(self) -> str:
        """What the backends were doing, on average over the run: the three most common."""
        if not self.samples:
            return "n/a"
        common = self.waits.most_common(3)
        shown = ", ".join(f"{what} {count / self.samples:.1f}" for what, count in common)
        return f"{self.waits.total() / self.samples:.1f} ({shown})"

    @property
    def complete(self) -> bool:
        return self.finished >= self.intake.accepted


async def measure_cluster(
    database_url: str, engines: Sequence[EngineProcess], options: Options, postmaster: int
) -> ClusterRun:
    """POST through every engine at once, then poll the database until all are terminal."""
    per_engine = -(-options.concurrency // len(engines))
    async with contextlib.AsyncExitStack() as stack:
        sessions = [
            await stack.enter_async_context(client_session(engine.url, per_engine))
            for engine in engines
        ]
        database = await stack.enter_async_context(_connected(database_url))
        observer = await stack.enter_async_context(_connected(database_url))
        waits: Counter[str] = Counter()
        samples = 0

        async def sample() -> None:
            nonlocal samples
            while True:
                for row in await observer.fetch(ACTIVE_BACKENDS):
                    waits[row["what"]] += row["n"]
                samples += 1
                await asyncio.sleep(WAITS_SAMPLE_S)

        before = cpu_now(engines, postmaster)
        began = time.perf_counter()
        sampler = asyncio.create_task(sample())
        try:
            intake = await run_intake(sessions, options.orders, options.concurrency)
            finished = 0
            while time.perf_counter() < began + options.timeout_s:
                finished = await database.fetchval(FINISHED_ORDERS)
                if finished >= intake.accepted:
                    break
                await asyncio.sleep(POLL_INTERVAL_S)
        finally:
            sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler
        elapsed = time.perf_counter() - began
        used = cpu_now(engines, postmaster) - before
    return ClusterRun(len(engines), intake, elapsed, finished, used, waits, samples)


@contextlib.asynccontextmanager
async def _connected(database_url: str) -> AsyncIterator[asyncpg.Connection[asyncpg.Record]]:
    connection: asyncpg.Connection[asyncpg.Record] = await asyncpg.connect(database_url)
    try:
        yield connection
    finally:
        await connection.close()


async def run_cluster(
    server_url: str, postmaster: int, workdir: Path, options: Options
) -> list[ClusterRun]:
    """For each count of engines: a fresh database, the engines on it, the measure, stop."""
    runs = []
    for count in options.engines:
        name = f"bench_{count}_engines"
        async with _connected(server_url) as admin:
            await admin.execute(f"CREATE DATABASE {name}")
        database_url = with_database(server_url, name)
        settings = {**engine_settings(options), "keypair": workdir / "keypair.json"}
        engines = [
            EngineProcess(database_url, workdir / name / f"engine-{n}", **settings)
            for n in range(1, count + 1)
        ]
        print(f"{count} engine(s) on one database ...", flush=True)
        try:
            await asyncio.gather(*(engine.start() for engine in engines))
            runs.append(await measure_cluster(database_url, engines, options, postmaster))
        except (aiohttp.ClientError, TimeoutError):
            for engine in engines:
                print_log_tail(engine)
            raise
        finally:
            await asyncio.gather(*(engine.stop() for engine in engines))
    return runs


def measure_several(workdir: Path, options: Options) -> list[ClusterRun]:
    """The runs of `run_cluster` on an embedded PostgreSQL that the benchmark starts."""
    data_dir = workdir / "shared-postgres"
    with embedded_postgres(data_dir) as server_url:
        postmaster = leftover_postgres(data_dir.resolve())
        assert postmaster is not None, "the embedded server runs"
        return asyncio.run(run_cluster(server_url, postmaster, workdir, options))


def cluster_table(runs: Sequence[ClusterRun], options: Options) -> str:
    """One line per count of engines, and where the CPU went (in cores: seconds per second)."""
    cores = len(os.sched_getaffinity(0))
    header = (
        "engines",
        "accepted/s",
        "executed/s",
        "engines CPU",
        "PostgreSQL CPU",
        "clients CPU",
        "engines ms/order",
        "PostgreSQL ms/order",
    )
    rows = [header]
    for run in runs:
        done = "" if run.complete else f" (INCOMPLETE: {run.finished} of {run.intake.accepted})"
        per_order = max(run.finished, 1)
        rows.append(
            (
                str(run.engines),
                f"{run.intake.accepted / run.intake.elapsed_s:.0f}",
                f"{run.finished / run.elapsed_s:.1f}{done}",
                f"{run.cpu.engines_s / run.elapsed_s:.2f} cores",
                f"{run.cpu.postgres_s / run.elapsed_s:.2f} cores",
                f"{run.cpu.clients_s / run.elapsed_s:.2f} cores",
                f"{run.cpu.engines_s / per_order * 1000:.2f}",
                f"{run.cpu.postgres_s / per_order * 1000:.2f}",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(f"{cell:<{widths[i]}}" for i, cell in enumerate(row)) for row in rows]
    lines.insert(1, "-" * len(lines[0]))
    lines.append("PostgreSQL backends busy with a statement, on average (the most common states):")
    lines.extend(f"  {run.engines} engine(s): {run.busy_backends()}" for run in runs)
    busiest = max(runs, key=lambda run: run.cpu.total_s / run.elapsed_s)
    lines.append(
        f"{options.orders} orders, {options.concurrency} clients spread over the engines, one"
        f" PostgreSQL; {cores} cores in all. At most {busiest.cpu.total_s / busiest.elapsed_s:.2f}"
        f" of them busy ({busiest.engines} engine(s)): engines, PostgreSQL and clients together."
    )
    return "\n".join(lines)


# ---- report -------------------------------------------------------------------------------


def rate(count: int, seconds: float) -> str:
    return f"{count / seconds:.1f} orders/s" if seconds > 0 else "n/a"


def machine_rows(options: Options, load: tuple[float, float, float]) -> list[tuple[str, str, str]]:
    """The machine and the run's settings, with `load`, the load average before the run."""
    return [
        ("machine", "nproc", str(len(os.sched_getaffinity(0)))),
        ("machine", "platform", platform.platform()),
        ("machine", "python", f"{platform.python_implementation()} {platform.python_version()}"),
        ("machine", "load average before the run", " / ".join(f"{n:.2f}" for n in load)),
        ("run", "orders / clients", f"{options.orders} / {options.concurrency}"),
        ("run", "engine workers", str(options.workers)),
        ("run", "simulated latency scale", f"{options.latency_scale:g}"),
    ]


def result_rows(results: Results, usage: Usage) -> list[tuple[str, str, str]]:
    intake, end_to_end = results.intake, results.end_to_end
    statuses = ", ".join(f"{k}: {v}" for k, v in sorted(intake.statuses.items()))
    finished = ", ".join(f"{k}: {v}" for k, v in sorted(end_to_end.finished.items())) or "none"
    done = end_to_end.finished.total()
    incomplete = "" if end_to_end.complete else f" (INCOMPLETE: {done} of {intake.accepted})"
    return [
        ("intake", "responses", statuses),
        ("intake", "wall time", f"{intake.elapsed_s:.2f} s"),
        ("intake", "accepted throughput", rate(intake.accepted, intake.elapsed_s)),
        ("intake", "POST latency p50/p95/p99", format_percentiles(intake.latencies_s, 1000, "ms")),
        ("end to end", "finished", finished + incomplete),
        ("end to end", "wall time (first POST to last)", f"{end_to_end.elapsed_s:.2f} s"),
        ("end to end", "completed throughput", rate(done, end_to_end.elapsed_s)),
        (
            "end to end",
            "order latency p50/p95/p99",
            format_percentiles(results.order_latencies_s, 1000, "ms"),
        ),
        ("engine", "peak RSS (VmHWM)", mib(usage.peak_rss_kib)),
        ("engine", "CPU time, user + system", _cpu(usage.cpu_s, intake.accepted)),
        ("engine", "CPU time over the run alone", _cpu(usage.run_cpu_s, intake.accepted)),
    ]


def mib(kib: int | None) -> str:
    return "n/a" if kib is None else f"{kib / 1024:.1f} MiB"


def _cpu(seconds: float | None, orders: int) -> str:
    if seconds is None:
        return "n/a"
    per_order = f" ({seconds / orders * 1000:.2f} ms per order)" if orders else ""
    return f"{seconds:.2f} s{per_order}"


def render(rows: Sequence[tuple[str, str, str]]) -> str:
    header = ("phase", "metric", "value")
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(2)]
    lines = [f"{a:<{widths[0]}}  {b:<{widths[1]}}  {c}" for a, b, c in (header, *rows)]
    lines.insert(1, "-" * max(len(line) for line in lines))
    return "\n".join(lines)


# ---- the engine beside its yardsticks ----------------------------------------------------


def compare(workdir: Path, options: Options) -> yardsticks.Comparison:
    """The engine beside its yardsticks in rounds, on one embedded PostgreSQL started here.

    pgbench's accept.sql first; then, with every server running (the engine paced, the
    engine unpaced, the straightforward server and the HTTP ceiling, each on a fresh database),
    `options.rounds` rounds of `yardsticks.measure_round`.
    """
    data_dir = (workdir / "yardsticks-postgres").resolve()
    for number in range(options.rounds):
        round_logs(workdir, number).mkdir(parents=True)
    with embedded_postgres(data_dir) as server_url:
        return asyncio.run(_compare(server_url, pgbench_path(data_dir), workdir, options))


def round_logs(workdir: Path, number: int) -> Path:
    """Where pgbench's logs of round `number` (from 0) go; those of accept.sql, its parent."""
    return workdir / "yardsticks" / "pgbench" / f"round-{number + 1}"


async def _compare(
    server_url: str, pgbench: Path, workdir: Path, options: Options
) -> yardsticks.Comparison:
    """`compare` on the server at `server_url`, with the `pgbench` program.

    Intake is measured on the engine as it ships: its workers paced by the default rate
    limit (100 attempts a minute), so that what is measured is accepting orders, as the
    yardsticks' servers do, not executing them meanwhile. End to end, a second engine runs
    unpaced, as in `measure`, at the busiest client count.
    """
    plan = yardsticks.Plan(
        options.orders, options.intake_clients, options.pgbench_s, options.rounds
    )
    logs = workdir / "yardsticks"
    postgres, accept, pgbench_database = await yardsticks.database_ceiling(
        server_url, pgbench, plan, logs / "pgbench"
    )
    paced = {
        **engine_settings(options),
        **{name: Settings.model_fields[name].default for name in ("rate_per_minute", "rate_burst")},
    }
    busiest = max(options.intake_clients)
    async with (
        _engine(server_url, logs / "engine-intake", "yardstick_intake", paced) as intake_url,
        _engine(
            server_url, logs / "engine-executed", "yardstick_engine", engine_settings(options)
        ) as executed_url,
        yardsticks.yardstick_servers(server_url, logs, plan) as (straightforward, ceiling),
    ):
        urls = {
            yardsticks.ENGINE: intake_url,
            yardsticks.STRAIGHTFORWARD: straightforward,
            yardsticks.HTTP_CEILING: ceiling,
        }

        async def executed() -> tuple[float, bool]:
            results = await measure(executed_url, replace(options, concurrency=busiest))
            end_to_end = results.end_to_end
            per_s = end_to_end.finished.total() / end_to_end.elapsed_s
            return per_s, _complete(results, options.orders)

        rounds = [
            await yardsticks.measure_round(
                number,
                urls,
                executed,
                (pgbench, pgbench_database),
                plan,
                round_logs(workdir, number),
            )
            for number in range(options.rounds)
        ]
    return yardsticks.Comparison(postgres, accept, rounds, busiest)


@contextlib.asynccontextmanager
async def _engine(
    server_url: str, log_dir: Path, database: str, settings: dict[str, Any]
) -> AsyncIterator[str]:
    """An engine on a fresh database of the yardsticks' server, until the block ends; its URL."""
    database_url = await yardsticks.fresh_database(server_url, database, None)
    engine = EngineProcess(database_url, log_dir, **settings)
    try:
        await engine.start()
        yield engine.url
    except (aiohttp.ClientError, TimeoutError):
        print_log_tail(engine)
        raise
    finally:
        await engine.stop()


def report_yardsticks(
    workdir: Path, options: Options, load: tuple[float, float, float], stamp: str
) -> bool:
    """Measure and print the comparison, write its JSON file; whether it was complete."""
    comparison = compare(workdir, options)
    machine = yardsticks.machine_line(comparison.postgres, load)
    print("\n".join(yardsticks.report_lines(comparison, machine)))
    path = write_result(stamp, "yardsticks", yardsticks.summary(comparison, machine))
    print(f"wrote {path}", flush=True)
    return comparison.complete(options.orders)


# ---- results files ------------------------------------------------------------------------


def engine_summary(
    rows: Sequence[tuple[str, str, str]], results: Results, usage: Usage, runs: Sequence[ClusterRun]
) -> dict[str, Any]:
    """The figures printed above, for a JSON file: `rows` are the machine's and the run's."""
    executed = results.end_to_end
    return {
        "run": {metric: value for _, metric, value in rows},
        "one_engine": {
            "intake": results.intake.summary(),
            "executed": {
                "finished": dict(sorted(executed.finished.items())),
                "complete": executed.complete,
                "wall_s": round(executed.elapsed_s, 3),
                "orders_per_s": round(executed.finished.total() / executed.elapsed_s, 1),
            },
            "order_latency_ms": milliseconds(results.order_latencies_s),
            "peak_rss_kib": usage.peak_rss_kib,
            "cpu_s": usage.cpu_s,
            "run_cpu_s": usage.run_cpu_s,
        },
        "engines_on_one_database": [cluster_summary(run) for run in runs],
    }


def cluster_summary(run: ClusterRun) -> dict[str, Any]:
    samples = max(run.samples, 1)
    return {
        "engines": run.engines,
        "intake": run.intake.summary(),
        "finished": run.finished,
        "complete": run.complete,
        "wall_s": round(run.elapsed_s, 3),
        "executed_per_s": round(run.finished / run.elapsed_s, 1),
        "cpu_s": {
            "engines": round(run.cpu.engines_s, 3),
            "postgres": round(run.cpu.postgres_s, 3),
            "clients": round(run.cpu.clients_s, 3),
        },
        "busy_backends": {what: round(n / samples, 2) for what, n in run.waits.most_common()},
    }


# ---- entry point --------------------------------------------------------------------------


async def run_engine(workdir: Path, options: Options) -> tuple[Results, Usage]:
    """Start the engine on a fresh embedded database in `workdir`, measure it, stop it.

    A failed request shows the end of the engine's log; a failed start says it already.
    """
    engine = EngineProcess(workdir / "postgres", workdir, **engine_settings(options))
    try:
        await engine.start()
        before = _cpu_s(engine.pid)
        results = await measure(engine.url, options)
        usage = process_usage(engine.pid)
        run_cpu_s = None if before is None or usage.cpu_s is None else usage.cpu_s - before
        return results, replace(usage, run_cpu_s=run_cpu_s)
    except (aiohttp.ClientError, TimeoutError):
        print_log_tail(engine)
        raise
    finally:
        await engine.stop()


def run(options: Options) -> int:
    """Run the benchmark and print its figures; 1 if an order was refused or did not finish.

    Each part writes its figures to bench/results/ as it ends: the engine's, then the
    yardsticks' (unless skipped).
    """
    load = os.getloadavg()
    stamp = run_stamp()
    print(f"starting the engine; {options.orders} orders, {options.concurrency} clients ...")
    workdir = embedded_scratch_dir("oe-bench-")
    runs: list[ClusterRun] = []
    compared = True
    try:
        results, usage = asyncio.run(run_engine(workdir, options))
        rows = machine_rows(options, load)
        print(render([*rows, *result_rows(results, usage)]), flush=True)
        if options.engines:
            print()
            runs = measure_several(workdir, options)
            print(cluster_table(runs, options))
        path = write_result(stamp, "throughput", engine_summary(rows, results, usage, runs))
        print(f"wrote {path}", flush=True)
        if options.yardsticks:
            print()
            compared = report_yardsticks(workdir, options, load, stamp)
    finally:
        if options.keep:
            print(f"kept {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    complete = _complete(results, options.orders) and compared
    complete = complete and all(
        run.complete and run.intake.accepted == options.orders for run in runs
    )
    return 0 if complete else 1


def _complete(results: Results, orders: int) -> bool:
    """Whether every order was accepted and every accepted order finished."""
    return results.intake.accepted == orders and results.end_to_end.complete


def main(argv: Sequence[str] | None = None) -> None:
    sys.exit(run(parse_options(argv)))


if __name__ == "__main__":
    main()
