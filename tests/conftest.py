"""Fixtures: a real PostgreSQL for the session, a fresh database per test, the real app.

The server is the embedded one unless TEST_DATABASE_URL names another. The schema is applied
once to a template database; each test gets its own copy of it (CREATE DATABASE … TEMPLATE),
so tests never see each other's orders.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from orderengine.api import create_app
from orderengine.embedded_db import embedded_postgres
from orderengine.repository import Repository
from orderengine.settings import Settings
from orderengine.venues import VenueFactory, simulated_venues

TEMPLATE = "orderengine_template"

Client = TestClient[Any, Any]
StartApp = Callable[..., Awaitable[Client]]


def with_database(url: str, name: str) -> str:
    """The same server URL, pointing at another database."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


@pytest.fixture(scope="session")
def embedded_data_dir() -> Iterator[Path | None]:
    """Where the embedded server keeps its data, or None when TEST_DATABASE_URL is set."""
    if os.environ.get("TEST_DATABASE_URL"):
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="oe-pg-") as scratch:
        os.chmod(scratch, 0o755)
        yield Path(scratch) / "data"


@pytest.fixture(scope="session")
def server_url(embedded_data_dir: Path | None) -> Iterator[str]:
    if embedded_data_dir is None:
        yield os.environ["TEST_DATABASE_URL"]
        return
    with embedded_postgres(embedded_data_dir) as url:
        yield url


async def _admin(server_url: str, *statements: str) -> None:
    connection = await asyncpg.connect(server_url)
    try:
        for statement in statements:
            await connection.execute(statement)
    finally:
        await connection.close()


@pytest.fixture(scope="session")
def template_url(server_url: str) -> Iterator[str]:
    """A database holding the schema and nothing else, to clone for each test.

    Clones are left for the embedded server, whose whole data directory goes at the end
    of the session; on a server of TEST_DATABASE_URL they are dropped then.
    """

    async def build() -> None:
        await _admin(
            server_url,
            f"DROP DATABASE IF EXISTS {TEMPLATE} WITH (FORCE)",
            f"CREATE DATABASE {TEMPLATE}",
        )
        repository = await Repository.connect(with_database(server_url, TEMPLATE), 2, 5.0)
        await repository.close()

    async def drop_clones() -> None:
        connection = await asyncpg.connect(server_url)
        try:
            names = await connection.fetch(
                "SELECT datname FROM pg_database WHERE datname LIKE 'test\\_%'"
            )
            for row in names:
                await connection.execute(f"DROP DATABASE {row['datname']} WITH (FORCE)")
        finally:
            await connection.close()

    asyncio.run(build())
    yield with_database(server_url, TEMPLATE)
    if os.environ.get("TEST_DATABASE_URL"):
        asyncio.run(drop_clones())


@pytest.fixture
async def database_url(server_url: str, template_url: str) -> str:
    name = f"test_{uuid.uuid4().hex}"
    await _admin(server_url, f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
    return with_database(server_url, name)


@pytest.fixture
def settings(database_url: str) -> Settings:
    """Fast, deterministic settings: no simulated delays, no random failures, a fixed seed."""
    return test_settings(database_url)


def test_settings(database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "latency_scale": 0,
        "failure_rate": 0,
        "seed": 7,
        "retry_base_ms": 20,
        "retry_cap_ms": 200,
        "rate_per_minute": 600_000,
        "rate_burst": 1_000,
        "quote_timeout_s": 2.0,
        "shutdown_grace_s": 5.0,
    }
    return Settings(**{**values, **overrides})


@pytest.fixture
async def repository(database_url: str) -> AsyncIterator[Repository]:
    repository = await Repository.connect(database_url, 4, 5.0)
    yield repository
    await repository.close()


@pytest.fixture
def start_app(database_url: str, aiohttp_client: AiohttpClient) -> StartApp:
    """Boot the real app on this test's database; keyword arguments override settings."""

    async def start(venues: VenueFactory = simulated_venues, **overrides: Any) -> Client:
        app = create_app(test_settings(database_url, **overrides), venues)
        return await aiohttp_client(app)

    return start


@pytest.fixture
async def client(start_app: StartApp) -> Client:
    return await start_app()
