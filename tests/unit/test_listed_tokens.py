"""Tokens and pools that venues list, and simulated venues listing them on an in-memory ledger.

A listed token's identity and its registration; the pool a listing opens; a venue listing,
quoting, swapping and learning what other venues listed.

`TOKENS` is process-wide and every test of the run shares it, so each test lists a symbol of
its own and never assumes a symbol unknown unless it made it up.
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import pytest
from solders.keypair import Keypair
from solders.pubkey import Pubkey

from orderengine.errors import AlreadyListed, NoRoute
from orderengine.tokens import (
    LISTED_DECIMALS,
    TOKENS,
    U64_MAX,
    WSOL_MINT,
    listed_token,
    register,
    token_named,
)
from orderengine.transaction import build, min_amount_out, raw_units
from orderengine.venues.market import Market
from orderengine.venues.meteora import Meteora
from orderengine.venues.pool import Pool, pool_address
from orderengine.venues.raydium import Raydium
from orderengine.venues.simulated import SimulatedVenue
from orderengine.venues.values import Dex, Listing
from orderengine.venues.venue import Listable
from tests.ledger import MemoryLedger, utc_now

SIGNER = Keypair.from_seed(bytes([5] * 32))


def fresh_symbol() -> str:
    """A symbol no other test lists."""
    return "T" + uuid.uuid4().hex[:8].upper()


def venue(kind: type[SimulatedVenue], ledger: MemoryLedger, **settings: Any) -> SimulatedVenue:
    values: dict[str, Any] = {
        "latency_scale": 0,
        "failure_rate": 0,
        "volatility_bps": 0,
        "seed": 3,
        **settings,
    }
    return kind(ledger, **values)


def test_a_listed_token_has_a_mint_of_its_own_derived_from_its_symbol() -> None:
    symbol = fresh_symbol()

    token = listed_token(symbol, Decimal("0.015"))

    assert token == listed_token(symbol, Decimal("0.015"))
    assert Pubkey.from_string(token.mint) != Pubkey.from_string(
        listed_token(fresh_symbol(), Decimal("0.015")).mint
    )
    assert len(bytes(Pubkey.from_string(token.mint))) == 32
    assert token.mint not in {t.mint for t in TOKENS.values()}
    assert (token.symbol, token.decimals, token.usd_price, token.listed) == (
        symbol,
        LISTED_DECIMALS,
        Decimal("0.015"),
        True,
    )


def test_the_most_one_order_may_sell_of_a_listed_token_fits_a_swap_instruction() -> None:
    token = listed_token(fresh_symbol(), Decimal("0.000001"))

    assert token.max_amount >= Decimal(10) ** 9
    assert raw_units(token.max_amount, token.decimals) <= U64_MAX


@pytest.mark.parametrize("symbol", ["", "A", "new", "NEW-COIN", "ABCDEFGHIJKLM", "ŞOL"])
def test_only_a_listable_symbol_makes_a_listed_token(symbol: str) -> None:
    with pytest.raises(ValueError, match="not a symbol"):
        listed_token(symbol, Decimal(1))


def test_a_registered_token_is_known_to_the_whole_engine() -> None:
    symbol = fresh_symbol()
    assert token_named(symbol) is None

    register(listed_token(symbol, Decimal(2)))

    known = token_named(symbol.lower())
    assert known is not None
    assert known.listed
    assert TOKENS[symbol] is known


def test_registering_a_symbol_already_known_changes_nothing() -> None:
    symbol = fresh_symbol()
    first = listed_token(symbol, Decimal(2))
    register(first)

    register(listed_token(symbol, Decimal(900)))
    register(listed_token("SOL", Decimal(1)))

    assert TOKENS[symbol] is first
    assert TOKENS["SOL"].mint == WSOL_MINT
    assert not TOKENS["SOL"].listed


def listing(token: str, price: str, liquidity: str, quote_token: str = "SOL") -> Listing:
    return Listing(
        dex="meteora",
        token=token,
        quote_token=quote_token,
        price=Decimal(price),
        liquidity=Decimal(liquidity),
        pool=pool_address("meteora", token, quote_token),
        listed_at=utc_now(),
    )


def test_a_listed_pool_holds_its_liquidity_against_the_token_at_the_listed_price() -> None:
    symbol = fresh_symbol()
    register(listed_token(symbol, Decimal("0.015")))

    pool = Pool.listed(listing(symbol, "0.0001", "5000"), Market(0, volatility_bps=0))
    state = pool.at(now=0.0, half_life_s=0)

    assert state.quote_reserve == Decimal(5000)
    assert state.base_reserve == Decimal(50_000_000)
    assert state.price == pool.anchor == Decimal("0.0001")
    assert (pool.base.symbol, pool.quote.symbol) == (symbol, "SOL")
    assert pool.address == pool_address("meteora", symbol, "SOL")


def test_a_listed_pool_drifts_around_its_listed_price_and_recovers() -> None:
    symbol = fresh_symbol()
    register(listed_token(symbol, Decimal(450)))
    pool = Pool.listed(listing(symbol, "3", "900"), Market(4, volatility_bps=20))

    prices = [pool.at(now=float(second), half_life_s=0).price for second in range(500)]
    pool.adopt(pool.at(now=500.0, half_life_s=0).settle(symbol, Decimal(50), Decimal(40), 500.0))
    later = pool.at(now=501.0, half_life_s=0)

    assert len(set(prices)) > 250
    assert all(Decimal("2.8") < price < Decimal("3.2") for price in prices)
    assert later.price == pytest.approx(later.market, rel=Decimal("1e-20"))


async def test_a_listed_pair_quotes_and_swaps_on_its_venue_only() -> None:
    ledger = MemoryLedger()
    meteora, raydium = venue(Meteora, ledger), venue(Raydium, ledger)
    symbol = fresh_symbol()

    listed = await meteora.list_pool(symbol, "SOL", Decimal("0.0001"), Decimal("5000"))
    quote = await meteora.quote("SOL", symbol, Decimal("0.5"))
    blockhash = await meteora.recent_blockhash()
    transaction = build(uuid.uuid4(), quote, min_amount_out(quote, 100), SIGNER, blockhash)
    execution = await meteora.execute(transaction)

    assert isinstance(meteora, Listable)
    assert (listed.dex, listed.token, listed.quote_token) == ("meteora", symbol, "SOL")
    assert listed.pool == quote.pool == pool_address("meteora", symbol, "SOL")
    # 0.5 SOL, less Meteora's fee of at least 0.15%, buys about 5,000 of the token at 0.0001.
    assert Decimal(4_900) < quote.amount_out < Decimal(5_000)
    assert execution.amount_out >= transaction.min_amount_out
    assert frozenset((symbol, "SOL")) in await meteora.pairs()
    assert frozenset((symbol, "SOL")) not in await raydium.pairs()
    with pytest.raises(NoRoute, match=f"raydium has no SOL/{symbol} pool"):
        await raydium.quote("SOL", symbol, Decimal("0.5"))


async def test_a_pair_the_venue_has_is_not_listed_again_either_way_round() -> None:
    meteora = venue(Meteora, MemoryLedger())
    symbol = fresh_symbol()
    await meteora.list_pool(symbol, "USDC", Decimal(2), Decimal(1000))

    with pytest.raises(AlreadyListed):
        await meteora.list_pool(symbol, "USDC", Decimal(3), Decimal(1000))
    with pytest.raises(AlreadyListed):
        await meteora.list_pool("USDC", symbol, Decimal("0.5"), Decimal(1000))
    with pytest.raises(AlreadyListed) as built_in:
        await meteora.list_pool("JUP", "USDC", Decimal(1), Decimal(1000))
    assert built_in.value.status == 409
    assert built_in.value.code == "already_listed"


async def test_a_venue_learns_what_another_venue_of_its_name_listed_on_the_chain() -> None:
    """As an engine's venue learns what another engine's listed on the same chain."""
    ledger = MemoryLedger()
    lister, other = venue(Raydium, ledger), venue(Raydium, ledger)
    quoting, asked = fresh_symbol(), fresh_symbol()
    await lister.list_pool(quoting, "SOL", Decimal("0.01"), Decimal(100))
    await lister.list_pool(asked, "SOL", Decimal("0.02"), Decimal(100))

    quote = await other.quote(quoting, "SOL", Decimal(10))
    pairs = await other.pairs()

    assert quote.pool == pool_address("raydium", quoting, "SOL")
    assert {frozenset((quoting, "SOL")), frozenset((asked, "SOL"))} <= pairs
    with pytest.raises(AlreadyListed):
        await other.list_pool(asked, "SOL", Decimal("0.02"), Decimal(100))


class CountedReads(MemoryLedger):
    """A chain that counts the reads of its listings."""

    reads = 0

    async def listings(self, dex: Dex | None = None) -> list[Listing]:
        self.reads += 1
        return await super().listings(dex)


async def test_a_pair_with_no_pool_here_reads_the_listings_only_once_there_are_new_ones() -> None:
    """The chain's listings are read again only once it holds more of them.

    Each quote of a token the other venue listed looks for its pool here, and finds none.
    """
    ledger = CountedReads()
    meteora, raydium, other_raydium = (
        venue(Meteora, ledger),
        venue(Raydium, ledger),
        venue(Raydium, ledger),
    )
    elsewhere, later = fresh_symbol(), fresh_symbol()
    await meteora.list_pool(elsewhere, "SOL", Decimal("0.0001"), Decimal("5000"))

    for _ in range(3):
        with pytest.raises(NoRoute):
            await raydium.quote("SOL", elsewhere, Decimal("0.5"))
    reads_while_nothing_new = ledger.reads
    await other_raydium.list_pool(later, "SOL", Decimal("0.01"), Decimal(100))
    quote = await raydium.quote(later, "SOL", Decimal(10))

    assert reads_while_nothing_new == 1
    assert ledger.reads == 2
    assert quote.pool == pool_address("raydium", later, "SOL")


async def test_a_token_may_be_priced_in_a_token_listed_before() -> None:
    ledger = MemoryLedger()
    raydium, meteora = venue(Raydium, ledger), venue(Meteora, ledger)
    base, newer = fresh_symbol(), fresh_symbol()
    await raydium.list_pool(base, "SOL", Decimal("0.001"), Decimal(100))

    listed = await meteora.list_pool(newer, base, Decimal(4), Decimal(1000))
    quote = await meteora.quote(base, newer, Decimal(40))

    assert listed.quote_token == base
    assert TOKENS[newer].usd_price == Decimal(4) * TOKENS[base].usd_price
    assert Decimal(9) < quote.amount_out < Decimal(10)


@pytest.mark.parametrize(
    ("token", "quote_token", "why"),
    [
        ("new", "SOL", "not a symbol"),
        ("NEW-COIN", "SOL", "not a symbol"),
        ("NEWCOIN", "DOGE", "unknown quote token"),
        ("SOL", "SOL", "against itself"),
    ],
)
async def test_a_listing_no_caller_should_ask_for_is_a_programming_error(
    token: str, quote_token: str, why: str
) -> None:
    ledger = MemoryLedger()

    with pytest.raises(ValueError, match=why):
        await venue(Meteora, ledger).list_pool(token, quote_token, Decimal(1), Decimal(1))
    assert ledger.listed == []


async def test_a_venue_opened_after_a_listing_has_pools_only_for_what_was_listed() -> None:
    """Venues open a pool for each two fixed tokens, not for every token known by then."""
    ledger = MemoryLedger()
    symbol = fresh_symbol()
    await venue(Meteora, ledger).list_pool(symbol, "SOL", Decimal(1), Decimal(10))

    pairs = await venue(Raydium, ledger).pairs()

    assert symbol in TOKENS
    assert not any(symbol in pair for pair in pairs)
    assert frozenset(("SOL", "USDC")) in pairs
