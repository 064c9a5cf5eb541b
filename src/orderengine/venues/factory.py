"""Constructing the default venues, with the chain they need open (a `VenueFactory`).

Only the composition root (`app.py`) calls it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from orderengine.settings import Settings
from orderengine.venues.chain import Chain
from orderengine.venues.meteora import Meteora
from orderengine.venues.raydium import Raydium
from orderengine.venues.venue import Venues

MIN_BLOCKHASH_TTL_S = 1.0
"""The shortest blockhash lifetime, whatever the latency scale: long enough for an engine to
commit a transaction as submitted and send it, even at a latency scale of 0."""


def blockhash_ttl_s(settings: Settings) -> float:
    """How long a blockhash lives: `blockhash_ttl_s`, scaled like every simulated delay."""
    return max(settings.blockhash_ttl_s * settings.latency_scale, MIN_BLOCKHASH_TTL_S)


@asynccontextmanager
async def simulated_venues(settings: Settings) -> AsyncIterator[Venues]:
    """The default venues: simulated Raydium and Meteora on one simulated chain.

    The chain's pool holds a connection for each swap that may be landing at once.
    """
    assert settings.database_url, "the database URL is resolved before venues are opened"
    chain = await Chain.open(
        settings.database_url,
        settings.concurrency,
        settings.db_timeout_s,
        blockhash_ttl_s=blockhash_ttl_s(settings),
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
            )
            for kind in (Raydium, Meteora)
        )
        yield {venue.name: venue for venue in venues}
    finally:
        await chain.close()
