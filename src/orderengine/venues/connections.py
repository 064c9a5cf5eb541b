"""How many connections the venues keep open: what the connection cap leaves descriptors for.

Apart from the construction of the venues (factory.py), so that the server may ask without
reaching the modules that build them.
"""

from __future__ import annotations

from orderengine.settings import Settings

CHAIN_POOL_SIZE = 4
"""The simulated chain's connections, however many workers: it records the swaps sent at once
in one statement and issues a slot's blockhash once, so a few connections serve them all, with
room for reconciliations' reads beside."""
LIVE_CONNECTIONS = 100
"""The most connections the live venues' HTTP session keeps open at once: aiohttp's default,
set explicitly so that this count stays true."""


def venue_connections(settings: Settings) -> int:
    """The most connections the venues the settings name keep open at once."""
    return LIVE_CONNECTIONS if settings.venues == "live" else CHAIN_POOL_SIZE
