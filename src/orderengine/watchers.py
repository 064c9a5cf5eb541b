"""What wakes the orders that wait: price watchers for limit orders, listings for snipers.

Prices are watched per pair (tokenIn, tokenOut), not per order. Every engine runs one
`PriceWatcher`; each poll it leases the pairs limit orders wait on that no other live engine
watches (`WatchStore.watch_pairs`), so each pair is watched by one engine at a time, and asks
every venue for the pair's best net price at a reference amount. One statement then records
the price, makes due the orders whose limit it reaches, and reports the price to the others
when it has moved enough (`WatchStore.watched_price`). A thousand orders waiting on one pair
cost the same quotes as one. The watcher's quotes take no rate token: only the executions
they trigger do.

A woken limit order is then routed with its own amount; if that price is under its limit it
goes back to waiting (`Engine`). Snipers wait for a venue to list their pair: the
`ListingWatcher` checks when a listing is announced (here or by another engine), when a
sniper starts waiting, and every sweep in case an announcement was lost.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable
from decimal import ROUND_DOWN, Decimal

import structlog

from orderengine.domain import OrderEvent
from orderengine.errors import NoRoute, OrderEngineError
from orderengine.logs import Outage
from orderengine.router import Router
from orderengine.tokens import TOKENS
from orderengine.venues.venue import Venue
from orderengine.watch_store import WatchStore

log = structlog.get_logger(__name__)

REFERENCE_USD = Decimal(100)
"""A watcher quotes about this many dollars' worth of the token sold: a small order's price."""
SMALLER_REFERENCES = 2
"""How many times a watcher quotes a tenth of the amount before, when no venue quotes it: a
pool too shallow for the reference amount (a new listing) still has a price to wake on."""
RECHECK_POLLS = 5
"""Polls an order that went back to waiting sits out before the price may wake it again."""
MIN_POLL_S = 0.05
"""The shortest poll interval, whatever the latency scale: at a scale of 0 the watchers still
leave the database and the venues time for everything else."""


def reference_amount(symbol: str) -> Decimal:
    """The amount of `symbol` a price watcher quotes: `REFERENCE_USD` worth, at least a unit."""
    token = TOKENS[symbol]
    amount = (REFERENCE_USD / token.usd_price).quantize(token.unit, rounding=ROUND_DOWN)
    return max(amount, token.unit)


class PriceWatcher:
    """Watches the prices of the pairs this engine leases, every `poll_s`."""

    def __init__(
        self,
        watches: WatchStore,
        router: Router,
        *,
        poll_s: float,
        lease_s: float,
        event_bps: float,
        on_events: Callable[[list[OrderEvent]], None],
        on_woken: Callable[[], None],
    ) -> None:
        self._watches = watches
        self._router = router
        self._poll_s = max(poll_s, MIN_POLL_S)
        self._lease_s = max(lease_s, 3 * self._poll_s)
        self._event_bps = event_bps
        self._on_events = on_events
        self._on_woken = on_woken

    @property
    def recheck_s(self) -> float:
        """How long an order that went back to waiting sits out before it may be woken."""
        return RECHECK_POLLS * self._poll_s

    async def run(self) -> None:
        """Poll until cancelled; the next poll tries again after a failed one.

        A failure is logged when polls start failing, and once again when one works
        (`Outage`).
        """
        outage = Outage("price_watch_failed", "price_watch_recovered")
        while True:
            try:
                await self.poll()
            except OrderEngineError as error:
                outage.failed(error=error.message)
            except Exception:
                log.exception("price_watch_crashed")
            else:
                outage.worked()
            await asyncio.sleep(self._poll_s)

    async def poll(self) -> None:
        """Watch every pair this engine leases now, at once."""
        pairs = await self._watches.watch_pairs(self._lease_s)
        await asyncio.gather(*(self._watch(token_in, token_out) for token_in, token_out in pairs))

    async def stop(self) -> None:
        """Give the watches back, for another engine to take at its next poll."""
        with contextlib.suppress(OrderEngineError):
            await self._watches.stop_watching()

    async def _watch(self, token_in: str, token_out: str) -> None:
        price = await self._price(token_in, token_out)
        if price is None:
            return
        events, woken = await self._watches.watched_price(
            token_in, token_out, price, self._event_bps
        )
        self._on_events(events)
        if woken:
            log.info("limit_orders_woken", token_in=token_in, token_out=token_out, count=woken)
            self._on_woken()

    async def _price(self, token_in: str, token_out: str) -> Decimal | None:
        """The pair's best net price at the reference amount, or at a tenth of it, or less.

        On a pool too shallow for the reference amount, no venue quotes it within the price
        impact cap: a smaller amount's price is the one the orders that could fill would
        get. An order woken by it is routed with its own amount, and goes back to waiting if
        that does not reach its limit.
        """
        unit = TOKENS[token_in].unit
        amount = reference_amount(token_in)
        for _ in range(SMALLER_REFERENCES + 1):
            try:
                decision = await self._router.route(token_in, token_out, amount, quiet=True)
            except NoRoute as error:
                why = error.details
            else:
                return decision.best.price
            amount = (amount / 10).quantize(unit, rounding=ROUND_DOWN)
            if amount < unit:
                break
        log.info("price_unavailable", token_in=token_in, token_out=token_out, why=why)
        return None


class ListingWatcher:
    """Wakes the sniper orders whose pair a venue now lists."""

    def __init__(
        self,
        watches: WatchStore,
        venues: Iterable[Venue],
        *,
        every_s: float,
        on_woken: Callable[[], None],
    ) -> None:
        self._watches = watches
        self._venues = tuple(venues)
        self._every_s = every_s
        self._on_woken = on_woken
        self._poke = asyncio.Event()
        self._checking = asyncio.Lock()

    def poke(self) -> None:
        """Check soon: a pair may have been listed, or a sniper started waiting."""
        self._poke.set()

    async def run(self) -> None:
        """Check now, then when poked and every `every_s` at least, until cancelled.

        The first check finds what was listed while no engine ran. A failure is logged when
        checks start failing, and once again when one works (`Outage`).
        """
        outage = Outage("listing_check_failed", "listing_check_recovered")
        while True:
            self._poke.clear()
            try:
                await self.check()
            except OrderEngineError as error:
                outage.failed(error=error.message)
            except Exception:
                log.exception("listing_check_crashed")
            else:
                outage.worked()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poke.wait(), self._every_s)

    async def check(self) -> None:
        """Wake the snipers waiting for a pair some venue lists now; one check at a time.

        A listing's own check and the watcher's, poked by the news of that listing, would
        otherwise try to wake the same snipers at once. The second, finding them woken, still
        holds their rows' locks for a moment, and a claim in that moment, which skips locked
        rows, would pass them over with no wake-up to follow: a sweep late.
        """
        async with self._checking:
            await self._wake_listed()

    async def _wake_listed(self) -> None:
        awaited = await self._watches.awaited_listings()
        if not awaited:
            return
        listed = await self.listed()
        due = awaited & listed
        if not due:
            return
        woken = await self._watches.wake_listed(due)
        if woken:
            log.info("snipers_woken", count=woken, pairs=sorted("/".join(sorted(p)) for p in due))
            self._on_woken()

    async def listed(self) -> set[frozenset[str]]:
        """Every pair some venue lists now."""
        pairs = await asyncio.gather(*(venue.pairs() for venue in self._venues))
        return set().union(*pairs)
