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
    structlog.reset_defaults()


@pytest.mark.usefixtures("json_logs")
def test_a_library_warning_with_a_traceback_is_one_json_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    try:
        raise ConnectionRefusedError("the database went away")
    except ConnectionRefusedError:
        logging.getLogger("asyncpg.pool").warning("pool floor not restored", exc_info=True)
    logging.getLogger("asyncpg.pool").debug("below the level: not written")

    lines = capsys.readouterr().err.splitlines()

    assert len(lines) == 1
    line = json.loads(lines[0])
    assert line["event"] == "pool floor not restored"
    assert line["logger"] == "asyncpg.pool"
    assert line["level"] == "warning"
    assert "ConnectionRefusedError: the database went away" in line["exception"]


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
