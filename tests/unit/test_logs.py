"""Logs as JSON lines: the engine's own, and those of the libraries it uses, each one line."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from orderengine.logs import HANDLER_NAME, configure_logging


@pytest.fixture
def json_logs(capsys: pytest.CaptureFixture[str]) -> Iterator[None]:
    """JSON logging as the engine configures it, to the captured stderr; undone after."""
    configure_logging("json", "info")
    yield
    root = logging.getLogger()
    for handler in [h for h in root.handlers if h.name == HANDLER_NAME]:
        root.removeHandler(handler)
    root.setLevel(logging.WARNING)
    logging.getLogger("aiohttp.websocket").setLevel(logging.NOTSET)
    pool = logging.getLogger("asyncpg.pool")
    for added in list(pool.filters):
        pool.removeFilter(added)
    structlog.reset_defaults()


@pytest.mark.usefixtures("json_logs")
def test_a_library_warning_with_a_traceback_is_one_json_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    try:
        raise ConnectionResetError("the client went away")
    except ConnectionResetError:
        logging.getLogger("aiohttp.server").warning("request not answered", exc_info=True)
    logging.getLogger("aiohttp.server").debug("below the level: not written")

    lines = capsys.readouterr().err.splitlines()

    assert len(lines) == 1
    line = json.loads(lines[0])
    assert line["event"] == "request not answered"
    assert line["logger"] == "aiohttp.server"
    assert line["level"] == "warning"
    assert "ConnectionResetError: the client went away" in line["exception"]


@pytest.mark.usefixtures("json_logs")
def test_the_pools_warning_of_a_failed_reconnect_names_its_error_without_a_traceback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """It comes every second or so while the database is away: a traceback reads like a crash."""
    try:
        raise ConnectionRefusedError("the database went away")
    except ConnectionRefusedError:
        logging.getLogger("asyncpg.pool").warning("pool floor not restored", exc_info=True)

    [line] = [json.loads(text) for text in capsys.readouterr().err.splitlines()]

    assert line["event"] == (
        "pool floor not restored: ConnectionRefusedError('the database went away')"
    )
    assert line["level"] == "warning"
    assert "exception" not in line


@pytest.mark.usefixtures("json_logs")
def test_a_clients_unknown_subprotocols_are_not_logged(capsys: pytest.CaptureFixture[str]) -> None:
    logging.getLogger("aiohttp.websocket").warning(
        "Client protocols %r don't overlap", ["x" * 7000]
    )

    assert capsys.readouterr().err == ""


@pytest.mark.usefixtures("json_logs")
def test_configuring_again_keeps_one_line_per_record(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("json", "info")

    logging.getLogger("aiohttp.server").error("once")

    assert len(capsys.readouterr().err.splitlines()) == 1
