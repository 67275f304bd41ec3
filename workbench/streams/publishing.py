"""Publishing records to Kafka on a schedule, reporting only what the broker acknowledged.

The simulator and ``workbench replay`` share this. A record goes out once its offset from the
start is due on a monotonic clock, so the rate never drifts and a slow patch is caught up in a
burst; between due records the loop sleeps at least a couple of milliseconds, so records leave in
small batches. Every figure comes from the broker's delivery reports (delivered, pending, failed):
a record handed to the client is not yet a record sent.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

from workbench.streams.clients import ProducerBackend

T = TypeVar("T")

PROGRESS_INTERVAL_S = 2.0
MIN_SLEEP_S = 0.002
MAX_SLEEP_S = 0.1
CLOCK_CHECK_EVERY = 1024
"""Records between clock checks while behind schedule (stop requests are noticed then too)."""
STALL_S = 3.0
"""Records waiting this long with no acknowledgement at all: the broker is unreachable."""
MAX_PENDING = 50_000
"""Unacknowledged records the producer may hold (~12 MB, well inside the clients' buffers); past
that the sender waits, so an outage never blocks nor overflows the client."""
FLUSH_TIMEOUT_S = 5.0
"""How long the end of a run (or a stop) waits for the last delivery reports."""


@dataclass(frozen=True)
class DeliveryStats:
    """What one publishing run did, from the broker's delivery reports."""

    sent: int
    """Records handed to the producer."""
    delivered: int
    """Records the broker acknowledged."""
    failed: int
    """Records reported as failed (refused, or given up on after the client's delivery timeout)."""
    elapsed_s: float

    @property
    def undelivered(self) -> int:
        """Records not acknowledged: failed, or still waiting when the run ended."""
        return self.sent - self.delivered

    @property
    def rate(self) -> float:
        """Records delivered per second over the run."""
        return self.delivered / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def summary(self, verb: str, noun: str) -> str:
        """``done: D of S readings delivered in T s (R readings/s) · U not delivered (…)``."""
        line = (
            f"{verb}: {self.delivered:,} of {self.sent:,} {noun} delivered in "
            f"{self.elapsed_s:,.1f} s ({self.rate:,.0f} {noun}/s) · "
            f"{self.undelivered:,} not delivered"
        )
        if self.undelivered:
            waiting = self.undelivered - self.failed
            line += f" ({self.failed:,} failed, {waiting:,} unacknowledged after "
            line += f"{FLUSH_TIMEOUT_S:.0f} s)"
        return line


class Pacer:
    """Holds a run to its schedule and decides when it must stop."""

    def __init__(
        self, started: float, deadline_s: float | None, stop_event: threading.Event | None
    ) -> None:
        self.started = started
        """The monotonic clock at the schedule's start."""
        self.elapsed = 0.0
        self._deadline_s = deadline_s
        """Seconds after the start at which the run stops however far behind it is (None: never)."""
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
                return False
            if offset_s <= self.elapsed:
                return True
            pause = min(max(offset_s - self.elapsed, MIN_SLEEP_S), MAX_SLEEP_S)
            if self._stop_event is not None:
                self._stop_event.wait(pause)
            else:
                time.sleep(pause)


class Reporter:
    """Progress lines every couple of seconds: delivery figures, the delivered rate, and whatever
    the run adds (``extra``)."""

    def __init__(
        self,
        progress: Callable[[str], None] | None,
        producer: ProducerBackend,
        topic: str,
        noun: str,
        extra: Callable[[], list[str]],
        sender: str,
    ) -> None:
        """``noun``: what is sent ("readings"); ``sender``: who waits on a full producer."""
        self._progress = progress
        self._producer = producer
        self._topic = topic
        self._noun = noun
        self._extra = extra
        self._sender = sender
        self._last = (0.0, 0)  # (elapsed s, records delivered) at the last report

    def report(self, elapsed_s: float, lag_s: float, waiting: bool = False) -> None:
        """Report if an interval has passed since the last report."""
        last_s, last_delivered = self._last
        if self._progress is None or elapsed_s < last_s + PROGRESS_INTERVAL_S:
            return
        self._producer.poll(0)
        d = self._producer.deliveries(self._topic)
        rate = (d.delivered - last_delivered) / (elapsed_s - last_s)
        parts = [
            f"{d.delivered:,} {self._noun} delivered",
            f"{rate:,.0f} {self._noun}/s",
            f"{d.pending:,} pending",
            f"{d.failed:,} failed",
            *self._extra(),
        ]
        if d.stalled_s >= STALL_S:
            parts.insert(0, f"broker unreachable (nothing acknowledged for {d.stalled_s:,.0f} s)")
        if waiting:
            parts.append(
                f"{self._sender} waits while {MAX_PENDING:,} {self._noun} are unacknowledged"
            )
        elif lag_s > 1.0:
            parts.append(f"{lag_s:,.1f} s behind schedule")
        self._progress(" · ".join(parts))
        self._last = (elapsed_s, d.delivered)


def send_when_due(
    items: Iterable[tuple[float, T]],
    send: Callable[[T], None],
    producer: ProducerBackend,
    pacer: Pacer,
    reporter: Reporter,
) -> None:
    """``send`` each item once its offset (s after the pacer's start) is due, holding back while
    the producer has ``MAX_PENDING`` unacknowledged; returns at the end or when the pacer stops."""
    for handed, (offset, item) in enumerate(items):
        if offset > pacer.elapsed or not handed % CLOCK_CHECK_EVERY:
            if not pacer.wait_until(offset):
                return
            reporter.report(pacer.elapsed, lag_s=pacer.elapsed - offset)
            if not _room_for_more(producer, pacer, reporter, offset):
                return
        send(item)


def _room_for_more(
    producer: ProducerBackend, pacer: Pacer, reporter: Reporter, offset: float
) -> bool:
    """Wait while the producer holds ``MAX_PENDING`` unacknowledged records; False on a stop."""
    while producer.deliveries().pending >= MAX_PENDING:
        if pacer.stop_requested():
            return False
        producer.poll(0.1)
        elapsed = time.monotonic() - pacer.started
        reporter.report(elapsed, lag_s=elapsed - offset, waiting=True)
    return True


def settle(
    producer: ProducerBackend, topic: str, pacer: Pacer, progress: Callable[[str], None] | None
) -> DeliveryStats:
    """Wait up to ``FLUSH_TIMEOUT_S`` for the last delivery reports; what ``topic`` got then."""
    pending = producer.deliveries().pending
    if pending and progress is not None:
        progress(f"waiting up to {FLUSH_TIMEOUT_S:.0f} s for {pending:,} delivery reports…")
    with contextlib.suppress(TimeoutError):
        producer.flush(FLUSH_TIMEOUT_S)
    elapsed = time.monotonic() - pacer.started
    d = producer.deliveries(topic)
    return DeliveryStats(sent=d.sent, delivered=d.delivered, failed=d.failed, elapsed_s=elapsed)
