"""How long a simulated blockhash lives: scaled like every simulated delay, with a floor."""

from __future__ import annotations

import pytest

from orderengine.settings import Settings
from orderengine.venues.factory import blockhash_ttl_s
from tests.harness import fast_settings


@pytest.mark.parametrize(
    ("latency_scale", "lifetime_s"), [(0, 2.0), (0.01, 2.0), (0.5, 30.0), (1, 60.0)]
)
def test_a_blockhash_lives_its_scaled_lifetime_and_never_under_two_seconds(
    latency_scale: float, lifetime_s: float
) -> None:
    settings: Settings = fast_settings("postgresql://unused", latency_scale=latency_scale)

    assert blockhash_ttl_s(settings) == pytest.approx(lifetime_s)
