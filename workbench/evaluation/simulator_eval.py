"""``workbench eval simulator``: detection quality measured end to end through real Kafka.

The simulator publishes readings and ground truth to topics of this run; the live pipeline
(source → detection → alerts published to Kafka) consumes them; then the alerts are read back from
their topic (last state per alert id) and joined with the truth topic, event by event.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from workbench.alerts.publish import AlertPublisher, decode_alert
from workbench.config import Settings
from workbench.evaluation.events import EventScores, score_events
from workbench.simulator import decode_truth, run_simulator
from workbench.streams.clients import make_producer
from workbench.streams.detect import BatchDetector, DetectionStage
from workbench.streams.source import from_kafka_readings
from workbench.streams.topics import ensure_topics


def read_all(settings: Settings, topic: str, idle_s: float = 2.0) -> list[bytes]:
    """Every value in a topic, read until nothing new arrives for ``idle_s``."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=settings.bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        **settings.kafka_python_security(),
    )
    values: list[bytes] = []
    last_new = time.monotonic()
    try:
        while time.monotonic() - last_new < idle_s:
            for records in consumer.poll(200).values():
                values.extend(r.value for r in records)
                last_new = time.monotonic()
    finally:
        consumer.close()
    return values


def _report(
    progress: Callable[[str], None], source: from_kafka_readings, stage: DetectionStage
) -> None:
    progress(
        f"pipeline: {source.metrics.total:,} readings handled · {stage.findings:,} findings · "
        f"{len(stage.manager.history):,} alerts"
    )


async def _run_pipeline(
    settings: Settings,
    topics: dict[str, str],
    detector: BatchDetector,
    simulate: Callable[[], int],
    progress: Callable[[str], None],
) -> DetectionStage:
    producer = make_producer(settings, client_id="workbench-eval-alerts")
    stage = DetectionStage(detector, publisher=AlertPublisher(producer, topics["alerts"]))
    source = from_kafka_readings(
        settings,
        topic=topics["readings"],
        group_id=f"eval-{uuid.uuid4().hex[:8]}",
        deadletter_topic=topics["deadletter"],
    )
    source.sink(stage)
    source.start()
    sent: list[int] = []
    sim = threading.Thread(target=lambda: sent.append(simulate()), name="workbench-eval-sim")
    sim.start()
    try:
        while sim.is_alive():
            await asyncio.sleep(1.0)
            _report(progress, source, stage)
        if not sent:
            raise RuntimeError("the simulator failed; see its messages above")
        deadline = time.monotonic() + 120
        while source.metrics.total + source.metrics.dead_lettered < sent[0]:
            if time.monotonic() > deadline:
                raise TimeoutError("the pipeline did not catch up with the simulator in 120 s")
            await asyncio.sleep(0.5)
            _report(progress, source, stage)
        # Close every incident still open (the data has ended) and publish the final states.
        final = stage.manager.process([], now=datetime.now(UTC) + timedelta(days=1))
        stage.publisher.publish(final)
    finally:
        source.stop()
        await source.wait_stopped()
        stage.close()
        producer.close()
    return stage


def evaluate_simulator(
    settings: Settings,
    detector: BatchDetector,
    devices: int = 500,
    rate: float = 100.0,
    duration_s: float = 1800.0,
    seed: int = 1,
    anomaly_rate: float | None = None,
    grace: timedelta = timedelta(seconds=60),
    progress: Callable[[str], None] = print,
) -> EventScores:
    """Simulate, detect live through Kafka, and score alerts against the injected truth.

    ``duration_s`` of fleet life is replayed with past timestamps as fast as the pipeline takes it
    (detectors and alerts work in data time, so this measures what real time would).
    """
    run = uuid.uuid4().hex[:8]
    topics = {k: f"workbench.eval.{run}.{k}" for k in ("readings", "truth", "alerts", "deadletter")}
    ensure_topics(
        settings,
        {topics["readings"]: 6, topics["truth"]: 1, topics["alerts"]: 3, topics["deadletter"]: 1},
    )
    extra = {} if anomaly_rate is None else {"anomaly_rate": anomaly_rate}

    def simulate() -> int:
        stats = run_simulator(
            settings,
            devices=devices,
            rate=rate,
            count=round(rate * duration_s),
            backfill_s=duration_s,
            seed=seed,
            progress=lambda m: progress(f"simulator: {m}"),
            readings_topic=topics["readings"],
            truth_topic=topics["truth"],
            **extra,
        )
        return stats.delivered

    asyncio.run(_run_pipeline(settings, topics, detector, simulate, progress))
    truths = [decode_truth(v) for v in read_all(settings, topics["truth"])]
    latest = {}
    for alert in (decode_alert(v) for v in read_all(settings, topics["alerts"])):
        latest[alert.alert_id] = alert  # an alert's last published state wins
    return score_events(truths, latest.values(), grace=grace)


def format_scores(scores: EventScores) -> str:
    """Per-kind and overall precision/recall/F1 and detection delay, as a table."""
    rows = [("kind", "truths", "found", "alerts", "precision", "recall", "F1")]
    for kind, s in [*sorted(scores.by_kind.items()), ("overall", scores.overall)]:
        rows.append(
            (
                kind,
                f"{s.truths}",
                f"{s.found}",
                f"{s.alerts}",
                f"{s.precision:.3f}",
                f"{s.recall:.3f}",
                f"{s.f1:.3f}",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    delay = scores.delay_percentiles()
    if delay["median_s"] is not None:
        lines.append(
            f"detection delay: median {delay['median_s']:.1f} s, p95 {delay['p95_s']:.1f} s"
        )
    return "\n".join(lines)
