"""The live simulator: publishes the simulated fleet to Kafka in real time.

Readings go to ``iot.readings`` keyed by device id, truth records to ``iot.truth`` as each anomaly
ends. Pacing follows the simulated clock: a reading goes out once its offset from the start is due
on a monotonic clock, so the rate never drifts and a slow patch is caught up in a burst. Between due
readings the loop sleeps at least a couple of milliseconds, so readings leave in small batches.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from workbench.config import TOPIC_READINGS, TOPIC_TRUTH, Settings
from workbench.schema import encode
from workbench.simulator.anomalies import Truth, encode_truth
from workbench.simulator.simulation import DEFAULT_ANOMALY_RATE, Simulation, validate
from workbench.streams.clients import ProducerBackend, make_producer

PROGRESS_INTERVAL_S = 2.0
MIN_SLEEP_S = 0.002
MAX_SLEEP_S = 0.1
LATE_STOP_S = 0.25
"""A run that falls behind schedule stops this long after its duration, sending the rest never."""
CLOCK_CHECK_EVERY = 1024
"""Readings between clock checks while behind schedule (stop requests are noticed then too)."""


@dataclass(frozen=True)
class SimulatorStats:
    """What one simulator run did."""

    sent: int
    """Readings handed to the producer."""
    anomalies: int
    """Truth records published (one per injected anomaly)."""
    elapsed_s: float
    failed: int
    """Messages the broker never acknowledged."""

    @property
    def rate(self) -> float:
        """Average readings per second over the run."""
        return self.sent / self.elapsed_s if self.elapsed_s > 0 else 0.0


class _Pacer:
    """Holds the run to the simulated clock and decides when it must stop."""

    def __init__(
        self,
        started: float,
        duration_s: float | None,
        stop_event: threading.Event | None,
        backfill_s: float = 0.0,
    ) -> None:
        self.started = started
        """The monotonic clock at the simulated start."""
        self.elapsed = 0.0
        # A run that is all backfill is behind schedule by design: it never stops early.
        unbounded = duration_s is None or duration_s <= backfill_s
        self._deadline_s = None if unbounded else duration_s + LATE_STOP_S
        self._stop_event = stop_event

    def wait_until(self, offset_s: float) -> bool:
        """Sleep until ``offset_s`` after the start; False if the run should stop instead."""
        while True:
            self.elapsed = time.monotonic() - self.started
            if self._stop_event is not None and self._stop_event.is_set():
                return False
            if self._deadline_s is not None and self.elapsed >= self._deadline_s:
                return False  # far behind schedule: the duration is wall-clock time
            if offset_s <= self.elapsed:
                return True
            pause = min(max(offset_s - self.elapsed, MIN_SLEEP_S), MAX_SLEEP_S)
            if self._stop_event is not None:
                self._stop_event.wait(pause)
            else:
                time.sleep(pause)


class _Reporter:
    """Progress lines every couple of seconds, with the rate over the last interval."""

    def __init__(self, progress: Callable[[str], None] | None, simulation: Simulation) -> None:
        self._progress = progress
        self._simulation = simulation
        self._last = (0.0, 0)  # (elapsed s, readings sent) at the last report

    def report(self, elapsed_s: float, sent: int, lag_s: float) -> None:
        """Report if an interval has passed since the last report."""
        last_s, last_sent = self._last
        if self._progress is None or elapsed_s < last_s + PROGRESS_INTERVAL_S:
            return
        rate = (sent - last_sent) / (elapsed_s - last_s)
        behind = f" · {lag_s:,.1f} s behind schedule" if lag_s > 1.0 else ""
        self._progress(
            f"{sent:,} readings sent · {rate:,.0f} readings/s · "
            f"{_anomalies(self._simulation.injected)} injected{behind}"
        )
        self._last = (elapsed_s, sent)


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
    cleanly: truth for anomalies still running is published (ending now), the producer is flushed.
    """
    validate(devices, rate, anomaly_rate, count=count, duration_s=duration_s)
    producer = make_producer(settings, client_id="workbench-simulator")
    try:
        # Read both clocks together, so timestamps match the wall clock however long setup takes.
        if backfill_s < 0:
            raise ValueError(f"backfill_s={backfill_s}: it must be 0 s or more")
        started = time.monotonic() - backfill_s
        start = datetime.now(UTC) - timedelta(seconds=backfill_s)
        simulation = Simulation(devices, rate, anomaly_rate=anomaly_rate, seed=seed, start=start)
        pacer = _Pacer(started, duration_s, stop_event, backfill_s)
        reporter = _Reporter(progress, simulation)
        sent = published = 0
        try:
            for offset, reading, truths in simulation.emissions(count=count, until_s=duration_s):
                if offset > pacer.elapsed or not sent % CLOCK_CHECK_EVERY:
                    if not pacer.wait_until(offset):
                        break
                    reporter.report(pacer.elapsed, sent, lag_s=pacer.elapsed - offset)
                producer.send(readings_topic, encode(reading), key=reading.device_id.encode())
                sent += 1
                published += _publish(producer, truth_topic, truths)
        except KeyboardInterrupt:
            pass
        published += _publish(producer, truth_topic, simulation.close())
        producer.flush()
        elapsed = time.monotonic() - pacer.started
    finally:
        producer.close()
    stats = SimulatorStats(sent, published, elapsed, producer.failed)
    if progress is not None:
        progress(
            f"done: {sent:,} readings in {elapsed:,.1f} s ({stats.rate:,.0f} readings/s) · "
            f"{_anomalies(published)} injected · {stats.failed:,} failed deliveries"
        )
    return stats


def _anomalies(n: int) -> str:
    return f"{n:,} anomaly" if n == 1 else f"{n:,} anomalies"


def _publish(producer: ProducerBackend, topic: str, truths: Iterable[Truth]) -> int:
    """Send truth records; how many."""
    n = 0
    for truth in truths:
        producer.send(topic, encode_truth(truth), key=truth.device_id.encode())
        n += 1
    return n
