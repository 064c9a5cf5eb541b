"""Constructing the venues, with what they need open (a `VenueFactory` each).

The simulated venues (the default) share a simulated chain; the live ones, an HTTP session.

Only the composition root (`app.py`) calls it. How many connections each kind keeps open is
in connections.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp

from orderengine.limiter import TokenBucket
from orderengine.settings import Settings
from orderengine.tokens import read_token_list, register
from orderengine.venues.chain import Chain
from orderengine.venues.connections import CHAIN_POOL_SIZE, LIVE_CONNECTIONS
from orderengine.venues.endpoint import Endpoint
from orderengine.venues.jupiter import Jupiter, PriorityFee
from orderengine.venues.live import LiveVenue
from orderengine.venues.meteora import Meteora
from orderengine.venues.raydium import Raydium
from orderengine.venues.rpc import SolanaRpc
from orderengine.venues.venue import VenueFactory, Venues

MIN_BLOCKHASH_TTL_S = 2.0
"""The shortest blockhash lifetime, whatever the latency scale: long enough for an engine to
commit a transaction as submitted and send it, even at a latency scale of 0 on a machine
loaded enough to stall it for a second (a second was once too short, on CI)."""


def blockhash_ttl_s(settings: Settings) -> float:
    """How long a blockhash lives: `blockhash_ttl_s`, scaled like every simulated delay."""
    return max(settings.blockhash_ttl_s * settings.latency_scale, MIN_BLOCKHASH_TTL_S)


@asynccontextmanager
async def simulated_venues(settings: Settings) -> AsyncIterator[Venues]:
    """The default venues: simulated Raydium and Meteora on one simulated chain."""
    assert settings.database_url, "the database URL is resolved before venues are opened"
    chain = await Chain.open(
        settings.database_url,
        CHAIN_POOL_SIZE,
        settings.db_timeout_s,
        blockhash_ttl_s=blockhash_ttl_s(settings),
        seed=settings.seed,
    )
    try:
        venues = (
            kind(
                chain,
                latency_scale=settings.latency_scale,
                failure_rate=settings.failure_rate,
                volatility_bps=settings.price_volatility_bps,
                seed=settings.seed,
                recovery_half_life_s=settings.pool_recovery_half_life_s * settings.latency_scale,
                pool_sync_s=settings.pool_sync_ms / 1000,
            )
            for kind in (Raydium, Meteora)
        )
        yield {venue.name: venue for venue in venues}
    finally:
        await chain.close()


@asynccontextmanager
async def live_venues(settings: Settings) -> AsyncIterator[Venues]:
    """Raydium and Meteora on the cluster at `rpc_url`, quoted and built by Jupiter.

    The tokens of `token_list`, when one is given, are registered first: tradable from then on.

    One HTTP session serves both venues and both endpoints; quotes, swap builds and status
    polls share one request budget (`live_requests_per_s`).
    """
    assert settings.rpc_url is not None, "the settings refuse live venues without an RPC URL"
    if settings.token_list is not None:
        for token in read_token_list(settings.token_list):
            register(token)
    budget = TokenBucket(settings.live_requests_per_s * 60, burst=max(1, settings.concurrency))
    timeout = aiohttp.ClientTimeout(total=settings.live_timeout_s)
    connector = aiohttp.TCPConnector(limit=LIVE_CONNECTIONS)
    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, raise_for_status=False
    ) as session:

        def endpoint(url: str, headers: dict[str, str] | None = None) -> Endpoint:
            return Endpoint(session, url, budget, retries=settings.live_retries, headers=headers)

        priority = PriorityFee(
            settings.priority_fee_microlamports, settings.priority_fee_max_lamports
        )
        key = settings.jupiter_api_key
        keyed = {"x-api-key": key.get_secret_value()} if key is not None else None
        jupiter = Jupiter(endpoint(settings.jupiter_url, keyed), priority)
        rpc = SolanaRpc(endpoint(settings.rpc_url.get_secret_value()))
        poll_s, lifetime_s = settings.live_poll_ms / 1000, blockhash_ttl_s(settings)
        yield {
            name: LiveVenue(name, label, jupiter, rpc, poll_s=poll_s, lifetime_s=lifetime_s)
            for name, label in settings.jupiter_dexes.items()
        }


def venues_for(settings: Settings) -> VenueFactory:
    """The venues `ORDERENGINE_VENUES` names: simulated (the default) or live."""
    return live_venues if settings.venues == "live" else simulated_venues
