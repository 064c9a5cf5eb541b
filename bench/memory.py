"""Memory benchmark: the engine's resident set with a large backlog, and after it drains.

`python -m bench.memory` starts `python -m orderengine` on a fresh embedded PostgreSQL, with
no simulated latency and no simulated failures, its workers paced by the token bucket at
100 attempts a second (`rate_per_minute` 6000, burst 10) and a backlog that may hold every
order (`queue_limit` 50 000): so the orders are accepted far faster than they are executed
and pile up in the backlog, then drain at the bucket's pace.

It reads the engine process's resident set (VmRSS, and its peak so far, VmHWM, from
/proc/PID/status) at these points:

- idle: once the engine answers /health, before any order;
- queued: right after N orders (10 000 by default) were POSTed by 64 clients (bench/load.py),
  with the backlog `/health` reports then;
- draining: every second until `/metrics` counts every accepted order finished;
- drained: as the last order finished, and again after 10 s more with nothing to do.

The PostgreSQL server, a separate process, is not included. The figures are printed one per
line and written as JSON under bench/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

import aiohttp

from bench.load import Intake, client_session, run_intake
from bench.results import run_stamp, write_result
from bench.throughput import finished_counts, mib, print_log_tail, process_usage
from tests.engine_process import EngineProcess
from tests.harness import embedded_scratch_dir

SAMPLE_S: Final = 1.0


@dataclass(frozen=True)
class Options:
    orders: int
    clients: int
    idle_s: float
    timeout_s: float
    keep: bool


def parse_options(argv: Sequence[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m bench.memory", description=__doc__.splitlines()[0] if __doc__ else ""
    )
    parser.add_argument("-n", "--orders", type=int, default=10_000, help="orders to POST")
    parser.add_argument("-c", "--clients", type=int, default=64, help="concurrent HTTP clients")
    parser.add_argument(
        "--idle",
        type=float,
        default=10.0,
        dest="idle_s",
        help="seconds to wait, idle, after the drain before the last reading (default 10)",
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
    if args.orders < 1 or args.clients < 1 or args.idle_s < 0:
        parser.error("--orders and --clients must be positive, --idle not negative")
    return Options(args.orders, args.clients, args.idle_s, args.timeout_s, args.keep)


ENGINE_SETTINGS: Final = {
    "latency_scale": 0,
    "failure_rate": 0,
    "queue_limit": 50_000,
    "concurrency": 10,
    "rate_per_minute": 6000,
    "rate_burst": 10,
    "log_level": "warning",
}
"""Orders accepted at once and executed at 100 a second: the backlog grows, then drains."""


# ---- readings -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Resident:
    """A process's resident set now (VmRSS) and its peak so far (VmHWM), in KiB."""

    rss_kib: int
    hwm_kib: int


def resident(pid: int) -> Resident:
    """VmRSS and VmHWM of a live process, from /proc/PID/status."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return Resident(_kib(fields["VmRSS"]), _kib(fields["VmHWM"]))


def _kib(value: str) -> int:
    """`   74812 kB` as 74812."""
    return int(value.split()[0])


@dataclass(frozen=True)
class Sample:
    """One reading while draining, `t_s` seconds after the intake ended."""

    t_s: float
    rss_kib: int
    finished: int
    backlog: int


async def backlog(session: aiohttp.ClientSession) -> int:
    """Accepted orders waiting for a worker or a retry, as `/health` reports them."""
    async with session.get("/health") as reply:
        reply.raise_for_status()
        body: dict[str, Any] = await reply.json()
    return int(body["backlog"])


# ---- the run ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Figures:
    idle: Resident
    intake: Intake
    queued: Resident
    queued_backlog: int
    samples: list[Sample]
    drain_s: float
    """From the end of the intake until a reading found every accepted order finished."""
    drained: Resident
    later: Resident
    finished: int
    cpu_s: float | None

    @property
    def complete(self) -> bool:
        return self.finished >= self.intake.accepted

    @property
    def peak_draining(self) -> Sample:
        return max(self.samples, key=lambda sample: sample.rss_kib)


async def drain(
    session: aiohttp.ClientSession, pid: int, accepted: int, deadline: float
) -> list[Sample]:
    """Read the resident set, finished orders and backlog every second until all finished.

    Counts are from `/metrics`, which counts since the engine started: this run's orders are
    the only ones it has seen.
    """
    began = time.perf_counter()
    samples: list[Sample] = []
    while True:
        finished = (await finished_counts(session)).total()
        waiting = await backlog(session)
        now = time.perf_counter()
        samples.append(Sample(now - began, resident(pid).rss_kib, finished, waiting))
        if finished >= accepted or now >= deadline:
            return samples
        await asyncio.sleep(SAMPLE_S)


async def measure(engine: EngineProcess, options: Options) -> Figures:
    pid = engine.pid
    idle = resident(pid)
    async with client_session(engine.url, options.clients) as session:
        began = time.perf_counter()
        intake = await run_intake([session], options.orders, options.clients)
        queued = resident(pid)
        queued_backlog = await backlog(session)
        samples = await drain(session, pid, intake.accepted, began + options.timeout_s)
    drained = resident(pid)
    await asyncio.sleep(options.idle_s)
    later = resident(pid)
    last = samples[-1]
    cpu_s = process_usage(pid).cpu_s
    return Figures(
        idle,
        intake,
        queued,
        queued_backlog,
        samples,
        last.t_s,
        drained,
        later,
        last.finished,
        cpu_s,
    )


async def run_engine(workdir: Path, options: Options) -> Figures:
    """Start the engine on a fresh embedded database in `workdir`, measure it, stop it."""
    engine = EngineProcess(workdir / "postgres", workdir, **ENGINE_SETTINGS)
    try:
        await engine.start()
        return await measure(engine, options)
    except (aiohttp.ClientError, TimeoutError):
        print_log_tail(engine)
        raise
    finally:
        await engine.stop()


# ---- report -------------------------------------------------------------------------------


def report_lines(figures: Figures, options: Options) -> list[str]:
    intake, peak = figures.intake, figures.peak_draining
    incomplete = "" if figures.complete else f" (INCOMPLETE: {figures.finished} finished)"
    rate = figures.finished / figures.drain_s if figures.drain_s > 0 else 0.0
    return [
        f"engine RSS idle, before any order: {mib(figures.idle.rss_kib)}",
        f"engine RSS queued, right after {intake.accepted} of {options.orders} orders were"
        f" accepted in {intake.elapsed_s:.1f} s by {options.clients} clients (backlog"
        f" {figures.queued_backlog}): {mib(figures.queued.rss_kib)}",
        f"engine RSS while draining, highest reading: {mib(peak.rss_kib)}, {peak.t_s:.0f} s"
        f" after the intake (backlog {peak.backlog}; {len(figures.samples)} readings)",
        f"drain: every accepted order finished {figures.drain_s:.1f} s after the intake"
        f" ({rate:.1f} orders/s){incomplete}",
        f"engine RSS drained, as the last order finished: {mib(figures.drained.rss_kib)}",
        f"engine RSS after {options.idle_s:g} s more idle: {mib(figures.later.rss_kib)}",
        f"engine peak RSS over the whole run (VmHWM): {mib(figures.later.hwm_kib)};"
        f" CPU {figures.cpu_s or 0:.1f} s",
    ]


def summary(figures: Figures, options: Options) -> dict[str, Any]:
    """Every figure of `report_lines` and every reading, for a JSON file (KiB)."""
    return {
        "orders": options.orders,
        "clients": options.clients,
        "engine_settings": ENGINE_SETTINGS,
        "intake": figures.intake.summary(),
        "idle": asdict(figures.idle),
        "queued": {**asdict(figures.queued), "backlog": figures.queued_backlog},
        "drain_s": round(figures.drain_s, 3),
        "finished": figures.finished,
        "complete": figures.complete,
        "drained": asdict(figures.drained),
        "after_idle": {**asdict(figures.later), "idle_s": options.idle_s},
        "cpu_s": figures.cpu_s,
        "samples": [{**asdict(sample), "t_s": round(sample.t_s, 2)} for sample in figures.samples],
    }


def run(options: Options) -> int:
    """Measure, print and write the figures; 1 if an order was refused or did not finish."""
    stamp = run_stamp()
    print(f"starting the engine; {options.orders} orders, {options.clients} clients ...")
    workdir = embedded_scratch_dir("oe-memory-")
    try:
        figures = asyncio.run(run_engine(workdir, options))
    finally:
        if options.keep:
            print(f"kept {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print("\n".join(report_lines(figures, options)))
    print(f"wrote {write_result(stamp, 'memory', summary(figures, options))}")
    return 0 if figures.complete and figures.intake.accepted == options.orders else 1


def main(argv: Sequence[str] | None = None) -> None:
    sys.exit(run(parse_options(argv)))


if __name__ == "__main__":
    main()
