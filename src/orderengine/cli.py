"""The command line of `python -m orderengine`: serve (the default), ask an engine, or keys.

`list-token` lists a pool for a new token on a running engine, through its HTTP API
(`POST /api/simulation/listings`), as any client would: it needs no settings and no database.
The price and the liquidity are sent as the text given, so they stay exact.
"""

from __future__ import annotations

import argparse
import sys
from typing import TextIO

import aiohttp

from orderengine.wire import LISTINGS_PATH

DEFAULT_URL = "http://127.0.0.1:8080"
TIMEOUT_S = 30.0

LISTED = 0
REFUSED = 1
"""The engine answered with an error (the error body is printed)."""
UNREACHABLE = 3
"""No engine answered at the URL (2 is argparse's, for a command line it cannot read)."""


def parser() -> argparse.ArgumentParser:
    """The command line: no command (or `serve`) runs the engine; or one of the others.

    `list-token` asks a running engine; `keys` manages the API keys in its database; `demo`
    places orders and shows them live.
    """
    parser = argparse.ArgumentParser(
        prog="python -m orderengine", description="A DEX order execution engine."
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser("serve", help="run the engine (what no command does)")
    listing = commands.add_parser(
        "list-token",
        help="list a pool for a token on a running engine's venue",
        description="List a pool for a token on a venue of a running engine. Prints the"
        f" listing, or the engine's error; exits {REFUSED} on an error answer and"
        f" {UNREACHABLE} when no engine answers.",
    )
    listing.add_argument("--dex", required=True, help="the venue, e.g. meteora")
    listing.add_argument("--token", required=True, help="the token's symbol, e.g. NEWCOIN")
    listing.add_argument(
        "--price", required=True, help="its price in the quote token, a decimal, e.g. 0.0001"
    )
    listing.add_argument(
        "--liquidity", required=True, help="the pool's quote token side, a decimal, e.g. 5000"
    )
    listing.add_argument("--quote-token", default="SOL", help="the token it is priced in")
    listing.add_argument("--url", default=DEFAULT_URL, help=f"the engine (default {DEFAULT_URL})")
    listing.add_argument("--key", help="an admin API key, when the engine has keys in force")
    keys = commands.add_parser(
        "keys",
        help="create, list or revoke the API keys stored in the engine's database",
        description="API keys in the engine's database (ORDERENGINE_DATABASE_URL, or the"
        " embedded one): a new key is printed once, and only its hash is stored.",
    )
    actions = keys.add_subparsers(dest="action", metavar="ACTION", required=True)
    actions.add_parser("create", help="create a key and print it once").add_argument("name")
    actions.add_parser("list", help="every key's name and dates, never a key")
    actions.add_parser("revoke", help="revoke a key on every engine").add_argument("name")
    demo = commands.add_parser(
        "demo",
        help="place five orders and watch them live",
        description="Place orders on a running engine (or start one) and show them live.",
    )
    demo.add_argument("--url", default=DEFAULT_URL, help=f"the engine (default {DEFAULT_URL})")
    demo.add_argument("--key", help="an API key (an admin's for --sniper), when keys are in force")
    demo.add_argument("--count", type=int, default=5, help="how many orders (default 5)")
    kinds = demo.add_mutually_exclusive_group()
    kinds.add_argument(
        "--limit",
        action="store_const",
        const="limit",
        dest="kind",
        help="limit orders around the current price: some fill, the others wait, then expire",
    )
    kinds.add_argument(
        "--sniper",
        action="store_const",
        const="sniper",
        dest="kind",
        help="sniper orders for a token no venue lists, which the demo then lists",
    )
    return parser


def listing_body(arguments: argparse.Namespace) -> dict[str, str]:
    """The listing to POST, from `list-token`'s arguments."""
    return {
        "dex": arguments.dex,
        "token": arguments.token,
        "quoteToken": arguments.quote_token,
        "price": arguments.price,
        "liquidity": arguments.liquidity,
    }


async def list_token(
    url: str,
    body: dict[str, str],
    *,
    key: str | None = None,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> int:
    """POST the listing `body` to the engine at `url`; print its answer; the exit status.

    The listing goes to `out`; an error answer, or why no answer came, to `err`.
    """
    endpoint = url.rstrip("/") + LISTINGS_PATH
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT_S)) as session,
            session.post(endpoint, json=body, headers=_authorization(key)) as response,
        ):
            status, text = response.status, await response.text()
    except (aiohttp.ClientError, TimeoutError) as error:
        reason = str(error) or type(error).__name__
        print(f"no engine answered at {url}: {reason}", file=err)
        return UNREACHABLE
    if status == 201:
        print(text, file=out)
        return LISTED
    print(f"the engine refused the listing (HTTP {status}): {text}", file=err)
    return REFUSED


def _authorization(key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"} if key else {}
