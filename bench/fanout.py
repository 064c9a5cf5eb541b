"""Fan-out benchmark: how soon an event reaches the sockets that follow its order, and the feed.

`python -m bench.fanout` starts `python -m orderengine` on a fresh embedded PostgreSQL with
the simulated latency as shipped (swaps of 2 to 3 s, so an order's events are spread over
seconds and the sockets follow them live), no simulated failures, no rate limit, 50 workers
and a backlog that holds every order. Then:

- M orders (200 by default) are POSTed by a few clients, and as soon as each is accepted
  S / M sockets (S = 1000 by default, so 5 per order) open on its stream,
  `GET /api/orders/execute?orderId=ID`, and read it until the engine closes it after the
  terminal event;
- F sockets (10 by default) follow the feed of all orders, `GET /api/events?after=0`, until
  each has seen every order end.

The latency of an event at a socket is the wall time at which the client read it
(`time.time()`) less the event's `at`: the database's clock (this machine's) when the
statement that wrote it ran, just before its commit. So it is the commit, the fan-out and the
client's read together: an upper bound on commit-to-receipt. Only events written after the
socket opened are counted; those it replays from the store on opening (an order's `pending`,
say, written before its sockets opened) are counted apart, as replayed.

Each kind's latencies are also given in two parts, split at the moment the last order socket
opened: the events written while sockets were still opening, when their handshakes compete
with the events for the engine's one core (the line says how long that lasted), and those
written once every socket was open, the steady state of a thousand followers.

The clients run in K processes of their own (2 by default), each with its share of the orders,
their sockets and the feeds, on uvloop as the engine is. On two cores the clients compete with
the engine for the CPU, and a client loop busy with many sockets reads late and adds its own
delay to every latency. Measured on the project's 2-core machine (one run each, the machine
busy with other work), the clients used 0.06 to 0.07 of a core either way, so one process is
not client-bound at these sizes; two gave the lower tail at the order sockets (p99 38 against
50 ms) and keep each loop's share of the sockets smaller, so two is the default
(`--client-processes 1` to compare). The CPU each side used (engine, PostgreSQL, clients) is
reported beside the latencies, so that the clients' share is in plain sight.

Before starting anything the benchmark raises its open-file limit to the hard limit: the
engine and the client processes inherit it, and the engine caps its connections by it
(`ORDERENGINE_MAX_CONNECTIONS` unset). The figures are printed one line per kind of socket
and written as JSON under bench/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import queue
import resource
import shutil
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any, Final

import aiohttp
import uvloop

from bench.load import ORDER_PATH, client_session, format_percentiles, milliseconds
from bench.memory import resident
from bench.results import run_stamp, write_result
from bench.throughput import mib, positive, postgres_cpu_s, print_log_tail, process_usage
from tests.engine_process import EngineProcess, leftover_postgres
from tests.harness import embedded_scratch_dir
from tests.streams import MARKET

FEED_PATH: Final = "/api/events?after=0"
TERMINAL: Final = frozenset({"confirmed", "failed"})
READY_LIMIT_S: Final = 60.0
"""How long the client processes may take to start (import) before the run gives up."""


# ---- options ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    orders: int
    sockets: int
    feeds: int
    client_processes: int
    posters: int
    workers: int
    timeout_s: float
    keep: bool


def parse_options(argv: Sequence[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m bench.fanout", description=__doc__.splitlines()[0] if __doc__ else ""
    )
    parser.add_argument("-n", "--orders", type=positive, default=200, help="orders to POST")
    parser.add_argument(
        "-s", "--sockets", type=positive, default=1000, help="order sockets in all (default 1000)"
    )
    parser.add_argument(
        "-f", "--feeds", type=int, default=10, help="sockets on the feed of all orders"
    )
    parser.add_argument(
        "-k",
        "--client-processes",
        type=positive,
        default=2,
        help="client processes to spread the orders and sockets over (default 2)",
    )
    parser.add_argument(
        "-p", "--posters", type=positive, default=8, help="clients POSTing orders, in all"
    )
    parser.add_argument(
        "-w", "--workers", type=positive, default=50, help="engine workers (default 50)"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=120.0,
        dest="timeout_s",
        help="seconds each client process may take, from its first POST",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the temporary directory (database and log)"
    )
    args = parser.parse_args(argv)
    if args.sockets < args.orders:
        parser.error("--sockets must be at least --orders: each order has a socket")
    if args.feeds < 0:
        parser.error("--feeds must not be negative")
    return Options(
        args.orders,
        args.sockets,
        args.feeds,
        args.client_processes,
        args.posters,
        args.workers,
        args.timeout_s,
        args.keep,
    )


def engine_settings(options: Options) -> dict[str, Any]:
    """Latency as shipped, no failures, no pacing, a backlog that holds every order."""
    return {
        "latency_scale": 1,
        "failure_rate": 0,
        "rate_per_minute": 10_000_000,
        "rate_burst": 100_000,
        "queue_limit": 100_000,
        "concurrency": options.workers,
        "log_level": "warning",
    }


def raise_descriptor_limit() -> int:
    """Raise this process's open-file limit to its hard limit; the new soft limit.

    The engine and the client processes, started from here, inherit it.
    """
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


# ---- one client process -------------------------------------------------------------------


@dataclass(frozen=True)
class Part:
    """What one client process does: its orders, their sockets, and its feeds."""

    url: str
    orders: int
    sockets: tuple[int, ...]
    """Sockets per order, one count for each of its orders."""
    feeds: int
    expected_orders: int
    """Orders in the whole run: a feed reads until it has seen each end."""
    posters: int
    timeout_s: float

    @property
    def connections(self) -> int:
        return sum(self.sockets) + self.feeds + self.posters


def plan_parts(url: str, options: Options) -> list[Part]:
    """Split the orders, their sockets, the feeds and the posters evenly over the processes."""
    per_order = _shares(options.sockets, options.orders)
    orders = _shares(options.orders, options.client_processes)
    feeds = _shares(options.feeds, options.client_processes)
    posters = _shares(max(options.posters, options.client_processes), options.client_processes)
    parts = []
    first = 0
    for index, count in enumerate(orders):
        sockets = tuple(per_order[first : first + count])
        first += count
        parts.append(
            Part(
                url, count, sockets, feeds[index], options.orders, posters[index], options.timeout_s
            )
        )
    return parts


def _shares(total: int, ways: int) -> list[int]:
    """`total` in `ways` whole shares that differ by one at most: 10 in 3 is 4, 3, 3."""
    return [total // ways + (1 if n < total % ways else 0) for n in range(ways)]


@dataclass
class Receipts:
    """What one socket read: each message with the wall time it was read at."""

    opened_at: float | None = None
    received: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    ended: str = "open"
    """`closed CODE` by the engine, `read` by the client once it had what it wanted, the
    client's error, or `open` when the run's time ran out first."""


async def follow(
    session: aiohttp.ClientSession, path: str, receipts: Receipts, ends: int | None = None
) -> None:
    """Read a socket until the engine closes it, or until `ends` orders ended on it.

    The time is taken first, before the message is parsed, so parsing is not counted.
    """
    try:
        async with session.ws_connect(path) as ws:
            receipts.opened_at = time.time()
            ended = 0
            async for message in ws:
                now = time.time()
                event = json.loads(message.data)
                receipts.received.append((now, event))
                ended += event.get("status") in TERMINAL
                if ends is not None and ended >= ends:
                    receipts.ended = "read"
                    return
            receipts.ended = f"closed {ws.close_code}"
    except aiohttp.ClientError as error:
        receipts.ended = type(error).__name__


@dataclass(frozen=True)
class PartResult:
    """The figures of one client process, as plain data to send back to the main one."""

    statuses: dict[str, int]
    timed_out: bool
    order_sockets: list[dict[str, Any]]
    feeds: list[dict[str, Any]]
    cpu_s: float
    wall_s: float


async def run_part(part: Part) -> PartResult:
    """POST the part's orders, follow each on its sockets and every order on the feeds."""
    began, cpu_began = time.perf_counter(), time.process_time()
    feeds = [Receipts() for _ in range(part.feeds)]
    sockets: list[Receipts] = []
    statuses: Counter[str] = Counter()
    tickets = iter(part.sockets)
    timed_out = False
    async with client_session(part.url, part.connections) as session:
        try:
            async with asyncio.timeout(part.timeout_s), asyncio.TaskGroup() as group:

                async def poster() -> None:
                    for count in tickets:
                        order_id = await submit(session, statuses)
                        for _ in range(count if order_id else 0):
                            sockets.append(Receipts())
                            path = f"{ORDER_PATH}?orderId={order_id}"
                            group.create_task(follow(session, path, sockets[-1]))

                for receipts in feeds:
                    group.create_task(follow(session, FEED_PATH, receipts, part.expected_orders))
                for _ in range(part.posters):
                    group.create_task(poster())
        except TimeoutError:
            timed_out = True
    return PartResult(
        dict(statuses),
        timed_out,
        [socket_figures(receipts) for receipts in sockets],
        [socket_figures(receipts) for receipts in feeds],
        time.process_time() - cpu_began,
        time.perf_counter() - began,
    )


async def submit(session: aiohttp.ClientSession, statuses: Counter[str]) -> str | None:
    """POST one order; its id if accepted. Every answer's status is counted in `statuses`."""
    try:
        async with session.post(ORDER_PATH, json=MARKET) as reply:
            statuses[str(reply.status)] += 1
            if reply.status != 201:
                return None
            body: dict[str, Any] = await reply.json()
            return str(body["orderId"])
    except (aiohttp.ClientError, TimeoutError) as error:
        statuses[type(error).__name__] += 1
        return None


def socket_figures(receipts: Receipts) -> dict[str, Any]:
    """One socket's latencies (seconds) of the events written after it opened, and counts.

    With each latency, when its event was written (`written_at`, epoch seconds), and when the
    socket opened (`opened_at`).
    """
    opened = receipts.opened_at
    latencies, written = [], []
    replayed = 0
    for received_at, event in receipts.received:
        at = datetime.fromisoformat(event["at"]).timestamp() if "at" in event else None
        if opened is None or at is None or at < opened:
            replayed += 1
        else:
            latencies.append(received_at - at)
            written.append(at)
    return {
        "latencies_s": latencies,
        "written_at": written,
        "opened_at": opened,
        "replayed": replayed,
        "ended": receipts.ended,
    }


def client_process(part: Part, ready: Barrier, results: multiprocessing.Queue[Any]) -> None:
    """The body of a client process: wait until every client is ready, run, send the figures.

    The figures travel as a dict: a class of this module pickled in a spawned process is
    named after `__mp_main__`, which the main process cannot import.
    """
    ready.wait(READY_LIMIT_S)
    results.put(asdict(uvloop.run(run_part(part))))


# ---- the run ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Usage:
    """CPU seconds (user + system) over the run, and the engine's resident set after it."""

    wall_s: float
    engine_cpu_s: float
    postgres_cpu_s: float
    clients_cpu_s: float
    rss_kib: int
    peak_rss_kib: int | None


@dataclass(frozen=True)
class Run:
    parts: list[PartResult]
    usage: Usage
    load: tuple[float, float, float]
    """The load average before the engine started: other work on the machine shows here."""


class ClientProcesses:
    """A process per part, started at once and released together once all are ready.

    They are spawned, not forked, so that none inherits the main process's event loop or
    the engine's pipes. Each method blocks: call them from a thread.
    """

    def __init__(self, parts: Sequence[Part]) -> None:
        context = multiprocessing.get_context("spawn")
        self._ready = context.Barrier(len(parts) + 1)
        self._results: multiprocessing.Queue[Any] = context.Queue()
        self._processes = [
            context.Process(target=client_process, args=(part, self._ready, self._results))
            for part in parts
        ]
        for process in self._processes:
            process.start()

    def release(self) -> None:
        """Return once every process is ready (imported), as they all begin."""
        self._ready.wait(READY_LIMIT_S)

    def results(self, timeout_s: float) -> list[PartResult]:
        """Every process's figures, in the order they came."""
        try:
            return [PartResult(**self._results.get(timeout=timeout_s)) for _ in self._processes]
        except queue.Empty:
            raise RuntimeError("a client process sent no figures; see its error above") from None

    def stop(self) -> None:
        for process in self._processes:
            process.join(READY_LIMIT_S)
            if process.is_alive():
                process.kill()


async def measure(engine: EngineProcess, options: Options, load: tuple[float, float, float]) -> Run:
    """Run the client processes against the engine; the engine's and PostgreSQL's CPU meanwhile."""
    assert engine.data_dir is not None, "the engine runs an embedded PostgreSQL"
    postmaster = leftover_postgres(engine.data_dir)
    assert postmaster is not None, "the embedded server runs"
    clients = ClientProcesses(plan_parts(engine.url, options))
    try:
        await asyncio.to_thread(clients.release)
        engine_before = process_usage(engine.pid).cpu_s or 0.0
        postgres_before = postgres_cpu_s(postmaster)
        began = time.perf_counter()
        found = await asyncio.to_thread(clients.results, options.timeout_s + READY_LIMIT_S)
        wall_s = time.perf_counter() - began
    finally:
        await asyncio.to_thread(clients.stop)
    after = process_usage(engine.pid)
    usage = Usage(
        wall_s,
        (after.cpu_s or 0.0) - engine_before,
        postgres_cpu_s(postmaster) - postgres_before,
        sum(part.cpu_s for part in found),
        resident(engine.pid).rss_kib,
        after.peak_rss_kib,
    )
    return Run(found, usage, load)


async def run_engine(workdir: Path, options: Options) -> Run:
    """Start the engine on a fresh embedded database in `workdir`, measure it, stop it."""
    load = os.getloadavg()
    engine = EngineProcess(workdir / "postgres", workdir, **engine_settings(options))
    try:
        await engine.start()
        return await measure(engine, options, load)
    except (aiohttp.ClientError, TimeoutError, RuntimeError):
        print_log_tail(engine)
        raise
    finally:
        await engine.stop()


# ---- report -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Kind:
    """The sockets of one kind (order sockets, or the feed) of every client process.

    `all_open_at` is when the last order socket opened (epoch seconds): events written before
    it reached their sockets while the engine was still answering handshakes, which compete
    with the events for its one core; those written after, once every socket was open.
    """

    name: str
    sockets: list[dict[str, Any]]
    all_open_at: float | None
    opening_s: float | None
    """From the first order socket's opening to the last's."""

    @property
    def latencies_s(self) -> list[float]:
        return [latency for socket in self.sockets for latency in socket["latencies_s"]]

    def written(self, *, while_opening: bool) -> list[float]:
        """The latencies of the events written while sockets were opening, or after."""
        if self.all_open_at is None:
            return [] if while_opening else self.latencies_s
        return [
            latency
            for socket in self.sockets
            for latency, at in zip(socket["latencies_s"], socket["written_at"], strict=True)
            if (at < self.all_open_at) == while_opening
        ]

    @property
    def replayed(self) -> int:
        return sum(socket["replayed"] for socket in self.sockets)

    @property
    def endings(self) -> Counter[str]:
        """How the sockets ended (see `Receipts.ended`), and how many each way."""
        return Counter(str(socket["ended"]) for socket in self.sockets)

    def summary(self) -> dict[str, Any]:
        latencies = self.latencies_s
        return {
            "sockets": len(self.sockets),
            "endings": dict(self.endings),
            "live_events": len(latencies),
            "replayed_events": self.replayed,
            "latency_ms": milliseconds(latencies),
            "max_ms": round(max(latencies) * 1000, 3) if latencies else None,
            "opening_s": self.opening_s,
            "while_opening": self._part(while_opening=True),
            "all_open": self._part(while_opening=False),
        }

    def _part(self, *, while_opening: bool) -> dict[str, Any]:
        latencies = self.written(while_opening=while_opening)
        return {"live_events": len(latencies), "latency_ms": milliseconds(latencies)}

    def line(self) -> str:
        latencies = self.latencies_s
        worst = f"{max(latencies) * 1000:.1f} ms" if latencies else "n/a"
        endings = ", ".join(f"{code}: {n}" for code, n in sorted(self.endings.items()))
        return (
            f"{self.name}: {len(self.sockets)} sockets (ended {endings}), {len(latencies)} live"
            f" events ({self.replayed} replayed, not counted); latency from the event's write"
            f" to its receipt p50/p95/p99 {format_percentiles(latencies, 1000, 'ms')},"
            f" max {worst}\n  {self._split_line()}"
        )

    def _split_line(self) -> str:
        opening = self.written(while_opening=True)
        opened = self.written(while_opening=False)
        return (
            f"written while order sockets were opening ({self.opening_s or 0:.2f} s from the"
            f" first to the last): {len(opening)} events, p50/p95/p99"
            f" {format_percentiles(opening, 1000, 'ms')}; once all were open: {len(opened)}"
            f" events, p50/p95/p99 {format_percentiles(opened, 1000, 'ms')}"
        )


def kinds(run: Run) -> list[Kind]:
    order_sockets = [s for part in run.parts for s in part.order_sockets]
    opened = [s["opened_at"] for s in order_sockets if s["opened_at"] is not None]
    all_open_at = max(opened) if opened else None
    opening_s = max(opened) - min(opened) if opened else None
    return [
        Kind("order sockets", order_sockets, all_open_at, opening_s),
        Kind("feed", [s for part in run.parts for s in part.feeds], all_open_at, opening_s),
    ]


def usage_lines(run: Run, options: Options) -> list[str]:
    usage = run.usage
    statuses: Counter[str] = Counter()
    for part in run.parts:
        statuses.update(part.statuses)
    cores = len(os.sched_getaffinity(0))
    load = " / ".join(f"{n:.2f}" for n in run.load)

    def share(seconds: float) -> str:
        return f"{seconds:.1f} s ({seconds / usage.wall_s:.2f} cores)"

    return [
        f"orders: {dict(sorted(statuses.items()))} answers to {options.orders} POSTs;"
        f" {usage.wall_s:.1f} s from the release of the clients to their last figure",
        f"engine: RSS {mib(usage.rss_kib)} after the run, peak {mib(usage.peak_rss_kib)};"
        f" CPU {share(usage.engine_cpu_s)}",
        f"PostgreSQL: CPU {share(usage.postgres_cpu_s)}; clients ({options.client_processes}"
        f" processes): CPU {share(usage.clients_cpu_s)}; {cores} cores in all, load average"
        f" before the run {load}",
    ]


def summary(run: Run, options: Options) -> dict[str, Any]:
    """Every figure printed, for a JSON file."""
    return {
        "options": asdict(options),
        "engine_settings": engine_settings(options),
        "cores": len(os.sched_getaffinity(0)),
        "load_average_before": run.load,
        "answers": [part.statuses for part in run.parts],
        "kinds": {kind.name: kind.summary() for kind in kinds(run)},
        "usage": asdict(run.usage),
        "client_processes": [
            {"cpu_s": round(part.cpu_s, 3), "wall_s": round(part.wall_s, 3)} for part in run.parts
        ],
    }


def run(options: Options) -> int:
    """Measure, print and write the figures; 1 if an order or a socket went wrong."""
    stamp = run_stamp()
    limit = raise_descriptor_limit()
    print(
        f"starting the engine; {options.orders} orders, {options.sockets} order sockets,"
        f" {options.feeds} feeds, {options.client_processes} client processes;"
        f" open-file limit {limit} ..."
    )
    workdir = embedded_scratch_dir("oe-fanout-")
    try:
        found = asyncio.run(run_engine(workdir, options))
    finally:
        if options.keep:
            print(f"kept {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print("\n".join([kind.line() for kind in kinds(found)] + usage_lines(found, options)))
    print(f"wrote {write_result(stamp, 'fanout', summary(found, options))}")
    return 0 if complete(found, options) else 1


def complete(run: Run, options: Options) -> bool:
    """Every order accepted, every order socket closed 1000, every feed read to the end."""
    orders, feed = kinds(run)
    accepted = sum(part.statuses.get("201", 0) for part in run.parts)
    return (
        accepted == options.orders
        and not any(part.timed_out for part in run.parts)
        and orders.endings == Counter({"closed 1000": options.sockets})
        and feed.endings == Counter({"read": options.feeds})
    )


def main(argv: Sequence[str] | None = None) -> None:
    sys.exit(run(parse_options(argv)))


if __name__ == "__main__":
    main()
