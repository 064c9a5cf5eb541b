"""An order's event as a row of `order_events`, for the stores that read events.

The columns a statement selects (`EVENT_COLUMNS`, or `JOINED_EVENT_COLUMNS` where it joins
the table as `e`), and the event read from a row that may hold other columns (`event_from`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import asyncpg

from orderengine.domain import OrderEvent

EVENT_FIELDS = ("order_id", "seq", "status", "attempt", "at", "details")
EVENT_COLUMNS = ", ".join(EVENT_FIELDS)
JOINED_EVENT_COLUMNS = ", ".join(f"e.{column}" for column in EVENT_FIELDS)
"""The event columns of `order_events AS e`, in a statement that joins it."""


def event_from(row: Mapping[str, Any] | asyncpg.Record) -> OrderEvent:
    """The event in `row`, whose other columns (a position, an owner ...) are left out."""
    return OrderEvent.model_validate({column: row[column] for column in EVENT_FIELDS})
