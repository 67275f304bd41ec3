"""The live simulator: publishes the simulated fleet to Kafka in real time.

Readings go to ``iot.readings`` keyed by device id, truth records to ``iot.truth`` as each anomaly
ends. Pacing follows the simulated clock: a reading goes out once its offset from the start is due
on a monotonic clock, so the rate never drifts and a slow patch is caught up in a burst. Between due
readings the loop sleeps at least a couple of milliseconds, so readings leave in small batches.
Every figure it reports comes from the broker's delivery reports (delivered, pending, failed):
a reading handed to the client is not yet a reading sent.
"""

from __future__ import annotations

import contextlib
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
STALL_S = 3.0
"""Readings waiting this long with no acknowledgement at all: the broker is unreachable."""
MAX_PENDING = 50_000
"""Unacknowledged readings the producer may hold (~12 MB, well inside the clients' buffers); past
that the fleet waits, so an outage never blocks nor overflows the client."""
FLUSH_TIMEOUT_S = 5.0
"""How long the end of a run (or a stop) waits for the last delivery reports."""


@dataclass(frozen=True)
class SimulatorStats:
    """What one simulator run did, from the broker's delivery reports."""

    sent: int
    """Readings handed to the producer."""
    delivered: int
    """Readings the broker acknowledged."""
    failed: int
    """Readings reported as failed (refused, or given up on after the client's delivery timeout)."""
    anomalies: int
    """Truth records published (one per injected anomaly)."""
    truth_undelivered: int
    """Truth records the broker did not acknowledge."""
    elapsed_s: float

    @property
    def undelivered(self) -> int:
        """Readings not acknowledged: failed, or still waiting when the run ended."""
        return self.sent - self.delivered

    @property
    def rate(self) -> float:
        """Readings delivered per second over the run."""
        return self.delivered / self.elapsed_s if self.elapsed_s > 0 else 0.0


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

    def stop_requested(self) -> bool:
        """Whoever started the run asked it to stop."""
        return self._stop_event is not None and self._stop_event.is_set()

    def wait_until(self, offset_s: float) -> bool:
        """Sleep until ``offset_s`` after the start; False if the run should stop instead."""
        while True:
            self.elapsed = time.monotonic() - self.started
            if self.stop_requested():
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
    """Progress lines every couple of seconds: delivery figures and the delivered rate."""

    def __init__(
        self,
        progress: Callable[[str], None] | None,
        simulation: Simulation,
        producer: ProducerBackend,
        topic: str,
    ) -> None:
        self._progress = progress
        self._simulation = simulation
        self._producer = producer
        self._topic = topic
        self._last = (0.0, 0)  # (elapsed s, readings delivered) at the last report

    def report(self, elapsed_s: float, lag_s: float, waiting: bool = False) -> None:
        """Report if an interval has passed since the last report."""
        last_s, last_delivered = self._last
        if self._progress is None or elapsed_s < last_s + PROGRESS_INTERVAL_S:
            return
        self._producer.poll(0)
        d = self._producer.deliveries(self._topic)
        rate = (d.delivered - last_delivered) / (elapsed_s - last_s)
        parts = [
            f"{d.delivered:,} readings delivered",
            f"{rate:,.0f} readings/s",
            f"{d.pending:,} pending",
            f"{d.failed:,} failed",
            f"{_anomalies(self._simulation.injected)} injected",
        ]
        if d.stalled_s >= STALL_S:
            parts.insert(0, f"broker unreachable (nothing acknowledged for {d.stalled_s:,.0f} s)")
        if waiting:
            parts.append(f"the fleet waits while {MAX_PENDING:,} readings are unacknowledged")
        elif lag_s > 1.0:
            parts.append(f"{lag_s:,.1f} s behind schedule")
        self._progress(" · ".join(parts))
        self._last = (elapsed_s, d.delivered)


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
        pacer = _Pacer(started, duration_s, stop_event, backfill_s)
        reporter = _Reporter(progress, simulation, producer, readings_topic)
        sent = published = 0
        interrupted = False
        try:
            for offset, reading, truths in simulation.emissions(count=count, until_s=duration_s):
                if offset > pacer.elapsed or not sent % CLOCK_CHECK_EVERY:
                    if not pacer.wait_until(offset):
                        break
                    reporter.report(pacer.elapsed, lag_s=pacer.elapsed - offset)
                    if not _room_for_more(producer, pacer, reporter, offset):
                        break
                producer.send(readings_topic, encode(reading), key=reading.device_id.encode())
                sent += 1
                published += _publish(producer, truth_topic, truths)
        except KeyboardInterrupt:
            interrupted = True
        published += _publish(producer, truth_topic, simulation.close())
        pending = producer.deliveries().pending
        if pending and progress is not None:
            progress(f"waiting up to {FLUSH_TIMEOUT_S:.0f} s for {pending:,} delivery reports…")
        with contextlib.suppress(TimeoutError):
            producer.flush(FLUSH_TIMEOUT_S)
        elapsed = time.monotonic() - pacer.started
        readings = producer.deliveries(readings_topic)
        truth = producer.deliveries(truth_topic)
    finally:
        producer.close(timeout_s=0)
    stats = SimulatorStats(
        sent=sent,
        delivered=readings.delivered,
        failed=readings.failed,
        anomalies=published,
        truth_undelivered=truth.sent - truth.delivered,
        elapsed_s=elapsed,
    )
    if progress is not None:
        stopped = interrupted or pacer.stop_requested()
        progress(_final_line("stopped" if stopped else "done", stats))
    return stats


def _room_for_more(
    producer: ProducerBackend, pacer: _Pacer, reporter: _Reporter, offset: float
) -> bool:
    """Wait while the producer holds ``MAX_PENDING`` unacknowledged readings; False on a stop."""
    while producer.deliveries().pending >= MAX_PENDING:
        if pacer.stop_requested():
            return False
        producer.poll(0.1)
        elapsed = time.monotonic() - pacer.started
        reporter.report(elapsed, lag_s=elapsed - offset, waiting=True)
    return True


def _final_line(verb: str, stats: SimulatorStats) -> str:
    line = (
        f"{verb}: {stats.delivered:,} of {stats.sent:,} readings delivered in "
        f"{stats.elapsed_s:,.1f} s ({stats.rate:,.0f} readings/s) · "
        f"{stats.undelivered:,} not delivered"
    )
    if stats.undelivered:
        waiting = stats.undelivered - stats.failed
        line += f" ({stats.failed:,} failed, {waiting:,} unacknowledged after "
        line += f"{FLUSH_TIMEOUT_S:.0f} s)"
    line += f" · {_anomalies(stats.anomalies)} injected"
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
