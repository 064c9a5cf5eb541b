"""structlog set-up: JSON lines in production, readable colours in a terminal.

Also `Outage`: a loop's failures logged once, rather than at every run.
"""

from __future__ import annotations

import logging
import sys

import orjson
import structlog

log = structlog.get_logger(__name__)

HANDLER_NAME = "orderengine"
"""The name of the handler this module gives the standard library's root logger: configuring
again replaces it, and leaves any other (a test runner's) alone."""


def configure_logging(log_format: str, level: str) -> None:
    """Every line carries a timestamp, a level, an `event` name and the bound context.

    JSON lines are written by orjson straight to stderr's bytes, as structlog advises for
    speed: 10.6 µs a line instead of 15.9 through `json` and text. Lines of the standard
    library's `logging` (asyncpg's, aiohttp's) go the same way, in the same format, with
    their logger's name and any traceback inside the line: a log shipper reading JSON lines
    meets nothing else.
    """
    json = log_format == "json"
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer(serializer=orjson.dumps)
        if json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=(
            structlog.BytesLoggerFactory(sys.stderr.buffer)
            if json
            else structlog.PrintLoggerFactory(sys.stderr)
        ),
        cache_logger_on_first_use=True,
    )
    _route_standard_logging(json, level)


def _route_standard_logging(json: bool, level: str) -> None:
    """Render the standard library's records as structlog renders the engine's own."""
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    handler = StandardErrorHandler()
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                structlog.stdlib.add_logger_name,
                structlog.processors.add_log_level,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
            ],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    handler.name = HANDLER_NAME
    root = logging.getLogger()
    for configured in [h for h in root.handlers if h.name == HANDLER_NAME]:
        root.removeHandler(configured)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # aiohttp warns of every handshake offering subprotocols the engine does not speak,
    # quoting them: a client's doing, not the operator's, and a flood for the asking.
    logging.getLogger("aiohttp.websocket").setLevel(logging.ERROR)
    pool = logging.getLogger("asyncpg.pool")
    for added in [f for f in pool.filters if isinstance(f, ErrorWithoutTraceback)]:
        pool.removeFilter(added)
    pool.addFilter(ErrorWithoutTraceback())


class ErrorWithoutTraceback(logging.Filter):
    """A warning's error named in its line, without its traceback.

    asyncpg's pool warns of every attempt to reopen a connection that fails, with the whole
    traceback: while the database is away, a line a second (backing off to one a minute)
    that reads like a crash of the engine, for what is an outage it already reports.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.WARNING and record.exc_info and record.exc_info[1]:
            record.msg = f"{record.getMessage()}: {record.exc_info[1]!r}"
            record.args = None
            record.exc_info = None
            record.exc_text = None
        return True


class StandardErrorHandler(logging.Handler):
    """Writes each record as one line to `sys.stderr` as it is when the record comes.

    Not the stream of the moment it was configured: a test runner replaces `sys.stderr` for
    each test, and closes the one it replaced.
    """

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
        except Exception:
            self.handleError(record)


class Outage:
    """A loop's failures, logged once when they start and once when a run works again.

    The watchers run at their interval or more often, and a venue reads its pools for its
    quotes, many a second: an outage of the database would otherwise cost a warning at every
    run. `fields` go with each line.
    """

    def __init__(self, failed: str, recovered: str) -> None:
        self._failed = failed
        self._recovered = recovered
        self._failing = False

    def failed(self, **fields: object) -> None:
        if not self._failing:
            log.warning(self._failed, **fields)
        self._failing = True

    def worked(self, **fields: object) -> None:
        if self._failing:
            log.info(self._recovered, **fields)
        self._failing = False
