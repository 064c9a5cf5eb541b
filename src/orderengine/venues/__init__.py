"""Venues that quote and execute swaps: the protocol, and the simulated Raydium and Meteora."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from orderengine.repository import Repository
from orderengine.settings import Settings
from orderengine.venues.meteora import Meteora
from orderengine.venues.raydium import Raydium
from orderengine.venues.venue import Venue

VenueFactory = Callable[[Repository, Settings], Mapping[str, Venue]]
"""Builds the venues an engine routes between, given the ledger they write to."""


def simulated_venues(ledger: Repository, settings: Settings) -> Mapping[str, Venue]:
    """The default venues: simulated Raydium and Meteora sharing one ledger."""
    venues = (
        kind(
            ledger,
            latency_scale=settings.latency_scale,
            failure_rate=settings.failure_rate,
            volatility_bps=settings.price_volatility_bps,
            seed=settings.seed,
        )
        for kind in (Raydium, Meteora)
    )
    return {venue.name: venue for venue in venues}


__all__ = ["Meteora", "Raydium", "Venue", "VenueFactory", "simulated_venues"]
