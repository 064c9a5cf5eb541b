"""`python -m orderengine keys create|list|revoke` as an operator types it, on a real database."""

from __future__ import annotations

import asyncio
import os
import sys

from orderengine.access import KEY_PREFIX, key_hash
from orderengine.repository import Repository
from tests.harness import new_database, without_engine_settings


async def keys(database_url: str, *arguments: str) -> tuple[int, str, str]:
    """Run `keys …` on the database; its exit status, standard output and standard error."""
    return await keys_with({"ORDERENGINE_DATABASE_URL": database_url}, *arguments)


async def keys_with(settings: dict[str, str], *arguments: str) -> tuple[int, str, str]:
    """Run `keys …` with `settings`; its exit status, standard output and standard error."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "orderengine",
        "keys",
        *arguments,
        env={**without_engine_settings(os.environ), **settings},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_a_key_is_printed_once_stored_as_its_hash_listed_and_revoked(
    database_url: str, repository: Repository
) -> None:
    status, out, _ = await keys(database_url, "create", "ops")
    key = out.strip()

    assert status == 0
    assert key.startswith(KEY_PREFIX)
    assert len(key) > 40
    assert (await repository.keys.key_set()).active == {key_hash(key): "ops"}

    again, _, _ = await keys(database_url, "create", "ops")
    listed, listing, _ = await keys(database_url, "list")
    revoked, _, _ = await keys(database_url, "revoke", "ops")
    unknown, _, _ = await keys(database_url, "revoke", "ops")

    assert again == 1
    assert listed == 0
    assert listing.startswith("ops\tcreated ")
    assert key not in listing
    assert revoked == 0
    assert unknown == 1
    assert (await repository.keys.key_set()).active == {}


async def test_a_command_writes_only_its_answer_unless_a_log_level_is_given(
    server_url: str,
) -> None:
    """Migrating a new database, or starting the embedded server, is no business of theirs.

    Their lines are written only when `ORDERENGINE_LOG_LEVEL` asks for them.
    """
    quiet = await new_database(server_url)
    told = await new_database(server_url)

    status, out, err = await keys(quiet, "create", "ops")
    told_status, _, told_err = await keys_with(
        {"ORDERENGINE_DATABASE_URL": told, "ORDERENGINE_LOG_LEVEL": "info"}, "list"
    )

    assert status == 0
    assert out.startswith(KEY_PREFIX)
    assert err == ""
    assert told_status == 0
    assert "migration_applied" in told_err
