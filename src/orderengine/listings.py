"""Pools listed for new tokens, over HTTP: listing one, and the tokens and pairs the engine knows.

`POST /api/simulation/listings` asks a venue that takes listings (`Listable`) to open a pool
for a new pair; `GET /api/tokens` shows every token this engine knows and which venues have a
pool for each pair. A listing is on the venues' chain, so it outlives the engine, and every
engine on the database learns it: this one wakes its sniper orders and announces it on
`LISTINGS_CHANNEL`; the others, hearing it, have their venues read the chain, then wake theirs.
With `ORDERENGINE_DEMO_LISTING_S` set, the demo lister lists a fresh token that often.

Part of the HTTP layer: only `app.py` and the route table (`routes.py`) import it. It reaches
venues through the `Venue` and `Listable` protocols, never the simulated venues themselves.
"""

from __future__ import annotations

import asyncio
import random
import string
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from decimal import Decimal

import structlog
from aiohttp import web
from pydantic import Field, ValidationError, ValidationInfo, field_validator
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from orderengine.domain import plain_decimal_text
from orderengine.engine import Engine
from orderengine.errors import (
    InvalidListing,
)
from orderengine.keys import ENGINE, REPOSITORY
from orderengine.model import Given, Model
from orderengine.notifications import LISTINGS_CHANNEL, listing_payload
from orderengine.repository import Repository
from orderengine.tokens import (
    LISTED_DECIMALS,
    LISTED_MAX_AMOUNT,
    SYMBOL,
    TOKENS,
    U64_MAX,
    token_named,
)
from orderengine.venues.values import Listing
from orderengine.venues.venue import Listable, Venues
from orderengine.wire import field_reasons, read_body, read_json

log = structlog.get_logger(__name__)

TOKENS_PATH = "/api/tokens"

MAX_POOL_TOKENS = LISTED_MAX_AMOUNT * 10
"""The most of a listed token a pool may hold: ten times the most one order may sell, so that
every amount of it stays within a u64 of its smallest units."""

LISTED_UNIT = Decimal(1).scaleb(-LISTED_DECIMALS)
"""The smallest amount of a listed token."""

LISTABLE = "listable"
"""The validation context's key for the names of the venues that take listings."""

DEMO_PREFIX = "DEMO"
DEMO_QUOTE_TOKEN = "SOL"
DEMO_ALPHABET = string.ascii_uppercase + string.digits


class ListingRequest(Model):
    """What a listing needs: the venue, the new pair, its price and its depth; what makes a 422.

    Validated with a context `{LISTABLE: [venue names]}`: the venues that take listings.
    """

    dex: str = Field(min_length=1, max_length=32)
    token: str = Field(min_length=1, max_length=16)
    quote_token: str = Field(min_length=1, max_length=16)
    price: Given
    liquidity: Given

    @field_validator("dex")
    @classmethod
    def listable_venue(cls, dex: str, info: ValidationInfo) -> str:
        names: list[str] = (info.context or {}).get(LISTABLE, [])
        if dex not in names:
            which = ", ".join(names) or "none"
            raise ValueError(f"{dex!r} takes no listings here; venues that do: {which}")
        return dex

    @field_validator("token")
    @classmethod
    def listable_symbol(cls, symbol: str) -> str:
        """ASCII only, as `token_named` reads symbols: `str.upper` turns `ſ` into `S`."""
        upper = symbol.upper()
        if not (symbol.isascii() and SYMBOL.fullmatch(upper)):
            raise ValueError(f"{symbol!r} is not a token symbol: 2 to 12 ASCII letters or digits")
        return upper

    @field_validator("quote_token")
    @classmethod
    def known_quote_token(cls, symbol: str, info: ValidationInfo) -> str:
        """Another token than `token`, and a known one (said in that order)."""
        if symbol.isascii() and symbol.upper() == info.data.get("token"):
            raise ValueError("quoteToken must differ from token")
        token = token_named(symbol)
        if token is None:
            raise ValueError(f"unknown token {symbol!r}; known: {', '.join(TOKENS)}")
        return token.symbol

    @field_validator("liquidity")
    @classmethod
    def pool_within_token_units(cls, liquidity: Decimal, info: ValidationInfo) -> Decimal:
        """Each side of the pool holds from one smallest unit of its token to what swaps carry.

        The token side (`liquidity / price`) holds at most `MAX_POOL_TOKENS`; the quote side
        (`liquidity`) fits, in the quote token's smallest units, the u64 a token account
        holds. A pool with less than a unit on a side could never quote, and one beyond
        these bounds would make amounts no swap can carry.
        """
        price, quote_token = info.data.get("price"), info.data.get("quote_token")
        if price is None or quote_token is None:
            return liquidity
        token_side, quote = liquidity / price, TOKENS[quote_token]
        if token_side > MAX_POOL_TOKENS:
            raise _pool_error("pool_too_large", f"more than {MAX_POOL_TOKENS:,f} of the token")
        if liquidity.scaleb(quote.decimals) > U64_MAX:
            raise _pool_error("pool_too_large", f"more {quote.symbol} than a u64 of its units")
        if token_side < LISTED_UNIT:
            raise _pool_error("pool_too_small", f"less than {LISTED_UNIT:f} of the token")
        if liquidity < quote.unit:
            raise _pool_error("pool_too_small", f"less than {quote.unit:f} {quote.symbol}")
        return liquidity

    @field_validator("price", "liquidity", mode="before")
    @classmethod
    def plain_decimal_text(cls, value: object, info: ValidationInfo) -> object:
        """A number, or a string of ASCII digits as JSON writes a number (as `amountIn`)."""
        return plain_decimal_text(value, to_camel(info.field_name or ""))


def _pool_error(code: str, holding: str) -> PydanticCustomError:
    return PydanticCustomError(
        code, "at this price the pool would hold {holding}", {"holding": holding}
    )


class TokenInfo(Model):
    """A token as `GET /api/tokens` shows it; `listed` when a venue listed it."""

    symbol: str
    mint: str
    decimals: int
    listed: bool


class PairInfo(Model):
    """A pair (its two symbols, sorted) and the venues with a pool for it, sorted."""

    tokens: tuple[str, str]
    venues: tuple[str, ...]


class Catalog(Model):
    """The answer of `GET /api/tokens`: every token known, and every pair some venue has."""

    tokens: tuple[TokenInfo, ...]
    pairs: tuple[PairInfo, ...]


def listable(venues: Venues) -> dict[str, Listable]:
    """The venues among `venues` that take listings, by name."""
    return {name: venue for name, venue in venues.items() if isinstance(venue, Listable)}


async def create_listing(request: web.Request) -> web.Response:
    """List a pool for a new pair: 201 with the listing, 409 if the venue has the pair."""
    engine = request.app[ENGINE]
    venues = listable(engine.venues)
    wanted = await read_listing(request, sorted(venues))
    listing = await list_pool(
        engine,
        request.app[REPOSITORY],
        venues[wanted.dex],
        wanted.token,
        wanted.quote_token,
        wanted.price,
        wanted.liquidity,
    )
    log.info("pool_listed", **listing.model_dump(mode="json"))
    return web.json_response(listing.model_dump(mode="json", by_alias=True), status=201)


async def tokens(request: web.Request) -> web.Response:
    """Every token this engine knows and every pair its venues have, each with its venues."""
    venues = request.app[ENGINE].venues
    found = await asyncio.gather(*(venue.pairs() for venue in venues.values()))
    catalog = Catalog(
        tokens=tuple(
            TokenInfo(symbol=t.symbol, mint=t.mint, decimals=t.decimals, listed=t.listed)
            for t in sorted(TOKENS.values(), key=lambda t: t.symbol)
        ),
        pairs=pairs_by_venue(dict(zip(venues, found, strict=True))),
    )
    return web.json_response(catalog.model_dump(mode="json", by_alias=True))


def pairs_by_venue(found: Mapping[str, frozenset[frozenset[str]]]) -> tuple[PairInfo, ...]:
    """Each pair any venue has, with the venues that have it, all sorted."""
    venues: defaultdict[tuple[str, str], list[str]] = defaultdict(list)
    for name in sorted(found):
        for pair in found[name]:
            first, second = sorted(pair)
            venues[first, second].append(name)
    return tuple(PairInfo(tokens=pair, venues=tuple(venues[pair])) for pair in sorted(venues))


async def read_listing(request: web.Request, names: list[str]) -> ListingRequest:
    """The listing a POST carries, on one of the venues `names`, or why it cannot be read.

    As an order is read: JSON in UTF-8 (415 otherwise), within the request timeout (408), no
    larger than `max_body_bytes` once decoded (413); unreadable JSON is a 400, an invalid
    listing a 422 naming each bad field.
    """
    body = read_json(await read_body(request, "a listing"))
    if not isinstance(body, dict):
        raise InvalidListing("a listing must be a JSON object", details=[])
    try:
        return ListingRequest.model_validate(
            body, context={LISTABLE: names}, by_alias=True, by_name=False
        )
    except ValidationError as error:
        raise InvalidListing("invalid listing", details=field_reasons(error)) from error


async def list_pool(
    engine: Engine,
    repository: Repository,
    venue: Listable,
    token: str,
    quote_token: str,
    price: Decimal,
    liquidity: Decimal,
) -> Listing:
    """List the pool on `venue`, wake the snipers waiting for it, and tell the other engines.

    The snipers are due once this returns, whichever engine will take them.
    """
    listing = await venue.list_pool(token, quote_token, price, liquidity)
    await engine.listed()
    await announce(repository)
    return listing


async def announce(repository: Repository) -> None:
    """NOTIFY the other engines that this one listed a pool.

    Only a hint: one that is lost is logged, and their venues still learn the listing from the
    chain the next time they look for its pair or are asked for their pairs.
    """
    try:
        await repository.notify(LISTINGS_CHANNEL, listing_payload(repository.owner))
    except Exception as error:
        log.warning("listing_announcement_lost", error=repr(error))


async def learn(venues: Venues) -> None:
    """Have every venue read the listings on its chain, registering the tokens they list.

    Done at start, before the engine takes up orders: an order on a token listed before this
    engine started must validate, and its swap be built, as on the engine that listed it.
    """
    await asyncio.gather(*(venue.pairs() for venue in venues.values()))


@asynccontextmanager
async def learning(engine: Engine) -> AsyncIterator[Callable[[], None]]:
    """The listener's `on_listing`: another engine listed a pool.

    The callback only sets an event, as a listener's callback must not block; a task then
    has the venues learn what was listed, and only then wakes the sniper orders, so that they
    find the new pool and its token. Announcements heard meanwhile are served by one pass.
    """
    heard = asyncio.Event()
    task = asyncio.create_task(_learn_when_heard(engine, heard), name="listings-learner")
    try:
        yield heard.set
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def _learn_when_heard(engine: Engine, heard: asyncio.Event) -> None:
    while True:
        await heard.wait()
        heard.clear()
        try:
            await learn(engine.venues)
        except Exception as error:
            log.warning("listings_not_learnt", error=repr(error))
        engine.listing_added()


@asynccontextmanager
async def demo_lister(
    engine: Engine, repository: Repository, interval_s: float | None
) -> AsyncIterator[None]:
    """Every `interval_s` (if set), list a fresh token on a venue that takes listings.

    For demonstrations: sniper orders have something to wait for. Stopped on exit.
    """
    if interval_s is None:
        yield
        return
    task = asyncio.create_task(
        _list_demo_tokens(engine, repository, interval_s, random.Random()), name="demo-lister"
    )
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def _list_demo_tokens(
    engine: Engine, repository: Repository, interval_s: float, rng: random.Random
) -> None:
    while True:
        await asyncio.sleep(interval_s)
        try:
            await _list_demo_token(engine, repository, rng)
        except Exception as error:
            log.warning("demo_listing_failed", error=repr(error))


async def _list_demo_token(engine: Engine, repository: Repository, rng: random.Random) -> None:
    """A new symbol (`DEMO` and 4 letters or digits) priced in SOL, on a random venue.

    Its price is 0.000001 to 0.001 SOL, and its pool holds 50 to 500 SOL.
    """
    venues = listable(engine.venues)
    if not venues:
        log.warning("demo_listing_skipped", reason="no venue takes listings")
        return
    venue = venues[rng.choice(sorted(venues))]
    symbol = DEMO_PREFIX + "".join(rng.choices(DEMO_ALPHABET, k=4))
    price = Decimal(rng.randint(1, 1000)).scaleb(-6)
    liquidity = Decimal(rng.randint(50, 500))
    listing = await list_pool(engine, repository, venue, symbol, DEMO_QUOTE_TOKEN, price, liquidity)
    log.info("demo_listing", **listing.model_dump(mode="json"))
