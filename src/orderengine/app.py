"""The composition root: the application, the resources it owns and how it shuts down.

Everything the handlers need is reached through typed `AppKey`s; every resource (database
pool, venues, engine) is opened and closed by one cleanup context, in that order and in
reverse. Only this module opens venues: those `venues.factory` constructs for the settings,
or those of the `VenueFactory` it is handed.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from aiohttp import WSCloseCode, web

from orderengine import api, listings, security
from orderengine.access import (
    KeyRing,
    KeySockets,
    StreamTokens,
    check_exposure,
    exposed,
    keep_loaded,
)
from orderengine.engine import Engine
from orderengine.events import EventHub, checking_followed
from orderengine.feed_tail import FeedTail
from orderengine.keys import (
    ENGINE,
    FEED_TAIL,
    HUB,
    KEY_RING,
    KEY_SOCKETS,
    METRICS,
    REPOSITORY,
    SETTINGS,
    SOCKETS,
    STREAM_TOKENS,
    VENUES,
)
from orderengine.metrics import Metrics
from orderengine.notifications import Listener
from orderengine.repository import Repository
from orderengine.routes import add_routes
from orderengine.server import handler_args
from orderengine.settings import Settings
from orderengine.shared_values import SharedValues
from orderengine.venues.factory import venues_for
from orderengine.venues.venue import VenueFactory
from orderengine.wallet import load_keypair, load_or_create_keypair

log = structlog.get_logger(__name__)


def create_app(settings: Settings, venues: VenueFactory | None = None) -> web.Application:
    """The application for `settings`, trading on the venues `venues` opens.

    Without `venues`, on those the settings name (`venues_for`).
    """
    app = web.Application(
        middlewares=[
            security.headers_middleware,
            security.cors_middleware,
            api.error_middleware,
            api.screening_middleware,
            security.access_middleware,
        ],
        client_max_size=settings.max_body_bytes,
        handler_args=handler_args(settings),
    )
    app[SETTINGS] = settings
    app[VENUES] = venues or venues_for(settings)
    app[HUB] = EventHub(settings.ws_buffer)
    app[METRICS] = Metrics()
    app[SOCKETS] = weakref.WeakSet()
    app[KEY_SOCKETS] = KeySockets(settings.key_max_sockets)
    app.cleanup_ctx.append(resources)
    app.on_shutdown.append(close_sockets)
    add_routes(app.router)
    return app


class OtherVenues(Exception):
    """The database's orders are for venues of another kind than this engine's."""


async def check_venues(shared: SharedValues, venues: str) -> None:
    """Refuse a database whose orders are for venues of another kind (simulated, or live).

    Its unfinished orders would otherwise be taken up and sent: simulated ones with real
    funds, on a live cluster. The first engine on a database records its kind.
    """
    recorded = await shared.venues_of_orders(venues)
    if recorded != venues:
        raise OtherVenues(
            f"this database holds orders for {recorded} venues, and this engine's are {venues}"
            " (ORDERENGINE_VENUES): give it a database of its own (ORDERENGINE_DATA_DIR or"
            " ORDERENGINE_DATABASE_URL), or start it with the venues the database is for"
        )


@asynccontextmanager
async def resources(app: web.Application) -> AsyncIterator[None]:
    """Open the database, the keys, the venues, the engine and the listener; close in reverse.

    The API keys in force are loaded first: with none, the engine refuses to serve on an
    address other than loopback unless it is meant to be open (`check_exposure`); keys
    created or revoked later are reloaded when the listener hears of them.

    The venues first learn the pools listed on their chain, so that the tokens listed before
    this start are known before any order is taken up. The listener hears other engines'
    notifications: their committed events, as hints for this engine's sockets; orders they
    made available, as wake-ups for its dispatcher; and pools they listed, for its venues to
    learn before its sniper orders are woken. The demo lister, when
    `ORDERENGINE_DEMO_LISTING_S` is set, runs while the engine does, as does the check of the
    orders the sockets follow for events the hub missed (`events.check_followed`). The
    engine's id, logged
    once it has started, is the `lease_owner` of the orders it holds.
    """
    settings = app[SETTINGS]
    assert settings.database_url, "the database URL is resolved before the app is created"
    repository = await Repository.connect(
        settings.database_url, settings.db_pool_size, settings.db_timeout_s
    )
    try:
        await check_venues(repository.shared, settings.venues)
        ring = KeyRing.of(settings.configured_keys(), settings.admin_keys)
        await ring.load(repository.keys)
        check_exposure(settings.host, settings.allow_anonymous, ring)
        ring.required = exposed(settings.host, settings.allow_anonymous)
        app[KEY_RING] = ring
        app[STREAM_TOKENS] = await StreamTokens.shared(
            repository.shared, settings.stream_token_ttl_s
        )
        async with app[VENUES](settings) as venues:
            await listings.learn(venues)
            live = settings.venues == "live"
            signer = (load_keypair if live else load_or_create_keypair)(settings.keypair)
            engine = Engine(settings, repository, venues, app[HUB], app[METRICS], signer)
            app[REPOSITORY] = repository
            app[FEED_TAIL] = FeedTail(repository.feed)
            app[ENGINE] = engine
            await engine.start()
            log.info(
                "engine_started", engine_id=str(repository.owner), concurrency=settings.concurrency
            )
            try:
                async with (
                    listings.learning(engine) as listing_heard,
                    keep_loaded(ring, repository.keys, settings.sweep_s) as keys_changed,
                    Listener.open(
                        settings.database_url,
                        repository.owner,
                        app[HUB].hint,
                        engine.heard_orders,
                        on_listing=listing_heard,
                        on_keys=keys_changed,
                        reconnect_s=settings.listen_reconnect_s,
                        check_s=settings.listen_check_s,
                        timeout_s=settings.db_timeout_s,
                    ),
                    listings.demo_lister(engine, repository, settings.demo_listing_s),
                    checking_followed(app[HUB], repository, settings.ws_idle_check_s),
                ):
                    yield
            finally:
                await engine.stop()
    finally:
        await repository.close()


SOCKET_CLOSE_S = 2.0
"""How long a socket's close at shutdown may take: a client that reads its 1001 answers at
once; one that is not reading is dropped."""


async def close_sockets(app: web.Application) -> None:
    """Close every open socket with 1001 so that clients know to reconnect elsewhere."""
    sockets = app[SOCKETS]
    await asyncio.gather(*(_close(ws) for ws in list(sockets)), return_exceptions=True)


async def _close(ws: web.WebSocketResponse) -> None:
    """Close `ws` with 1001, or drop it if it takes longer than `SOCKET_CLOSE_S`.

    A close cut short drops the connection (`sockets.ServerSocket`).
    """
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(SOCKET_CLOSE_S):
            await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutting down")
