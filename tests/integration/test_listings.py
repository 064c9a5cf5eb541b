"""Listing pools for new tokens over HTTP, and what every engine on the database makes of them.

`POST /api/simulation/listings` answers 201 with the listing, 409 for a pair the venue has,
and 422 naming each bad field; `GET /api/tokens` shows the tokens and each pair's venues. A
listed pair quotes and trades on its venue only; listings outlive the engine, reach the other
engines on the database, and the demo lister makes them on its own.

`TOKENS` is process-wide and every test of the run shares it, so each test lists a symbol of
its own (`fresh_symbol`) and never assumes a symbol unknown unless it made it up.
"""

from __future__ import annotations

import asyncio
import gzip
import io
import json
import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

import asyncpg
import pytest
from solders.pubkey import Pubkey

from orderengine import cli
from orderengine.notifications import LISTINGS_CHANNEL, Listener, listing_payload
from orderengine.tokens import WSOL_MINT
from orderengine.venues.chain import Chain
from orderengine.venues.pool import pool_address
from orderengine.venues.venue import Venue
from tests.engine_process import free_port
from tests.harness import Client, StartApp
from tests.polling import eventually
from tests.streams import submit, wait_terminal
from tests.venues import Delegated, Wrapped, wrapping

LISTINGS = "/api/simulation/listings"
LISTING_KEYS = {"dex", "token", "quoteToken", "price", "liquidity", "pool", "listedAt"}


def fresh_symbol() -> str:
    """A symbol no other test lists."""
    return "T" + uuid.uuid4().hex[:8].upper()


def listing(token: str, **fields: Any) -> dict[str, Any]:
    return {
        "dex": "meteora",
        "token": token,
        "quoteToken": "SOL",
        "price": "0.0001",
        "liquidity": "5000",
        **fields,
    }


async def post(client: Client, body: Any) -> tuple[int, dict[str, Any]]:
    response = await client.post(LISTINGS, json=body)
    answer: dict[str, Any] = await response.json()
    return response.status, answer


async def catalog(client: Client) -> dict[str, Any]:
    response = await client.get("/api/tokens")
    assert response.status == 200
    body: dict[str, Any] = await response.json()
    return body


def venues_of(body: dict[str, Any], *pair: str) -> list[str]:
    """The venues `GET /api/tokens` says have a pool for `pair`; [] if none has."""
    wanted = sorted(pair)
    found: list[str] = next((p["venues"] for p in body["pairs"] if p["tokens"] == wanted), [])
    return found


async def quote(client: Client, token_in: str, token_out: str, amount: str) -> dict[str, Any]:
    params = {"tokenIn": token_in, "tokenOut": token_out, "amountIn": amount}
    response = await client.get("/api/quotes", params=params)
    assert response.status == 200, await response.text()
    body: dict[str, Any] = await response.json()
    return body


async def test_a_listing_answers_201_with_the_listing(client: Client) -> None:
    symbol = fresh_symbol()

    status, body = await post(client, listing(symbol.lower(), quoteToken="sol"))

    assert status == 201, body
    assert set(body) == LISTING_KEYS
    assert (body["dex"], body["token"], body["quoteToken"]) == ("meteora", symbol, "SOL")
    assert (body["price"], body["liquidity"]) == ("0.0001", "5000")
    assert len(bytes(Pubkey.from_string(body["pool"]))) == 32
    assert datetime.fromisoformat(body["listedAt"]).tzinfo is not None


async def test_amounts_keep_every_digit_given_as_text_or_as_a_json_number(client: Client) -> None:
    text = json.dumps(listing(fresh_symbol(), price="0.000000123456789012345", liquidity="L"))

    response = await client.post(
        LISTINGS,
        data=text.replace('"L"', "12345.6789"),
        headers={"Content-Type": "application/json"},
    )
    body = await response.json()

    assert response.status == 201, body
    assert (body["price"], body["liquidity"]) == ("0.000000123456789012345", "12345.6789")


async def test_a_pair_the_venue_has_is_a_409_even_built_in_and_either_way_round(
    client: Client,
) -> None:
    symbol = fresh_symbol()
    assert (await post(client, listing(symbol)))[0] == 201

    refusals = [
        await post(client, listing(symbol, price="0.0002")),
        await post(client, listing("SOL", quoteToken=symbol, price="10000")),
        await post(client, listing("JUP", quoteToken="USDC", price="0.8")),
        await post(client, listing("usdc", quoteToken="sol", dex="raydium")),
    ]
    elsewhere, listed = await post(client, listing(symbol, dex="raydium"))

    for status, body in refusals:
        assert status == 409, body
        assert set(body) == {"error"}
        assert set(body["error"]) == {"code", "message", "details"}
        assert body["error"]["code"] == "already_listed"
    assert refusals[2][1]["error"]["details"] == {"dex": "meteora", "tokens": ["JUP", "USDC"]}
    assert elsewhere == 201, listed
    assert venues_of(await catalog(client), symbol, "SOL") == ["meteora", "raydium"]


BAD_FIELDS: list[tuple[str, dict[str, Any]]] = [
    ("token", {"token": "A"}),
    ("token", {"token": "NEW-COIN"}),
    ("token", {"token": "ABCDEFGHIJKLM"}),
    ("token", {"token": "ſol"}),
    ("token", {"token": 12}),
    ("quoteToken", {"quoteToken": "DOGE"}),
    ("quoteToken", {"quoteToken": ""}),
    ("price", {"price": "0"}),
    ("price", {"price": "-0.0001"}),
    ("price", {"price": 0}),
    ("price", {"price": "1e999"}),
    ("price", {"price": "abc"}),
    ("price", {"price": "NaN"}),
    ("price", {"price": " 1"}),
    ("price", {"price": "１"}),
    ("price", {"price": True}),
    ("liquidity", {"liquidity": "0"}),
    ("liquidity", {"liquidity": "Infinity"}),
    ("liquidity", {"liquidity": "1" * 31}),
    ("liquidity", {"price": "1e-30", "liquidity": "1"}),  # 10^30 of the token in the pool
    ("liquidity", {"price": "9" * 30, "liquidity": "9" * 30}),  # 10^30 SOL: over a u64
    ("liquidity", {"liquidity": "0.0000000001"}),  # a tenth of a lamport
    ("liquidity", {"price": "1e29", "liquidity": "100"}),  # 10^-27 of the token
    ("dex", {"dex": "orca"}),
    ("dex", {"dex": 1}),
    ("fee", {"fee": "0.01"}),
]


async def test_an_invalid_listing_is_a_422_naming_the_field_and_lists_nothing(
    client: Client, subtests: pytest.Subtests
) -> None:
    """One engine answers every case, each about a symbol of its own."""
    for field, fields in BAD_FIELDS:
        with subtests.test(f"{field}={fields}"):
            symbol = fresh_symbol()

            status, body = await post(client, {**listing(symbol), **fields})

            assert status == 422, body
            assert body["error"]["code"] == "invalid_listing"
            assert field in [reason["field"] for reason in body["error"]["details"]]
            assert venues_of(await catalog(client), symbol, "SOL") == []


@pytest.mark.parametrize(
    ("fields", "code", "holding"),
    [
        ({"price": "9" * 30, "liquidity": "9" * 30}, "pool_too_large", "more SOL than a u64"),
        ({"liquidity": "0.0000000001"}, "pool_too_small", "less than 0.000000001 SOL"),
        ({"price": "1e29", "liquidity": "100"}, "pool_too_small", "less than 0.000001 of"),
    ],
    ids=["SOL side over a u64", "SOL side under a lamport", "token side under a unit"],
)
async def test_a_pool_no_swap_could_use_is_refused_saying_which_side(
    client: Client, fields: dict[str, str], code: str, holding: str
) -> None:
    status, body = await post(client, listing(fresh_symbol(), **fields))

    assert status == 422, body
    [reason] = body["error"]["details"]
    assert (reason["field"], reason["type"]) == ("liquidity", code)
    assert holding in reason["message"]


@pytest.mark.parametrize(
    ("price", "liquidity"),
    [("18446744073", "18446744073"), ("0.000000001", "0.000000001"), ("1000", "0.001")],
    ids=["SOL side near a u64", "a lamport a side", "a unit of the token"],
)
async def test_a_pool_at_the_bounds_quotes_both_ways_or_says_why_not(
    client: Client, price: str, liquidity: str
) -> None:
    symbol = fresh_symbol()
    status, body = await post(client, listing(symbol, price=price, liquidity=liquidity))
    assert status == 201, body

    selling = await quote(client, symbol, "SOL", "0.000001")
    buying = await quote(client, "SOL", symbol, "0.000000001")

    for preview in (selling, buying):
        quoted = [offer["dex"] for offer in preview["quotes"]]
        refused = preview["unavailable"].get("meteora", "")
        assert quoted == ["meteora"] or refused.startswith(("0.0", "price impact")), preview


async def test_a_missing_field_is_named(client: Client) -> None:
    body = listing(fresh_symbol())
    del body["price"], body["dex"]

    status, answer = await post(client, body)

    assert status == 422
    assert {"price", "dex"} <= {reason["field"] for reason in answer["error"]["details"]}


async def test_a_token_listed_against_itself_is_a_422(client: Client) -> None:
    symbol = fresh_symbol()

    status, body = await post(client, listing(symbol.lower(), quoteToken=symbol))
    same_fixed, _ = await post(client, listing("sol", quoteToken="SOL"))

    assert status == same_fixed == 422
    assert body["error"]["details"] == [
        {
            "field": "quoteToken",
            "message": "quoteToken must differ from token",
            "type": "value_error",
        }
    ]


async def test_an_unknown_venue_is_refused_naming_those_that_take_listings(
    client: Client,
) -> None:
    status, body = await post(client, listing(fresh_symbol(), dex="orca"))

    assert status == 422
    [reason] = body["error"]["details"]
    assert reason["message"] == "'orca' takes no listings here; venues that do: meteora, raydium"


async def test_a_venue_that_takes_no_listings_is_refused(start_app: StartApp) -> None:
    client = await start_app(
        venues=wrapping(lambda v: Delegated(v) if v.name == "raydium" else Wrapped(v))
    )
    symbol = fresh_symbol()

    status, body = await post(client, listing(symbol, dex="raydium"))
    listed, _ = await post(client, listing(symbol, dex="meteora"))

    assert status == 422
    [reason] = body["error"]["details"]
    assert reason["message"] == "'raydium' takes no listings here; venues that do: meteora"
    assert listed == 201


async def test_a_body_that_is_not_a_json_object_is_a_422(client: Client) -> None:
    status, body = await post(client, [listing(fresh_symbol())])

    assert status == 422
    assert body["error"]["code"] == "invalid_listing"


UNREADABLE: list[tuple[dict[str, str], bytes, int, str]] = [
    ({"Content-Type": "application/json"}, b'{"dex": ', 400, "bad_request"),
    (
        {"Content-Type": "application/json"},
        b'{"dex": "meteora", "dex": "x"}',
        400,
        "bad_request",
    ),
    ({"Content-Type": "text/plain"}, b"{}", 415, "unsupported_media_type"),
    (
        {"Content-Type": "application/json"},
        b'{"dex": "' + b"m" * 16_384 + b'"}',
        413,
        "request_entity_too_large",
    ),
    (
        {"Content-Type": "application/json", "Content-Encoding": "br"},
        b"{}",
        415,
        "unsupported_media_type",
    ),
    (
        {"Content-Type": "application/json", "Content-Encoding": "gzip"},
        gzip.compress(b"[]", mtime=0),
        422,
        "invalid_listing",
    ),
]


async def test_a_body_that_cannot_be_read_is_refused_as_an_orders_is(
    client: Client, subtests: pytest.Subtests
) -> None:
    for number, (headers, data, status, code) in enumerate(UNREADABLE):
        with subtests.test(f"headers{number}-{data[:32]!r}-{status}-{code}"):
            response = await client.post(LISTINGS, data=data, headers=headers)

            assert response.status == status
            assert (await response.json())["error"]["code"] == code


async def test_tokens_show_every_token_and_each_pair_with_its_venues(client: Client) -> None:
    symbol = fresh_symbol()
    before = await catalog(client)

    _, listed = await post(client, listing(symbol))
    after = await catalog(client)

    symbols = [token["symbol"] for token in after["tokens"]]
    assert symbols == sorted(symbols)
    assert {"symbol": "SOL", "mint": WSOL_MINT, "decimals": 9, "listed": False} in after["tokens"]
    assert {t["symbol"] for t in after["tokens"] if not t["listed"]} == {
        "SOL",
        "USDC",
        "USDT",
        "JUP",
        "BONK",
    }
    assert symbol not in [token["symbol"] for token in before["tokens"]]
    [new] = [token for token in after["tokens"] if token["symbol"] == symbol]
    assert (new["decimals"], new["listed"]) == (6, True)
    assert len(bytes(Pubkey.from_string(new["mint"]))) == 32
    assert venues_of(before, symbol, "SOL") == []
    assert venues_of(after, symbol, "SOL") == [listed["dex"]]
    assert venues_of(after, "USDC", "SOL") == ["meteora", "raydium"]
    assert [pair["tokens"] for pair in after["pairs"]] == sorted(
        pair["tokens"] for pair in after["pairs"]
    )
    assert len(after["pairs"]) == len(before["pairs"]) + 1
    assert await catalog(client) == after


async def test_a_listed_pair_quotes_and_trades_on_its_venue_and_not_on_the_other(
    start_app: StartApp,
) -> None:
    """On a still market, so that the amount bought is the listed price's.

    A pool's price walks about 0.16% either way (one standard deviation): enough, in some
    runs, to outweigh the fee the bounds below count on.
    """
    client = await start_app(price_volatility_bps=0)
    symbol = fresh_symbol()
    _, listed = await post(client, listing(symbol))

    preview = await quote(client, "SOL", symbol, "0.5")
    order_id = await submit(
        client,
        {"type": "market", "tokenIn": "SOL", "tokenOut": symbol, "amountIn": "0.5"},
    )
    order = await wait_terminal(client, order_id)

    assert preview["dex"] == "meteora"
    [offered] = preview["quotes"]
    assert offered["pool"] == listed["pool"]
    # 0.5 SOL less the fee buys a little under 5,000 of the token at 0.0001 SOL.
    assert Decimal(4_900) < Decimal(offered["amountOut"]) < Decimal(5_000)
    assert list(preview["unavailable"]) == ["raydium"]
    assert f"no SOL/{symbol} pool" in preview["unavailable"]["raydium"]
    assert order["status"] == "confirmed", order
    assert order["dex"] == "meteora"


async def test_listings_outlive_a_restart_on_the_same_database(start_app: StartApp) -> None:
    symbol = fresh_symbol()
    first = await start_app()
    _, listed = await post(first, listing(symbol, dex="raydium"))
    await first.close()

    restarted = await start_app()
    preview = await quote(restarted, symbol, "SOL", "100")
    again, _ = await post(restarted, listing(symbol, dex="raydium"))

    assert venues_of(await catalog(restarted), symbol, "SOL") == ["raydium"]
    assert [offered["pool"] for offered in preview["quotes"]] == [listed["pool"]]
    assert again == 409


class Watched(Wrapped):
    """Notes each time its venue is asked for its pairs, as an engine learning listings asks."""

    def __init__(self, inner: Venue, asked: list[str]) -> None:
        super().__init__(inner)
        self.asked = asked

    async def pairs(self) -> frozenset[frozenset[str]]:
        self.asked.append(self.name)
        return await super().pairs()


async def test_another_engine_on_the_database_hears_of_a_listing_and_learns_it(
    start_app: StartApp,
) -> None:
    asked: list[str] = []
    first = await start_app()
    second = await start_app(venues=wrapping(lambda venue: Watched(venue, asked)))
    learnt_at_start = sorted(asked)
    symbol = fresh_symbol()

    _, listed = await post(first, listing(symbol))

    async def learnt() -> bool:
        return len(asked) >= 2 * len(learnt_at_start)

    await eventually(learnt, limit_s=10)
    preview = await quote(second, "SOL", symbol, "0.5")
    assert learnt_at_start == ["meteora", "raydium"]
    assert [offered["pool"] for offered in preview["quotes"]] == [listed["pool"]]
    assert venues_of(await catalog(second), symbol, "SOL") == ["meteora"]


async def test_a_listing_never_announced_is_found_on_the_chain(
    client: Client, chain: Chain
) -> None:
    """An announcement is only a hint: this listing is made on the chain alone, unannounced."""
    symbol = fresh_symbol()
    pool = pool_address("raydium", symbol, "SOL")
    await chain.add_listing("raydium", symbol, "SOL", Decimal("0.5"), Decimal(100), pool)

    body = await catalog(client)
    preview = await quote(client, symbol, "SOL", "10")

    assert venues_of(body, symbol, "SOL") == ["raydium"]
    assert symbol in [token["symbol"] for token in body["tokens"]]
    assert [offered["pool"] for offered in preview["quotes"]] == [pool]


async def test_the_listener_hands_on_another_engines_listings_only(database_url: str) -> None:
    me, other = uuid.uuid4(), uuid.uuid4()
    heard: asyncio.Queue[str] = asyncio.Queue()
    sender = await asyncpg.connect(database_url)
    try:
        async with Listener.open(
            database_url,
            me,
            lambda order_id, seq: heard.put_nowait("event"),
            lambda accepted: heard.put_nowait("orders"),
            on_listing=lambda: heard.put_nowait("listing"),
        ):
            for payload in (listing_payload(me), "not an engine", listing_payload(other)):
                await sender.execute("SELECT pg_notify($1, $2)", LISTINGS_CHANNEL, payload)
            async with asyncio.timeout(5):
                first = await heard.get()
            await sender.execute("SELECT pg_notify($1, $2)", LISTINGS_CHANNEL, str(other))
            async with asyncio.timeout(5):
                second = await heard.get()
    finally:
        await sender.close()

    assert (first, second) == ("listing", "listing")
    assert heard.empty()


async def test_the_demo_lister_lists_fresh_tokens_priced_in_sol(start_app: StartApp) -> None:
    client = await start_app(demo_listing_s=0.05)
    demos: list[dict[str, Any]] = []

    async def listed_twice() -> bool:
        body = await catalog(client)
        demos[:] = [p for p in body["pairs"] if any(t.startswith("DEMO") for t in p["tokens"])]
        return len(demos) >= 2

    await eventually(listed_twice, limit_s=10)
    for pair in demos:
        [token] = [symbol for symbol in pair["tokens"] if symbol != "SOL"]
        assert len(token) == 8
        assert "SOL" in pair["tokens"]
        assert len(pair["venues"]) == 1
        assert (await quote(client, "SOL", token, "0.01"))["dex"] == pair["venues"][0]


async def test_the_cli_lists_a_token_on_a_running_engine(client: Client) -> None:
    symbol = fresh_symbol()
    body = listing(symbol.lower(), dex="raydium", price="0.25", liquidity="1000")
    out, err = io.StringIO(), io.StringIO()

    status = await cli.list_token(str(client.make_url("/")), body, out=out, err=err)

    assert status == cli.LISTED
    assert err.getvalue() == ""
    printed = json.loads(out.getvalue())
    assert (printed["dex"], printed["token"], printed["price"]) == ("raydium", symbol, "0.25")
    assert venues_of(await catalog(client), symbol, "SOL") == ["raydium"]


async def test_the_cli_prints_the_engines_refusal_and_fails(client: Client) -> None:
    out, err = io.StringIO(), io.StringIO()
    body = listing("JUP", quoteToken="USDC")

    status = await cli.list_token(str(client.make_url("")), body, out=out, err=err)

    assert status == cli.REFUSED
    assert out.getvalue() == ""
    assert "HTTP 409" in err.getvalue()
    assert '"already_listed"' in err.getvalue()


async def test_the_cli_says_so_when_no_engine_answers() -> None:
    out, err = io.StringIO(), io.StringIO()
    url = f"http://127.0.0.1:{free_port()}"

    status = await cli.list_token(url, listing(fresh_symbol()), out=out, err=err)

    assert status == cli.UNREACHABLE
    assert err.getvalue().startswith(f"no engine answered at {url}: ")
    assert out.getvalue() == ""
