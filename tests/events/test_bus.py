"""The event bus when its backend fails: never raises, one warning per outage, not per event."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from typing import Any

import msgspec

from app.core.events import EventBus


class FlakyPublisher:
    """Fails while `down`, records what it publishes otherwise."""

    def __init__(self) -> None:
        self.down = True
        self.published: list[bytes] = []

    async def __call__(self, batch: Sequence[tuple[bytes, list[str]]]) -> None:
        if self.down:
            raise ConnectionError("Connection refused")
        self.published += [data for data, _ in batch]


async def test_an_outage_is_one_warning_and_its_end_one_line(log_records: list[Any]) -> None:
    publisher = FlakyPublisher()
    bus = EventBus(publisher)
    org = uuid.uuid4()
    for _ in range(50):
        await bus.publish(org, {"type": "queue.changed", "depth": 1})
    publisher.down = False
    await bus.publish(org, {"type": "queue.changed", "depth": 2})

    mine = [r for r in log_records if r["extra"].get("component") == "events"]
    levels = [r["level"].name for r in mine]
    assert levels.count("WARNING") == 1
    assert levels.count("DEBUG") == 49
    assert [r["message"] for r in mine if r["level"].name == "INFO"] == [
        "events are published again"
    ]
    assert len(publisher.published) == 1


class RecordingPublisher:
    def __init__(self) -> None:
        self.batches: list[list[bytes]] = []

    async def __call__(self, batch: Sequence[tuple[bytes, list[str]]]) -> None:
        self.batches.append([data for data, _ in batch])
        await asyncio.sleep(0.01)  # a round trip: more events arrive meanwhile


async def test_events_handed_over_together_go_out_in_one_round_trip_in_order() -> None:
    publisher = RecordingPublisher()
    bus = EventBus(publisher)
    org = uuid.uuid4()
    for depth in range(500):
        bus.publish_soon([(org, {"type": "message.received", "depth": depth}, None)])
    await bus.aclose()
    published = [
        msgspec.json.decode(data)["depth"] for batch in publisher.batches for data in batch
    ]
    assert published == list(range(500))
    assert [len(batch) for batch in publisher.batches] == [200, 200, 100]
