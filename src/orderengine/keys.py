"""The typed keys of the application's state, shared by the app, the API and the streams."""

from __future__ import annotations

import weakref

from aiohttp import web

from orderengine.access import Caller, KeyRing, KeySockets, StreamTokens
from orderengine.engine import Engine
from orderengine.events import EventHub
from orderengine.feed_tail import FeedTail
from orderengine.metrics import Metrics
from orderengine.repository import Repository
from orderengine.settings import Settings
from orderengine.venues.venue import VenueFactory

SETTINGS = web.AppKey("settings", Settings)
VENUES: web.AppKey[VenueFactory] = web.AppKey("venues")
REPOSITORY = web.AppKey("repository", Repository)
ENGINE = web.AppKey("engine", Engine)
HUB = web.AppKey("hub", EventHub)
FEED_TAIL = web.AppKey("feed_tail", FeedTail)
"""The feed's newest events, shared by its followers."""
METRICS = web.AppKey("metrics", Metrics)
SOCKETS: web.AppKey[weakref.WeakSet[web.WebSocketResponse]] = web.AppKey("sockets")
"""Open sockets, closed with 1001 when the server shuts down."""
KEY_RING = web.AppKey("key_ring", KeyRing)
"""The API keys in force."""
STREAM_TOKENS = web.AppKey("stream_tokens", StreamTokens)
KEY_SOCKETS = web.AppKey("key_sockets", KeySockets)
"""How many sockets each key holds open on this engine."""
CALLER = web.RequestKey("caller", Caller)
"""Who is asking, set for every request by the access middleware (`security.py`)."""
