"""`python -m orderengine` opens every connection of its pools at start, or refuses to serve.

A database it cannot reach, one that refuses its connections (no such database, say), or
one with no room left for them, ends the start with a sentence naming the problem, never a
traceback nor the database's URL; so does a port another process listens on.
"""

from __future__ import annotations

import socket

from tests.engine_process import HOST, free_port, refused_start
from tests.harness import with_database


async def refusal(database_url: str, port: int | None = None, **settings: object) -> str:
    """The output of an engine started with `settings`: it exits 1, with no traceback."""
    output = await refused_start(database_url, settings, port)
    assert "Traceback" not in output
    return output


async def test_a_database_with_no_room_for_the_pools_is_refused_at_start(
    database_url: str,
) -> None:
    output = await refusal(database_url, db_pool_size=150)  # the server allows 100

    assert "the database has no room for this engine's connections" in output
    assert "ORDERENGINE_DB_POOL_SIZE" in output


async def test_a_database_out_of_reach_is_refused_at_start(database_url: str) -> None:
    unreachable = f"postgresql://postgres:secret-password@127.0.0.1:{free_port()}/orders"

    output = await refusal(unreachable)

    assert "the database could not be reached at start" in output
    assert "secret-password" not in output


async def test_a_database_that_does_not_exist_is_refused_at_start(database_url: str) -> None:
    output = await refusal(with_database(database_url, "no_such_database"))

    assert 'the database refused the connection: database "no_such_database"' in output


async def test_a_port_another_process_listens_on_is_refused_at_start(database_url: str) -> None:
    with socket.socket() as taken:
        taken.bind((HOST, 0))
        taken.listen()
        port = taken.getsockname()[1]

        output = await refusal(database_url, port)

    assert f"cannot listen on {HOST}:{port}" in output
    assert "in use" in output
