"""Announcing committed events to other engines: many per NOTIFY, never one too large."""

from __future__ import annotations

import asyncio
import uuid

from orderengine.notifications import (
    MAX_PAYLOAD_BYTES,
    Announcer,
    event_payload,
    events_payloads,
    parse_event,
)

ENGINE = uuid.uuid4()


async def test_events_committed_while_a_notification_is_on_its_way_go_in_the_next() -> None:
    sent: list[str] = []
    first_sent = asyncio.Event()
    release = asyncio.Event()

    async def send(payload: str) -> None:
        sent.append(payload)
        first_sent.set()
        await release.wait()

    announcer = Announcer(ENGINE, send)
    orders = [uuid.uuid4() for _ in range(4)]
    announcer.announce(orders[0], 1)
    await first_sent.wait()
    for order_id in orders[1:]:
        announcer.announce(order_id, 2)
    release.set()
    await announcer.close()

    assert [payload.count("\n") + 1 for payload in sent] == [1, 3]
    assert sent[1].split("\n")[0] == event_payload(ENGINE, orders[1], 2)


async def test_a_failed_announcement_is_dropped_and_the_next_still_goes() -> None:
    sent: list[str] = []

    async def send(payload: str) -> None:
        if not sent:
            sent.append("failed")
            raise ConnectionResetError("gone")
        sent.append(payload)

    announcer = Announcer(ENGINE, send)
    announcer.announce(uuid.uuid4(), 1)
    await announcer.close()
    later = uuid.uuid4()
    announcer.announce(later, 5)
    await announcer.close()

    assert sent == ["failed", event_payload(ENGINE, later, 5)]


def test_many_events_are_split_into_payloads_under_the_limit_and_each_line_parses() -> None:
    events = [(uuid.uuid4(), seq) for seq in range(1, 301)]

    payloads = events_payloads(ENGINE, events)

    assert len(payloads) > 1
    assert all(len(payload.encode()) < MAX_PAYLOAD_BYTES for payload in payloads)
    lines = [parse_event(line) for payload in payloads for line in payload.split("\n")]
    assert lines == [(ENGINE, order_id, seq) for order_id, seq in events]
