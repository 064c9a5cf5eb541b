"""`python -m orderengine`: settings -> database -> app -> serve until SIGTERM or SIGINT.

`python -m orderengine list-token …` instead asks a running engine to list a pool (cli.py);
`python -m orderengine keys …` manages the API keys in its database (key_commands.py).

On a signal the engine first stops taking orders (POST answers 503) and lets in-flight
swaps finish within the grace period; only then does the server stop listening, close the
open sockets with 1001 and release the database.
"""

from __future__ import annotations

import asyncio
import gc
import re
import signal
import sys
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import NoReturn

import asyncpg
import structlog
import uvloop
from aiohttp import web
from pydantic import ValidationError
from pydantic_settings import SettingsError
from rich.console import Console

from orderengine import cli, demo, key_commands
from orderengine.access import Exposed
from orderengine.app import OtherVenues, create_app
from orderengine.embedded_db import embedded_postgres
from orderengine.errors import DatabaseUnavailable
from orderengine.keys import ENGINE
from orderengine.logs import configure_logging
from orderengine.server import EngineSite
from orderengine.settings import Settings
from orderengine.wallet import InvalidKeypair

log = structlog.get_logger("orderengine")

REFUSED_CONNECTION = (
    asyncpg.InvalidCatalogNameError,
    asyncpg.InvalidAuthorizationSpecificationError,
)
"""What the database answers to connections it will never accept: no such database, a user
or password it refuses."""

YOUNG_COLLECTIONS_AFTER = 10_000
"""New container objects (less those freed) between collections of the youngest generation."""


class CannotListen(Exception):
    """The engine's address cannot be listened on: another process has the port, say."""


async def serve(settings: Settings) -> None:
    runner = web.AppRunner(create_app(settings), handle_signals=False, access_log=None)
    await runner.setup()
    site = EngineSite(runner, settings)
    try:
        await site.start()
    except OSError as error:
        # The engine has started (it may have claimed orders): it stops as it would on a
        # signal, releasing them, before the refusal is told.
        await runner.cleanup()
        raise CannotListen(
            f"cannot listen on {settings.host}:{settings.port}: {error.strerror or error}"
        ) from None
    _tune_collector()
    log.info("listening", url=site.name, max_connections=site.cap.limit)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
        log.info("stopping")
        await runner.app[ENGINE].stop()
    finally:
        await runner.cleanup()
    log.info("stopped")


def _tune_collector() -> None:
    """Freeze what exists once the engine listens, and collect the young generation less often.

    Modules, models, schemas and pools (about 83 000 objects) live as long as the process.
    Frozen, they are no longer scanned by the full collections that stop the event loop
    meanwhile: with 1000 sockets opening at once (`bench.fanout`), the engine's longest full
    collection went from 103-134 ms to 46-58 ms.

    The youngest generation is collected after `YOUNG_COLLECTIONS_AFTER` new objects instead
    of Python's 700. Handling a group of orders allocates more than 700 objects that live a
    few milliseconds, so at 700 the collector ran every few orders, each tenth run collecting
    the middle generation too and each hundredth everything: end to end, for 4200 orders,
    870 to 990 young, 79 to 89 middle and 6 to 7 full collections, 300 to 350 ms in all, the
    full ones pausing the event loop for up to 45 ms. With the higher threshold: 13, 1 and
    none, 37 to 47 ms.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_COLLECTIONS_AFTER, *gc.get_threshold()[1:])


def main(argv: Sequence[str] | None = None) -> None:
    arguments = cli.parser().parse_args(argv)
    if arguments.command == "list-token":
        body = cli.listing_body(arguments)
        sys.exit(asyncio.run(cli.list_token(arguments.url, body, key=arguments.key)))
    if arguments.command == "demo":
        kind: demo.Kind = arguments.kind or "market"
        shown = demo.run(arguments.url, arguments.key, kind, arguments.count, Console())
        sys.exit(asyncio.run(shown))
    if arguments.command == "keys":
        sys.exit(asyncio.run(manage_keys(arguments.action, getattr(arguments, "name", None))))
    run()


async def manage_keys(action: str, name: str | None) -> int:
    """Run `keys create NAME`, `keys list` or `keys revoke NAME` on the engine's database.

    Only the command's answer goes to standard output; why the database could not be used,
    and the log, to standard error: its warnings and errors only, unless
    `ORDERENGINE_LOG_LEVEL` is given (starting the embedded server and migrating its schema
    would otherwise write dozens of lines around a one-line answer).
    """
    settings = settings_or_exit()
    given = "log_level" in settings.model_fields_set
    configure_logging(settings.log_format, settings.log_level if given else "warning")
    try:
        async with key_commands.database_keys(settings) as keys:
            if action == "list":
                return await key_commands.listing(keys)
            assert name is not None, "argparse requires a name for create and revoke"
            if action == "create":
                return await key_commands.create(keys, name)
            return await key_commands.revoke(keys, name)
    except OSError as error:
        sys.exit(data_dir_problem(settings.data_dir, error))
    except DatabaseUnavailable as unavailable:
        sys.exit(database_problem(unavailable))
    except REFUSED_CONNECTION as refused:
        sys.exit(connection_refused(refused))


def settings_or_exit() -> Settings:
    """The settings, or an exit naming each bad one.

    The exit never echoes a value: it may be a secret (an API key, an RPC URL's token).
    """
    try:
        return Settings()
    except ValidationError as error:
        reasons = "; ".join(
            _named(problem["loc"], problem["msg"].removeprefix("Value error, "))
            for problem in error.errors(include_url=False, include_input=False)
        )
        sys.exit(f"invalid settings: {reasons}")
    except SettingsError as error:
        sys.exit(f"invalid settings: {_unparsed(error)}")


def _unparsed(error: SettingsError) -> str:
    """A value the settings could not parse (a JSON one that is not JSON), by its variable.

    pydantic-settings names the field only in its message.
    """
    field = re.search(r'field "(\w+)"', str(error))
    if field is None:
        return str(error)
    return _named((field[1],), "not valid JSON (see the README's settings table)")


def _named(where: tuple[int | str, ...], why: str) -> str:
    """A settings problem, with the environment variable it is about when it is one."""
    if not where:
        return why
    return f"ORDERENGINE_{'.'.join(str(part) for part in where).upper()}: {why}"


def run() -> None:
    settings = settings_or_exit()
    configure_logging(settings.log_format, settings.log_level)
    with ExitStack() as stack:
        if settings.database_url is None:
            try:
                url = stack.enter_context(embedded_postgres(settings.data_dir))
            except OSError as error:
                refuse(data_dir_problem(settings.data_dir, error))
            log.info("embedded_postgres", data_dir=str(settings.data_dir))
            settings = settings.model_copy(update={"database_url": url})
        try:
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                runner.run(serve(settings))
        except (Exposed, InvalidKeypair, CannotListen, OtherVenues) as refusal:
            refuse(str(refusal))
        except DatabaseUnavailable as unavailable:
            refuse(database_problem(unavailable))
        except REFUSED_CONNECTION as refused:
            refuse(connection_refused(refused))


def refuse(reason: str) -> NoReturn:
    """Log why the engine will not serve, and exit saying so."""
    log.error("refusing_to_serve", reason=reason)
    sys.exit(reason)


def connection_refused(refused: Exception) -> str:
    """Why the database will not take the connection, in its own words (never the URL)."""
    return f"the database refused the connection: {refused}"


def data_dir_problem(data_dir: Path, error: OSError) -> str:
    """Why the embedded PostgreSQL cannot keep its data in `data_dir`."""
    return (
        f"the embedded PostgreSQL cannot use ORDERENGINE_DATA_DIR={data_dir}: "
        f"{error.strerror or error}"
    )


def database_problem(unavailable: DatabaseUnavailable) -> str:
    """Why the engine could not open its connections at start, without the database's URL.

    Every connection of its pools is opened at start: a server with no room left for them
    says so at once, rather than when a burst needs them.
    """
    if isinstance(unavailable.__cause__, asyncpg.TooManyConnectionsError):
        return (
            "the database has no room for this engine's connections: it opens"
            " ORDERENGINE_DB_POOL_SIZE of them, and 6 more, at start. Give it a smaller pool,"
            " or the server a larger max_connections"
        )
    cause = unavailable.__cause__
    if cause is None:
        return "the database could not be reached at start (no answer)"
    said = type(cause).__name__
    if isinstance(cause, OSError) and cause.strerror:
        said += f": {cause.strerror}"
    return f"the database could not be reached at start ({said})"


if __name__ == "__main__":
    main()
