"""The engine's garbage collector, set once the engine listens."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from orderengine.__main__ import YOUNG_COLLECTIONS_AFTER, _tune_collector

PYTHONS_DEFAULT = 700


@pytest.fixture
def restored_collector() -> Iterator[None]:
    """The test process's collector as it was, whatever the test did to it."""
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_the_start_is_frozen_and_the_young_generation_collected_less_often(
    restored_collector: None,
) -> None:
    older = gc.get_threshold()[1:]

    _tune_collector()

    assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == (YOUNG_COLLECTIONS_AFTER, *older)
    assert YOUNG_COLLECTIONS_AFTER > PYTHONS_DEFAULT
