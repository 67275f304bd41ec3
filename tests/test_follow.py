"""Following the workers' output topics, as views do, on the real broker."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime

import pytest

from workbench.config import BACKENDS, Settings
from workbench.streams.clients import make_producer
from workbench.streams.follow import TopicFollower, TopicsFollower
from workbench.streams.records import Record
from workbench.streams.topics import ensure_topics


def _send(settings: Settings, topic: str, values: list[bytes]) -> None:
    producer = make_producer(settings, client_id="test-follow")
    for v in values:
        producer.send(topic, v)
    producer.flush(30)
    producer.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_one_consumer_follows_each_topic_from_its_own_start_and_a_failing_handler_repeats_nothing(
    kafka: Settings, backend: str
) -> None:
    kafka = kafka.with_(backend=backend)
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


async def _until(done, seconds: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    for _ in range(int(seconds / 0.25)):
        if done():
            return
        await asyncio.sleep(0.25)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_followed_partition_starts_at_the_time_asked_and_a_group_resumes_after_its_commit(
    kafka: Settings, backend: str
) -> None:
    kafka = kafka.with_(backend=backend)
    topic = f"test.follow.{uuid.uuid4().hex[:6]}.parts"
    ensure_topics(kafka, {topic: 2})
    producer = make_producer(kafka, client_id="test-follow")
    producer.send(topic, b"early", partition=1)
    producer.flush(30)
    time.sleep(0.05)
    since = datetime.now(UTC)
    time.sleep(0.05)
    for i in range(6):
        producer.send(topic, f"late{i}".encode(), partition=i % 2)
    producer.flush(30)
    producer.close()
    group = f"test-follow-{uuid.uuid4().hex[:6]}"

    async def read(expect: int, **kwargs: object) -> list[tuple[int, bytes]]:
        got: list[tuple[int, bytes]] = []

        async def take(records: list[Record]) -> None:
            got.extend((r.partition, r.value) for r in records if r.value)

        follower = TopicFollower(kafka, topic, take, **kwargs)  # type: ignore[arg-type]
        follower.start()
        try:
            await _until(lambda: len(got) >= expect)
            await asyncio.sleep(1.0)  # more than asked for would show by now
        finally:
            await follower.stop()
        return got

    partition_one = asyncio.run(read(3, partitions=[1], since=since))
    assert sorted(partition_one) == [(1, b"late1"), (1, b"late3"), (1, b"late5")]
    first = asyncio.run(read(7, group_id=group))  # the whole topic, from the beginning
    assert sorted(v for _p, v in first) == [b"early"] + [f"late{i}".encode() for i in range(6)]
    _send(kafka, topic, [b"after"])
    assert [v for _p, v in asyncio.run(read(1, group_id=group))] == [b"after"]
