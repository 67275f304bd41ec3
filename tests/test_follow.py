"""Following the workers' output topics, as views do, on the real broker."""

from __future__ import annotations

import asyncio
import uuid

from workbench.config import Settings
from workbench.streams.clients import make_producer
from workbench.streams.follow import TopicsFollower
from workbench.streams.records import Record
from workbench.streams.topics import ensure_topics


def _send(settings: Settings, topic: str, values: list[bytes]) -> None:
    producer = make_producer(settings, client_id="test-follow")
    for v in values:
        producer.send(topic, v)
    producer.flush(30)
    producer.close()


def test_one_consumer_follows_each_topic_from_its_own_start_and_a_failing_handler_repeats_nothing(
    kafka: Settings,
) -> None:
    old, new = f"test.follow.{uuid.uuid4().hex[:6]}.old", f"test.follow.{uuid.uuid4().hex[:6]}.new"
    ensure_topics(kafka, {old: 2, new: 1})
    _send(kafka, old, [b"o1", b"o2", b"o3"])
    _send(kafka, new, [b"before"])
    seen: dict[str, list[bytes]] = {old: [], new: []}
    failures = []

    async def on_old(records: list[Record]) -> None:
        seen[old].extend(r.value for r in records if r.value)

    async def on_new(records: list[Record]) -> None:
        if not failures:
            failures.append(1)
            raise RuntimeError("a handler failing once")
        seen[new].extend(r.value for r in records if r.value)

    async def run() -> None:
        follower = TopicsFollower(kafka, {old: (on_old, "earliest"), new: (on_new, "latest")})
        follower.start()
        try:
            for _ in range(120):  # up to 30 s
                if len(seen[old]) >= 3:
                    break
                await asyncio.sleep(0.25)
            await asyncio.to_thread(_send, kafka, new, [b"after"])
            await asyncio.to_thread(_send, kafka, old, [b"o4"])
            for _ in range(120):
                if seen[new] and len(seen[old]) >= 4:
                    break
                await asyncio.sleep(0.25)
            await asyncio.sleep(1.0)  # anything handed over twice would show by now
        finally:
            await follower.stop()

    asyncio.run(run())
    assert sorted(seen[old]) == [b"o1", b"o2", b"o3", b"o4"]  # from the beginning, once each
    assert seen[new] == [b"after"]  # from the end: what came after it started, once
    assert failures == [1]
