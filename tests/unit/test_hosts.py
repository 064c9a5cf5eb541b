"""Which `Host` names this machine, for an engine on loopback with no API key."""

from __future__ import annotations

import pytest

from orderengine.access import names_this_machine


@pytest.mark.parametrize(
    "host",
    [
        "localhost",
        "LOCALHOST:8080",
        "localhost.",
        "app.localhost:8080",
        "127.0.0.1",
        "127.1.2.3:80",
        "[::1]",
        "[::1]:8080",
    ],
)
def test_names_of_this_machine(host: str) -> None:
    assert names_this_machine(host)


@pytest.mark.parametrize(
    "host",
    [
        None,
        "",
        "evil.example",
        "evil.example:8080",
        "localhost.evil.example",
        "127.0.0.1.evil.example",
        "10.0.0.5",
        "[2001:db8::1]:8080",
        "0.0.0.0",
        "a host with spaces",
    ],
)
def test_names_of_other_machines(host: str | None) -> None:
    assert not names_this_machine(host)
