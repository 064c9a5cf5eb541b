"""Fixtures: a real PostgreSQL for the session, a fresh database per test, the real app.

The server is the embedded one unless TEST_DATABASE_URL names another. The schema is applied
once to a template database; each test gets its own copy of it (CREATE DATABASE … TEMPLATE),
so tests never see each other's orders.

Engine settings exported in the shell (ORDERENGINE_*, DATABASE_URL) are removed from the
environment as this module is imported, before any test or child process can read them.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import structlog
from pytest_aiohttp import AiohttpClient

from orderengine.app import create_app
from orderengine.embedded_db import embedded_postgres
from orderengine.repository import Repository
from orderengine.venues.chain import Chain
from orderengine.venues.factory import blockhash_ttl_s, simulated_venues
from orderengine.venues.venue import VenueFactory
from tests import recorded_traffic
from tests.engine_process import EngineProcess, StartEngine
from tests.harness import (
    Client,
    StartApp,
    embedded_scratch_dir,
    fast_settings,
    seal,
    with_database,
)

seal(os.environ)


def _plain_tracebacks() -> None:
    """Log tracebacks in plain text, as the engine does, not with rich's panels of locals.

    structlog's default console renderer, which the in-process engines log through, draws
    every frame's locals with rich when it is installed: seconds per crash on the event loop,
    during which the engine under test answers nobody. Logging stays otherwise as structlog
    sets it up, uncached, so that `capture_logs` still sees every logger.
    """
    *processors, _ = structlog.get_config()["processors"]
    renderer = structlog.dev.ConsoleRenderer(exception_formatter=structlog.dev.plain_traceback)
    structlog.configure(processors=[*processors, renderer])


_plain_tracebacks()

TEMPLATE = "orderengine_template"


@pytest.fixture(scope="session")
def embedded_data_dir() -> Iterator[Path | None]:
    """Where the embedded server keeps its data, or None when TEST_DATABASE_URL is set."""
    if os.environ.get("TEST_DATABASE_URL"):
        yield None
        return
    scratch = embedded_scratch_dir("oe-pg-")
    try:
        yield scratch / "data"
    finally:
        # A database per test leaves the server's data at a hundred thousand files or more:
        # removing them took each worker half a minute at the end of the run. It is left to
        # a process of its own, which outlives the run (the shell starting it returns at once).
        subprocess.run(
            ["sh", "-c", 'rm -rf "$0" > /dev/null 2>&1 &', str(scratch)],
            start_new_session=True,
            check=True,
        )


@pytest.fixture(scope="session")
def server_url(embedded_data_dir: Path | None) -> Iterator[str]:
    if embedded_data_dir is None:
        yield os.environ["TEST_DATABASE_URL"]
        return
    with embedded_postgres(embedded_data_dir, throwaway=True) as url:
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
    """A database holding the schemas (the engine's and the chain's) and nothing else.

    The chain's market is left out: each test's chain takes its seed from the first engine
    or chain opened on it, as a new database does.

    Clones are left for the embedded server, whose whole data directory goes at the end
    of the session; on a server of TEST_DATABASE_URL they are dropped then.
    """

    async def build() -> None:
        await _admin(
            server_url,
            f"DROP DATABASE IF EXISTS {TEMPLATE} WITH (FORCE)",
            f"CREATE DATABASE {TEMPLATE}",
        )
        url = with_database(server_url, TEMPLATE)
        repository = await Repository.connect(url, 2, 5.0)
        await repository.close()
        chain = await Chain.open(url, 1, 5.0)
        await chain.close()
        await _admin(url, "DELETE FROM chain.market")

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


class Clones:
    """Each test's database, cloned from the template while the test before it runs.

    A clone costs PostgreSQL 0.15 to 0.2 s, mostly writing the template's pages to its WAL;
    made one test ahead, on a thread of its own, the test no longer waits for it.
    """

    def __init__(self, server_url: str) -> None:
        self._server_url = server_url
        self._maker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clones")
        self._next = self._clone()

    async def take(self) -> str:
        """The URL of a new database of the test's own."""
        name = await asyncio.wrap_future(self._next)
        self._next = self._clone()
        return with_database(self._server_url, name)

    def close(self) -> None:
        wait([self._next])
        self._maker.shutdown()

    def _clone(self) -> Future[str]:
        return self._maker.submit(self._made)

    def _made(self) -> str:
        name = f"test_{uuid.uuid4().hex}"
        asyncio.run(_admin(self._server_url, f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}"))
        return name


@pytest.fixture(scope="session")
def clones(server_url: str, template_url: str) -> Iterator[Clones]:
    made = Clones(server_url)
    yield made
    made.close()


@pytest.fixture
async def database_url(clones: Clones) -> str:
    return await clones.take()


@pytest.fixture
async def repository(database_url: str) -> AsyncIterator[Repository]:
    repository = await Repository.connect(database_url, 4, 5.0)
    yield repository
    await repository.close()


@pytest.fixture
async def engines(database_url: str) -> AsyncIterator[tuple[Repository, Repository]]:
    """Two repositories, each with a pool of its own, standing for two engines on one database."""
    first = await Repository.connect(database_url, 2, 5.0)
    second = await Repository.connect(database_url, 2, 5.0)
    yield first, second
    await first.close()
    await second.close()


@pytest.fixture
async def chain(database_url: str) -> AsyncIterator[Chain]:
    """The simulated venues' chain in this test's database: what landed, by signature.

    Its blockhashes live as long as those of the chain the app opens with fast settings.
    """
    ttl = blockhash_ttl_s(fast_settings(database_url))
    chain = await Chain.open(database_url, 2, 5.0, blockhash_ttl_s=ttl)
    yield chain
    await chain.close()


@pytest.fixture
def start_app(database_url: str, aiohttp_client: AiohttpClient) -> StartApp:
    """Boot the real app on this test's database; keyword arguments override settings."""

    async def start(venues: VenueFactory = simulated_venues, **overrides: Any) -> Client:
        app = create_app(fast_settings(database_url, **overrides), venues)
        return await aiohttp_client(app, **recorded_traffic.client_kwargs())

    return start


@pytest.fixture
async def client(start_app: StartApp) -> Client:
    return await start_app()


@pytest.fixture
async def start_engine(database_url: str, tmp_path: Path) -> AsyncIterator[StartEngine]:
    """Start `python -m orderengine` on this test's database; keyword arguments are settings.

    Each engine has a log directory of its own; all sign with one keypair, as engines sharing
    a database share a wallet. Whatever the test does or fails to do, every engine it started
    is stopped afterwards.
    """
    engines: list[EngineProcess] = []

    async def start(**settings: Any) -> EngineProcess:
        log_dir = tmp_path / f"engine-{len(engines) + 1}"
        settings = {"keypair": tmp_path / "keypair.json", **settings}
        engine = EngineProcess(database_url, log_dir, **settings)
        engines.append(engine)
        await engine.start()
        return engine

    yield start
    for engine in engines:
        await engine.stop()
