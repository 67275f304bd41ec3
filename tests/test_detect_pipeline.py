"""The detection stage on the real broker: alerts reach their topic, and a replay repeats ids."""

from __future__ import annotations

import asyncio
import uuid

import msgspec
import pytest

from tests.kafka_helpers import env_reading
from workbench import schema
from workbench.alerts.publish import AlertPublisher, decode_alert
from workbench.config import Settings
from workbench.evaluation.simulator_eval import read_all
from workbench.models.base import Finding
from workbench.streams.clients import make_producer
from workbench.streams.detect import DetectionStage
from workbench.streams.source import from_kafka_readings
from workbench.streams.topics import ensure_topics

pytestmark = pytest.mark.kafka


class HotDetector:
    """Flags env readings above 20 °C (a stand-in: this test is about the plumbing)."""

    def process_batch(self, readings: list) -> list[Finding]:
        return [
            Finding(
                r.device_id,
                r.device_type,
                "spike",
                "temperature",
                0.95,
                r.ts,
                r.seq,
                r.temperature,
                2.0,
                8.0,
                "hot",
            )
            for r in readings
            if r.temperature > 20
        ]

    def silent_findings(self, now: object) -> list[Finding]:
        return []


def produce_with_incidents(settings: Settings, topic: str) -> None:
    producer = make_producer(settings)
    for seq in range(300):
        for device in range(4):
            r = env_reading(device, seq)
            if device == 1 and 100 <= seq < 110:  # one incident on device 1
                r = msgspec.structs.replace(r, temperature=30.0)
            producer.send(topic, schema.encode(r), key=r.device_id.encode())
    producer.flush()


async def run_pipeline(
    settings: Settings, topics: dict[str, str], alerts_topic: str
) -> DetectionStage:
    producer = make_producer(settings)
    stage = DetectionStage(HotDetector(), publisher=AlertPublisher(producer, alerts_topic))
    source = from_kafka_readings(
        settings, topic=topics["readings"], group_id=f"g-{uuid.uuid4().hex[:6]}", max_batch=50
    )

    def stop_when_done(batch) -> None:
        if source.metrics.total + len(batch) >= 1200:
            source.stop()

    source.sink(stage)
    source.sink(stop_when_done)
    source.start()
    await asyncio.wait_for(source.wait_stopped(), 60)
    stage.close()
    producer.close()
    return stage


def test_alerts_are_published_and_a_replay_gives_the_same_ids(
    kafka: Settings, topics: dict[str, str]
) -> None:
    alerts_topic = topics["readings"].replace("readings", "alerts")
    ensure_topics(kafka, {alerts_topic: 3})
    produce_with_incidents(kafka, topics["readings"])

    first = asyncio.run(run_pipeline(kafka, topics, alerts_topic))
    published = [decode_alert(v) for v in read_all(kafka, alerts_topic)]
    assert {a.device_id for a in published} == {"env-0001"}
    assert len({a.alert_id for a in published}) == 1  # one incident, one alert
    (alert,) = first.manager.active
    assert first.findings == 10
    assert alert.readings == 10 and alert.severity == "high"
    assert "observed 30.00 °C, expected 2.00–8.00 °C" in alert.explanation

    replay = asyncio.run(run_pipeline(kafka, topics, alerts_topic))  # a new group: from the start
    assert [a.alert_id for a in replay.manager.active] == [alert.alert_id]
    assert replay.aggregates.snapshot()["env_sensor"]["devices"] == 4


def test_simulator_evaluation_through_kafka_finds_the_injected_anomalies(kafka: Settings) -> None:
    from workbench.evaluation.simulator_eval import evaluate_simulator
    from workbench.models.ensemble import EnsembleDetector

    scores = evaluate_simulator(
        kafka,
        EnsembleDetector(),
        devices=200,
        rate=40,
        duration_s=900,
        seed=3,
        progress=lambda _m: None,
    )
    assert scores.overall.truths >= 30
    # Six partitions are consumed at different paces: silence must be judged on the watermark,
    # or devices on a lagging partition raise storms of false dropout alerts.
    assert scores.overall.precision >= 0.95
    assert scores.overall.recall >= 0.9
    assert scores.overall.alerts <= 1.3 * scores.overall.truths  # one incident, one alert
