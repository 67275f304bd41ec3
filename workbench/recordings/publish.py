"""``workbench replay``: a recording published to Kafka with its own times, paced by its own gaps.

Readings go out keyed by device id, in the profile's wire format, with the simulator's delivery
reporting (:mod:`workbench.streams.publishing`): progress every couple of seconds (rows/s
delivered, how much of the recording, the recording time reached) and a final count of what the
broker acknowledged and what it did not, also on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import itertools
import math
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from workbench.config import TOPIC_READINGS, Settings
from workbench.recordings.convert import Converted, RecordingFormat, RowConverter
from workbench.recordings.files import ByteCount, recording_files
from workbench.recordings.pacing import Pacing
from workbench.recordings.timeline import Skipped, recording_readings
from workbench.stopping import stop_signals
from workbench.streams.clients import make_producer
from workbench.streams.publishing import DeliveryStats, Pacer, Reporter, send_when_due, settle
from workbench.streams.topics import DEFAULT_TOPICS, ensure_topics_when_reachable
from workbench.streams.validate import DEFAULT_MAX_FUTURE


@dataclass(frozen=True)
class ReplayStats(DeliveryStats):
    """What one replay did: the delivery figures, and the rows that were not readings."""

    skipped: int = 0
    skipped_reasons: list[str] = field(default_factory=list)


class _Position:
    """How far a replay has got: bytes of the recording read, the last row's recording time."""

    def __init__(self, files: list[Path]) -> None:
        self.bytes = ByteCount()
        self.total = sum(p.stat().st_size for p in files) or 1
        self.reached: datetime | None = None

    def parts(self) -> list[str]:
        share = min(100.0, 100.0 * self.bytes.read / self.total)
        reached = "" if self.reached is None else self.reached.isoformat()
        return [f"{share:.0f} % of the recording", f"recording time {reached}"]


def replay_recording(
    settings: Settings,
    files: list[Path],
    form: RecordingFormat,
    speed: float = 1.0,
    shift_to_now: bool = False,
    topic: str = TOPIC_READINGS,
    progress: Callable[[str], None] | None = None,
    stop_event: threading.Event | None = None,
    max_future: timedelta = DEFAULT_MAX_FUTURE,
) -> ReplayStats:
    """Publish the readings of ``files`` in time order at ``speed`` (``math.inf``: as fast as
    possible) until the end or a stop; rows that are not readings are counted, not sent.

    ``max_future``: how far ahead of the clock the pipeline accepts times (a warning says when
    shifted times replayed faster than real time will run further ahead)."""
    skipped = Skipped()
    position = _Position(files)
    readings = recording_readings(files, form, skipped, position.bytes)
    first = next(readings, None)
    converter = RowConverter(form)
    producer = make_producer(settings, client_id="workbench-replay")
    try:
        started = time.monotonic()
        pacer = Pacer(started, None, stop_event)
        interrupted = False
        if first is not None:
            pacing = Pacing.of(first.ts, speed, shift_to_now, datetime.now(UTC))
            _warn_ahead(pacing, max_future, progress)
            reporter = Reporter(
                progress, producer, topic, noun="rows", extra=position.parts, sender="the replay"
            )

            def send(reading: Converted) -> None:
                value = converter.wire(reading, pacing.shift)
                producer.send(topic, value, key=reading.device_id.encode())
                position.reached = reading.ts

            try:
                scheduled = ((pacing.due_s(r.ts), r) for r in itertools.chain([first], readings))
                send_when_due(scheduled, send, producer, pacer, reporter)
            except KeyboardInterrupt:
                interrupted = True
        delivered = settle(producer, topic, pacer, progress)
    finally:
        producer.close(timeout_s=0)
    stats = ReplayStats(**asdict(delivered), skipped=skipped.count, skipped_reasons=skipped.reasons)
    if progress is not None:
        for line in skipped.lines():
            progress(line)
        verb = "stopped" if interrupted or pacer.stop_requested() else "done"
        progress(f"{stats.summary(verb, 'rows')} · {skipped.count:,} skipped")
    return stats


def _warn_ahead(
    pacing: Pacing, max_future: timedelta, progress: Callable[[str], None] | None
) -> None:
    ahead_from = pacing.too_far_ahead_from_s(max_future)
    if ahead_from is not None and progress is not None:
        speed = "as fast as possible" if math.isinf(pacing.speed) else f"at {pacing.speed:g}×"
        progress(
            f"note: shifted to now and replayed {speed}, rows recorded more than "
            f"{ahead_from:,.0f} s after the first carry times over "
            f"{max_future.total_seconds():,.0f} s ahead of the clock, which the pipeline refuses"
        )


def main(
    settings: Settings,
    path: Path,
    form: RecordingFormat,
    speed: float,
    shift_to_now: bool,
    topic: str,
    progress: Callable[[str], None],
) -> int:
    """``workbench replay``: wait for the broker, replay, report; 1 if any row was not delivered."""
    files = recording_files(path)
    topics = None if topic == TOPIC_READINGS else {topic: DEFAULT_TOPICS[TOPIC_READINGS]}
    with stop_signals() as stop:
        if ensure_topics_when_reachable(settings, stop, progress, topics) is None:
            progress(
                f"stopped: the broker at {settings.bootstrap} never answered, so nothing was "
                "replayed · 0 not delivered"
            )
            return 1
        progress(f"replaying {len(files):,} file(s) from {path} to {topic} ({settings.bootstrap})")
        stats = replay_recording(
            settings, files, form, speed, shift_to_now, topic, progress, stop_event=stop
        )
    return 0 if not stats.undelivered else 1
