"""Throughput benchmark: how fast the engine accepts orders and how fast it finishes them.

`python -m bench.throughput` starts `python -m orderengine` on a free loopback port with a
fresh embedded PostgreSQL, no simulated latency, no simulated failures and no rate limit, so
what is measured is the engine itself: HTTP, the database and the workers.

- intake: N orders are POSTed by C concurrent clients; accepted orders per second and the
  latency of each POST (commit as `pending` included);
- end to end: the time from the first POST until every accepted order is terminal, read from
  the `orderengine_orders_finished_total` counters on `/metrics`, and each order's time from
  acceptance to its terminal status, read from the stored orders;
- engine: the engine process's peak resident set (VmHWM) and CPU time (user + system, start-up
  included); the PostgreSQL server, a separate process, is not included.

The engine is run by tests/engine_process.py, as in the acceptance tests, and always stopped
(SIGTERM, then SIGKILL if it hangs, then any PostgreSQL it left running); its temporary
directory under /tmp is removed unless --keep is given.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import statistics
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from orderengine.settings import Settings
from tests.engine_process import EngineProcess
from tests.harness import embedded_scratch_dir
from tests.streams import MARKET

FINISHED_SAMPLE: Final = "orderengine_orders_finished_total"
POLL_INTERVAL_S: Final = 0.05
REQUEST_TIMEOUT_S: Final = 30.0
PAGE_LIMIT: Final = 200
PERCENTILES: Final = (50, 95, 99)


# ---- options ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    orders: int
    concurrency: int
    workers: int | None
    timeout_s: float
    keep: bool


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive integer")
    return value


def parse_options(argv: Sequence[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m bench.throughput", description=__doc__.splitlines()[0] if __doc__ else ""
    )
    parser.add_argument("-n", "--orders", type=_positive, default=2000, help="orders to POST")
    parser.add_argument(
        "-c", "--concurrency", type=_positive, default=50, help="concurrent HTTP clients"
    )
    parser.add_argument(
        "-w",
        "--workers",
        type=_positive,
        default=None,
        help="engine workers (ORDERENGINE_CONCURRENCY); the engine's default if omitted",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=300.0,
        dest="timeout_s",
        help="seconds to wait for every order to finish, from the first POST",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the temporary directory (database and log)"
    )
    args = parser.parse_args(argv)
    return Options(args.orders, args.concurrency, args.workers, args.timeout_s, args.keep)


# ---- the engine process -------------------------------------------------------------------


def engine_settings(options: Options) -> dict[str, Any]:
    """No simulated latency or failures, no pacing, a backlog that holds every order."""
    return {
        "latency_scale": 0,
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
class Intake:
    elapsed_s: float
    latencies_s: list[float]
    statuses: Counter[str]

    @property
    def accepted(self) -> int:
        return self.statuses["201"]


@dataclass(frozen=True)
class EndToEnd:
    elapsed_s: float
    finished: Counter[str]
    complete: bool


async def post_order(session: aiohttp.ClientSession) -> str:
    """POST one order; its HTTP status, or the name of the error if there was no answer."""
    try:
        async with session.post("/api/orders/execute", json=MARKET) as reply:
            await reply.read()
            return str(reply.status)
    except (aiohttp.ClientError, TimeoutError) as error:
        return type(error).__name__


async def run_intake(session: aiohttp.ClientSession, orders: int, concurrency: int) -> Intake:
    """POST `orders` orders from `concurrency` clients drawing from one shared iterator."""
    tickets = iter(range(orders))
    latencies: list[float] = []
    statuses: Counter[str] = Counter()

    async def client() -> None:
        for _ in tickets:
            began = time.perf_counter()
            status = await post_order(session)
            latencies.append(time.perf_counter() - began)
            statuses[status] += 1

    began = time.perf_counter()
    async with asyncio.TaskGroup() as group:
        for _ in range(min(concurrency, orders)):
            group.create_task(client())
    return Intake(time.perf_counter() - began, latencies, statuses)


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
    connector = aiohttp.TCPConnector(limit=options.concurrency)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    async with aiohttp.ClientSession(
        base_url=base_url, connector=connector, timeout=timeout
    ) as session:
        baseline = await finished_counts(session)
        began = time.perf_counter()
        intake = await run_intake(session, options.orders, options.concurrency)
        ended, finished = await wait_finished(
            session, baseline, intake.accepted, began + options.timeout_s
        )
        end_to_end = EndToEnd(ended - began, finished, finished.total() >= intake.accepted)
        pages = options.orders // PAGE_LIMIT + 2
        return Results(intake, end_to_end, await order_latencies(session, pages))


# ---- report -------------------------------------------------------------------------------


def percentiles(values: Sequence[float]) -> dict[int, float] | None:
    """p50, p95 and p99 (inclusive method: within the observed range), None if empty."""
    if not values:
        return None
    if len(values) == 1:
        return dict.fromkeys(PERCENTILES, values[0])
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return {p: cuts[p - 1] for p in PERCENTILES}


def format_percentiles(values: Sequence[float], scale: float, unit: str) -> str:
    found = percentiles(values)
    if found is None:
        return "n/a"
    return " / ".join(f"{found[p] * scale:.1f}" for p in PERCENTILES) + f" {unit}"


def rate(count: int, seconds: float) -> str:
    return f"{count / seconds:.1f} orders/s" if seconds > 0 else "n/a"


def machine_rows(options: Options) -> list[tuple[str, str, str]]:
    workers = options.workers or Settings.model_fields["concurrency"].default
    return [
        ("machine", "nproc", str(len(os.sched_getaffinity(0)))),
        ("machine", "platform", platform.platform()),
        ("machine", "python", f"{platform.python_implementation()} {platform.python_version()}"),
        ("run", "orders / clients", f"{options.orders} / {options.concurrency}"),
        ("run", "engine workers", str(workers)),
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
        ("engine", "peak RSS (VmHWM)", _mib(usage.peak_rss_kib)),
        ("engine", "CPU time, user + system", _cpu(usage.cpu_s, intake.accepted)),
    ]


def _mib(kib: int | None) -> str:
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


# ---- entry point --------------------------------------------------------------------------


async def run_engine(workdir: Path, options: Options) -> tuple[Results, Usage]:
    """Start the engine on a fresh embedded database in `workdir`, measure it, stop it.

    A failed request shows the end of the engine's log; a failed start says it already.
    """
    engine = EngineProcess(workdir / "postgres", workdir, **engine_settings(options))
    try:
        await engine.start()
        results = await measure(engine.url, options)
        return results, process_usage(engine.pid)
    except (aiohttp.ClientError, TimeoutError):
        print_log_tail(engine)
        raise
    finally:
        await engine.stop()


def run(options: Options) -> int:
    """Run the benchmark and print its table; 1 if an order was refused or did not finish."""
    print(f"starting the engine; {options.orders} orders, {options.concurrency} clients ...")
    workdir = embedded_scratch_dir("oe-bench-")
    try:
        results, usage = asyncio.run(run_engine(workdir, options))
    finally:
        if options.keep:
            print(f"kept {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print(render([*machine_rows(options), *result_rows(results, usage)]))
    intake = results.intake
    return 0 if intake.accepted == options.orders and results.end_to_end.complete else 1


def main(argv: Sequence[str] | None = None) -> None:
    sys.exit(run(parse_options(argv)))


if __name__ == "__main__":
    main()
