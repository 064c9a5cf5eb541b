"""What tests share besides fixtures: client types, database URLs, settings, a clean environment.

Fixtures live in conftest.py; everything a test module imports by name lives here, so that
no test imports conftest.
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from aiohttp.test_utils import TestClient

from orderengine.settings import Settings

UNKNOWN_ID = "5f0c1b2e-8a4d-4c3b-9e7f-2d6a1c9b8e41"
"""An order id no test creates (orders get random ids); fixed, so parallel workers collect
the same test ids."""
TEST_KEYPAIR = Path(tempfile.gettempdir()) / "orderengine-tests" / "keypair.json"
"""The engine's signing key in tests: one for the whole run, never in the repository."""

Client = TestClient[Any, Any]
StartApp = Callable[..., Awaitable[Client]]


async def read_once(database_url: str, statement: str, *args: Any) -> asyncpg.Record:
    """The one row `statement` reads, on a connection of its own, as a test looks past the app."""
    connection = await asyncpg.connect(database_url)
    try:
        row = await connection.fetchrow(statement, *args)
    finally:
        await connection.close()
    assert row is not None, statement
    return row


def with_database(url: str, name: str) -> str:
    """The same server URL, pointing at another database."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


async def new_database(server_url: str) -> str:
    """The URL of a new database with nothing in it, on the tests' server.

    Named as the tests' own databases are, so that it is dropped with them.
    """
    name = f"test_{uuid.uuid4().hex}"
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f"CREATE DATABASE {name}")
    finally:
        await admin.close()
    return with_database(server_url, name)


def fast_settings(database_url: str, **overrides: Any) -> Settings:
    """Fast, deterministic settings: no simulated delays, no random failures, a fixed seed.

    A pool of five connections: an app opens every connection of its pool as it starts, and
    the twenty of the default cost the database more than most tests do.
    """
    values: dict[str, Any] = {
        "database_url": database_url,
        "db_pool_size": 5,
        "latency_scale": 0,
        "failure_rate": 0,
        "seed": 7,
        "retry_base_ms": 20,
        "retry_cap_ms": 200,
        "rate_per_minute": 600_000,
        "rate_burst": 1_000,
        "quote_timeout_s": 2.0,
        "shutdown_grace_s": 5.0,
        "keypair": TEST_KEYPAIR,
    }
    return Settings(**{**values, **overrides})


def is_engine_setting(name: str) -> bool:
    """Whether `Settings` reads this environment variable (TEST_DATABASE_URL it does not)."""
    return name.startswith("ORDERENGINE_") or name == "DATABASE_URL"


def without_engine_settings(environ: Mapping[str, str]) -> dict[str, str]:
    """A copy of `environ` that configures no engine, for a child process to start from."""
    return {name: value for name, value in environ.items() if not is_engine_setting(name)}


def seal(environ: MutableMapping[str, str]) -> None:
    """Drop every engine setting from `environ`, so that a shell's exports change no test."""
    for name in [name for name in environ if is_engine_setting(name)]:
        del environ[name]


def embedded_scratch_dir(prefix: str) -> Path:
    """A new directory for an embedded PostgreSQL; the caller removes it.

    Under /tmp, so that the server's Unix socket path stays short whatever TMPDIR says, and
    readable by all, because the server runs as another user when we are root.
    """
    scratch = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    scratch.chmod(0o755)
    return scratch
