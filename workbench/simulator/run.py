"""The live simulator: publishes the simulated fleet to Kafka in real time.

Readings go to ``iot.readings`` keyed by device id, truth records to ``iot.truth`` as each anomaly
ends. Pacing follows the simulated clock, and every figure it reports comes from the broker's
delivery reports (:mod:`workbench.streams.publishing`, shared with ``workbench replay``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta

from workbench.config import TOPIC_READINGS, TOPIC_TRUTH, Settings
from workbench.schema import Reading, encode
from workbench.simulator.anomalies import Truth, encode_truth
from workbench.simulator.simulation import DEFAULT_ANOMALY_RATE, Simulation, validate
from workbench.streams.clients import ProducerBackend, make_producer
from workbench.streams.publishing import DeliveryStats, Pacer, Reporter, send_when_due, settle

LATE_STOP_S = 0.25
"""A run that falls behind schedule stops this long after its duration, sending the rest never."""


@dataclass(frozen=True)
class SimulatorStats(DeliveryStats):
    """What one simulator run did, from the broker's delivery reports."""

    anomalies: int
    """Truth records published (one per injected anomaly)."""
    truth_undelivered: int
    """Truth records the broker did not acknowledge."""


def run_simulator(
    settings: Settings,
    devices: int,
    rate: float,
    duration_s: float | None = None,
    count: int | None = None,
    anomaly_rate: float = DEFAULT_ANOMALY_RATE,
    seed: int | None = None,
    progress: Callable[[str], None] | None = None,
    stop_event: threading.Event | None = None,
    readings_topic: str = TOPIC_READINGS,
    truth_topic: str = TOPIC_TRUTH,
    backfill_s: float = 0.0,
) -> SimulatorStats:
    """Publish ``rate`` readings/s from ``devices`` devices until the duration, count or a stop.

    ``backfill_s`` starts the simulated clock that long in the past: those readings go out as fast
    as the producer takes them (timestamps stay in the past), then the run continues in real time.
    Evaluations use it to replay half an hour of fleet life in seconds.
    Without a duration or count it runs until ``stop_event`` is set or Ctrl-C. Either way it stops
    cleanly: truth for anomalies still running is published (ending now), and the last delivery
    reports are awaited for up to ``FLUSH_TIMEOUT_S``; what is still unacknowledged then is counted
    as not delivered.
    """
    validate(devices, rate, anomaly_rate, count=count, duration_s=duration_s)
    if backfill_s < 0:
        raise ValueError(f"backfill_s={backfill_s}: it must be 0 s or more")
    producer = make_producer(settings, client_id="workbench-simulator")
    try:
        # Read both clocks together, so timestamps match the wall clock however long setup takes.
        started = time.monotonic() - backfill_s
        start = datetime.now(UTC) - timedelta(seconds=backfill_s)
        simulation = Simulation(devices, rate, anomaly_rate=anomaly_rate, seed=seed, start=start)
        # A run that is all backfill is behind schedule by design: it never stops early. Otherwise
        # the duration is wall-clock time, however far behind schedule the run is.
        unbounded = duration_s is None or duration_s <= backfill_s
        pacer = Pacer(started, None if unbounded else duration_s + LATE_STOP_S, stop_event)
        reporter = Reporter(
            progress,
            producer,
            readings_topic,
            noun="readings",
            extra=lambda: [f"{_anomalies(simulation.injected)} injected"],
            sender="the fleet",
        )
        published = 0

        def send(item: tuple[Reading, list[Truth]]) -> None:
            nonlocal published
            reading, truths = item
            producer.send(readings_topic, encode(reading), key=reading.device_id.encode())
            published += _publish(producer, truth_topic, truths)

        emissions = simulation.emissions(count=count, until_s=duration_s)
        interrupted = False
        try:
            send_when_due(
                ((offset, (reading, truths)) for offset, reading, truths in emissions),
                send,
                producer,
                pacer,
                reporter,
            )
        except KeyboardInterrupt:
            interrupted = True
        published += _publish(producer, truth_topic, simulation.close())
        readings = settle(producer, readings_topic, pacer, progress)
        truth = producer.deliveries(truth_topic)
    finally:
        producer.close(timeout_s=0)
    stats = SimulatorStats(
        **asdict(readings), anomalies=published, truth_undelivered=truth.sent - truth.delivered
    )
    if progress is not None:
        stopped = interrupted or pacer.stop_requested()
        progress(_final_line("stopped" if stopped else "done", stats))
    return stats


def _final_line(verb: str, stats: SimulatorStats) -> str:
    line = f"{stats.summary(verb, 'readings')} · {_anomalies(stats.anomalies)} injected"
    if stats.truth_undelivered:
        line += f" · {stats.truth_undelivered:,} truth records not delivered"
    return line


def _anomalies(n: int) -> str:
    return f"{n:,} anomaly" if n == 1 else f"{n:,} anomalies"


def _publish(producer: ProducerBackend, topic: str, truths: Iterable[Truth]) -> int:
    """Send truth records; how many."""
    n = 0
    for truth in truths:
        producer.send(topic, encode_truth(truth), key=truth.device_id.encode())
        n += 1
    return n
