"""Venues that quote and execute swaps: the protocol, and the simulated Raydium and Meteora."""

from __future__ import annotations

from orderengine.venues.meteora import Meteora
from orderengine.venues.raydium import Raydium
from orderengine.venues.venue import Venue

__all__ = ["Meteora", "Raydium", "Venue"]
