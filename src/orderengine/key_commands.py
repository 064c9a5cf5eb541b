"""`python -m orderengine keys create|list|revoke`: the API keys stored in the database.

They run against the engine's database (`ORDERENGINE_DATABASE_URL`, or the embedded one in
`ORDERENGINE_DATA_DIR`, shared with a running engine). A new key is printed once and only its
SHA-256 is stored; every engine on the database hears of a key created or revoked and reloads
its keys at once.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import ExitStack, asynccontextmanager
from typing import TextIO

from orderengine.access import key_hash, new_key
from orderengine.embedded_db import embedded_postgres
from orderengine.errors import KeyNameTaken
from orderengine.key_store import KeyStore
from orderengine.repository import Repository
from orderengine.settings import Settings

DONE = 0
REFUSED = 1
"""The name is taken (create) or no active key has it (revoke)."""
MAX_NAME_LENGTH = 64


@asynccontextmanager
async def database_keys(settings: Settings) -> AsyncIterator[KeyStore]:
    """The keys of the engine's database, as the settings name it, its schema up to date."""
    with ExitStack() as stack:
        url = settings.database_url or stack.enter_context(embedded_postgres(settings.data_dir))
        repository = await Repository.connect(url, 2, settings.db_timeout_s)
        try:
            yield repository.keys
        finally:
            await repository.close()


def _nameable(name: str) -> bool:
    """Whether `name` can name a key wherever keys are named.

    In `owner:key` pairs, and in the comma-separated `ORDERENGINE_ADMIN_KEYS`, whose items
    are stripped of spaces.
    """
    return (
        0 < len(name) <= MAX_NAME_LENGTH
        and name.isprintable()
        and name == name.strip()
        and not {":", ","} & set(name)
    )


async def create(keys: KeyStore, name: str, out: TextIO = sys.stdout) -> int:
    """Create a key named `name` and print it: the only time it is ever shown."""
    if not _nameable(name):
        print(
            f"a key's name is 1 to {MAX_NAME_LENGTH} printable characters, no ':' or ',',"
            " with no space at either end",
            file=out,
        )
        return REFUSED
    key = new_key()
    try:
        await keys.create(name, key_hash(key))
    except KeyNameTaken as error:
        print(f"{error.message}; revoke it first, or choose another name", file=out)
        return REFUSED
    print(key, file=out)
    return DONE


async def listing(keys: KeyStore, out: TextIO = sys.stdout) -> int:
    """Print every key's name, when it was created and whether it was revoked; never a key."""
    for stored in await keys.stored():
        revoked = f"revoked {stored.revoked_at.isoformat()}" if stored.revoked_at else "active"
        print(f"{stored.name}\tcreated {stored.created_at.isoformat()}\t{revoked}", file=out)
    return DONE


async def revoke(keys: KeyStore, name: str, out: TextIO = sys.stdout) -> int:
    """Revoke the active key named `name`: every engine refuses it from then on."""
    if await keys.revoke(name):
        print(f"revoked {name}", file=out)
        return DONE
    print(f"no active key is named {name!r}", file=out)
    return REFUSED
