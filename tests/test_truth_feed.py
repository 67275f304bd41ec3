"""The dashboard's truth feed on the real broker: it waits for a truth topic that no simulator
has made yet, then reads what is published from then on, and skips what it cannot decode."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import pytest

from workbench.config import BACKENDS, Settings
from workbench.simulator.anomalies import Truth, encode_truth
from workbench.streams.clients import make_producer
from workbench.streams.topics import ensure_topics
from workbench.ui.truth import TruthFeed


def _truth(n: int) -> Truth:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    return Truth(
        anomaly_id=f"a{n}", device_id="meter-1", device_type="smart_meter", kind="spike",
        metric="power_w", start=at, end=at, magnitude=1.0,
    )  # fmt: skip


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_truth_feed_waits_for_its_topic_then_reads_new_truths(
    kafka: Settings, backend: str
) -> None:
    settings = kafka.with_(backend=backend)
    topic = f"test.truth.{uuid.uuid4().hex[:6]}"

    async def run() -> list[str]:
        feed = TruthFeed(settings, topic)
        feed.start()
        try:
            await asyncio.sleep(1.0)  # following a topic that is not there yet
            await asyncio.to_thread(ensure_topics, settings, {topic: 1})
            producer = make_producer(settings, client_id="test-truth")
            for _ in range(120):  # up to 30 s: until the feed is at the topic's end
                producer.send(topic, encode_truth(_truth(0)))
                producer.flush(10)
                if feed.truths:
                    break
                await asyncio.sleep(0.25)
            producer.send(topic, b"not a truth")
            for n in (1, 2):
                producer.send(topic, encode_truth(_truth(n)))
            producer.flush(10)
            producer.close()
            for _ in range(120):
                if feed.truths and feed.truths[-1].anomaly_id == "a2":
                    break
                await asyncio.sleep(0.25)
        finally:
            await feed.stop()
        return [t.anomaly_id for t in feed.truths]

    seen = asyncio.run(run())
    assert seen[-2:] == ["a1", "a2"]  # the malformed record between them is skipped
    assert set(seen[:-2]) == {"a0"}
