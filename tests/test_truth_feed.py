"""The dashboard's truth feed on the real broker: the session's other topics flow while no
simulator has made the truth topic yet; once it is made, every truth in it is read, and what
cannot be decoded is skipped."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import pytest

from workbench.config import BACKENDS, Settings
from workbench.simulator.anomalies import Truth, encode_truth
from workbench.streams.clients import make_producer
from workbench.streams.follow import TopicsFollower
from workbench.streams.follow_clients import LOOK_AGAIN_S
from workbench.streams.records import Record
from workbench.streams.topics import ensure_topics
from workbench.ui.truth import TruthFeed


def _truth(n: int) -> Truth:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    return Truth(
        anomaly_id=f"a{n}", device_id="meter-1", device_type="smart_meter", kind="spike",
        metric="power_w", start=at, end=at, magnitude=1.0,
    )  # fmt: skip


@pytest.mark.parametrize("backend", BACKENDS)
def test_views_flow_without_a_truth_topic_and_read_all_of_it_once_made(
    kafka: Settings, backend: str
) -> None:
    settings = kafka.with_(backend=backend)
    tag = uuid.uuid4().hex[:6]
    alerts, truth = f"test.alerts.{tag}", f"test.truth.{tag}"
    ensure_topics(settings, {alerts: 1})
    feed, seen = TruthFeed(), []

    async def take(records: list[Record]) -> None:
        seen.extend(r.value for r in records)

    async def until(done: object, seconds: float) -> None:
        for _ in range(int(seconds / 0.1)):
            if done():
                return
            await asyncio.sleep(0.1)

    async def run() -> None:
        follows = {alerts: (take, "earliest"), truth: (feed.take, "latest")}
        follower = TopicsFollower(settings, follows, poll_s=0.2, optional=frozenset({truth}))
        follower.start()
        producer = make_producer(settings, client_id="test-truth")
        try:
            producer.send(alerts, b"an alert")
            producer.flush(10)
            await until(lambda: seen, 30)
            assert seen == [b"an alert"], "the views waited for the truth topic"
            await asyncio.to_thread(ensure_topics, settings, {truth: 1})
            producer.send(truth, encode_truth(_truth(1)))  # before the follower found it
            producer.send(truth, b"not a truth")
            producer.send(truth, encode_truth(_truth(2)))
            producer.flush(10)
            await until(lambda: len(feed.truths) >= 2, LOOK_AGAIN_S + 20)
            producer.send(alerts, b"another alert")
            producer.flush(10)
            await until(lambda: len(seen) >= 2, 30)
        finally:
            producer.close()
            await follower.stop()

    asyncio.run(run())
    assert [t.anomaly_id for t in feed.truths] == ["a1", "a2"]  # the malformed one skipped
    assert seen == [b"an alert", b"another alert"]  # the others kept their place
