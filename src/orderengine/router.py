"""Smart order routing: ask every venue at once, take the largest net output, say why."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

import structlog

from orderengine.domain import RoutingDecided
from orderengine.errors import NoRoute, OrderEngineError
from orderengine.venues.values import Quote
from orderengine.venues.venue import Venue

log = structlog.get_logger(__name__)

DEFAULT_MAX_PRICE_IMPACT_PCT = Decimal(5)
"""The price impact beyond which a quote is no quote, unless the engine is given another."""


@dataclass(frozen=True)
class Decision:
    """The chosen quote, every other venue's answer, and the reason in words."""

    best: Quote
    quotes: tuple[Quote, ...]
    unavailable: dict[str, str]
    reason: str

    def details(self) -> RoutingDecided:
        """The routing event's details: what each venue offered and what was chosen."""
        return RoutingDecided(
            dex=self.best.dex, reason=self.reason, quotes=self.quotes, unavailable=self.unavailable
        )


class Router:
    """Quotes all venues concurrently under a deadline; a slow or failing venue is skipped."""

    def __init__(
        self,
        venues: Sequence[Venue],
        deadline_s: float,
        max_price_impact_pct: Decimal = DEFAULT_MAX_PRICE_IMPACT_PCT,
    ) -> None:
        self._venues = tuple(venues)
        self._deadline_s = deadline_s
        self._max_price_impact_pct = max_price_impact_pct

    async def route(
        self,
        token_in: str,
        token_out: str,
        amount_in: Decimal,
        *,
        window_s: float | None = None,
        quiet: bool = False,
    ) -> Decision:
        """The best quote among the venues that answered; `NoRoute` if none did.

        With a `window_s` (a sniper's), it does not wait for every venue: once a venue has
        quoted and the window has passed, the venues still quoting are left out. `quiet`
        (a price watcher quotes every poll) leaves out the decision's log line and logs the
        quotes it refuses at debug; a quote that times out or fails is still a warning. Each
        venue's quote is logged at debug only: the routing event keeps every quote, and
        `route_decided` the choice.
        """
        asks = [
            asyncio.ensure_future(self._ask(venue, token_in, token_out, amount_in, quiet))
            for venue in self._venues
        ]
        answers = await _within(asks, window_s)
        quotes = sorted(
            (a for a in answers if isinstance(a, Quote)), key=lambda q: q.amount_out, reverse=True
        )
        unavailable: dict[str, str] = {
            venue.name: answer
            for venue, answer in zip(self._venues, answers, strict=True)
            if isinstance(answer, str)
        }
        if not quotes:
            # Each venue's reason goes in the message too: it ends up as a failed order's error.
            why = "; ".join(f"{dex}: {said}" for dex, said in sorted(unavailable.items()))
            raise NoRoute(f"no venue could quote this swap ({why})", details=unavailable)
        decision = Decision(quotes[0], tuple(quotes), unavailable, reason(quotes, unavailable))
        if quiet:
            return decision
        log.info(
            "route_decided",
            dex=decision.best.dex,
            amount_out=str(decision.best.amount_out),
            reason=decision.reason,
        )
        return decision

    async def _ask(
        self, venue: Venue, token_in: str, token_out: str, amount_in: Decimal, quiet: bool
    ) -> Quote | str:
        """The venue's quote, or why there is none."""
        try:
            async with asyncio.timeout(self._deadline_s):
                quote = await venue.quote(token_in, token_out, amount_in)
        except TimeoutError:
            log.warning("quote_timed_out", dex=venue.name, deadline_s=self._deadline_s)
            return f"no quote within {self._deadline_s}s"
        except NoRoute as error:
            # A venue without the pair: an answer, not a failure, whoever asks.
            log.debug("quote_no_route", dex=venue.name, error=error.message)
            return f"quote failed: {error.message}"
        except Exception as error:
            log.warning("quote_failed", dex=venue.name, error=repr(error))
            # A venue's own refusal is worded for traders; anything else stays in the log.
            said = error.message if isinstance(error, OrderEngineError) else "internal error"
            return f"quote failed: {said}"
        # A watcher (`quiet`) asks often, and expects these answers: they are not warnings.
        refused = log.debug if quiet else log.warning
        if quote.amount_out <= 0:
            refused("quote_empty", dex=venue.name, amount_in=str(amount_in))
            return (
                f"{format(amount_in, 'f')} {token_in} buys less than the smallest unit"
                f" of {token_out}"
            )
        if quote.price_impact_pct > self._max_price_impact_pct:
            refused(
                "quote_over_price_impact",
                dex=venue.name,
                price_impact_pct=str(quote.price_impact_pct),
                limit_pct=str(self._max_price_impact_pct),
            )
            return (
                f"price impact of {format(quote.price_impact_pct, 'f')}% is over the"
                f" {format(self._max_price_impact_pct, 'f')}% limit"
            )
        if quiet:
            return quote
        log.debug(
            "quote",
            dex=venue.name,
            amount_out=str(quote.amount_out),
            fee=str(quote.fee),
            fee_bps=str(quote.fee_bps),
            price_impact_pct=str(quote.price_impact_pct),
        )
        return quote


async def _within(
    asks: Sequence[asyncio.Future[Quote | str]], window_s: float | None
) -> list[Quote | str]:
    """Every venue's answer; with a window, only those in by then or by the first quote."""
    if window_s is None:
        return list(await asyncio.gather(*asks))
    await asyncio.wait(asks, timeout=window_s)
    while not any(_quoted(ask) for ask in asks):
        running = [ask for ask in asks if not ask.done()]
        if not running:
            break
        await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
    late = f"no quote within the sniper window of {window_s:g}s"
    for ask in asks:
        ask.cancel()
    await asyncio.gather(*asks, return_exceptions=True)
    return [late if ask.cancelled() else ask.result() for ask in asks]


def _quoted(ask: asyncio.Future[Quote | str]) -> bool:
    return ask.done() and isinstance(ask.result(), Quote)


def reason(quotes: Sequence[Quote], unavailable: dict[str, str]) -> str:
    """Why the first of `quotes` (best first) won, in words a trader reads on the event."""
    best = quotes[0]
    if len(quotes) == 1:
        others = ", ".join(f"{name}: {why}" for name, why in unavailable.items())
        return f"{best.dex.capitalize()} is the only venue that quoted ({others})"
    runner_up = quotes[1]
    edge = (best.amount_out / runner_up.amount_out - 1) * 100
    return (
        f"{best.dex.capitalize()} {edge.quantize(Decimal('0.01'))}% better than"
        f" {runner_up.dex.capitalize()} after fees and price impact"
    )
