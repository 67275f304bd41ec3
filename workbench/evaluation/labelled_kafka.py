"""A labelled recording through a real topic: published as ``workbench replay`` publishes it (as
fast as possible), read back by the live source (decoded and validated as the live pipeline does).
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from workbench.config import Settings
from workbench.recordings.convert import RecordingFormat
from workbench.recordings.publish import ReplayStats, replay_recording
from workbench.schema import Reading
from workbench.streams.source import from_kafka_readings
from workbench.streams.topics import ensure_topics
from workbench.streams.validate import ReadingBatch

IDLE_TIMEOUT_S = 60.0
"""Give up when the source has handled nothing new for this long after the replay ended."""


@dataclass
class Received:
    """What came back from the topic: each device's readings in arrival order, and how fast."""

    readings: dict[str, list[Reading]]
    dead_lettered: int
    seconds: float
    """From the first row published to the last one handled by the source."""

    @property
    def rows(self) -> int:
        return sum(len(r) for r in self.readings.values()) + self.dead_lettered

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0


async def through_kafka(
    settings: Settings, files: list[Path], form: RecordingFormat, progress: Callable[[str], None]
) -> Received:
    """Publish ``files`` to a fresh topic and read every row back with the live source."""
    run = uuid.uuid4().hex[:8]
    topic, deadletter = f"workbench.eval.{run}.readings", f"workbench.eval.{run}.deadletter"
    ensure_topics(settings, {topic: 6, deadletter: 1})
    readings: dict[str, list[Reading]] = defaultdict(list)
    last_handled = time.monotonic()

    async def collect(batch: ReadingBatch) -> None:
        nonlocal last_handled
        for reading in batch.readings:
            readings[reading.device_id].append(reading)
        last_handled = time.monotonic()

    source = from_kafka_readings(
        settings, topic=topic, group_id=f"eval-{run}", deadletter_topic=deadletter
    )
    source.sink(collect)
    source.start()
    stop = threading.Event()
    published: list[ReplayStats] = []

    def say(message: str) -> None:
        progress(f"replay: {message}")

    def publish() -> None:
        stats = replay_recording(
            settings, files, form, math.inf, topic=topic, progress=say, stop_event=stop
        )
        published.append(stats)

    def handled() -> int:
        return source.metrics.total + source.metrics.dead_lettered

    started = time.monotonic()
    replay = threading.Thread(target=publish, name="workbench-eval-replay")
    replay.start()
    try:
        while replay.is_alive():
            await asyncio.sleep(0.2)
        if not published or published[0].undelivered:
            raise RuntimeError("the replay did not deliver every row; see its messages above")
        while handled() < published[0].delivered:
            if time.monotonic() - last_handled > IDLE_TIMEOUT_S:
                raise TimeoutError(
                    f"the source handled {handled():,} of {published[0].delivered:,} rows and "
                    f"nothing more for {IDLE_TIMEOUT_S:.0f} s"
                )
            await asyncio.sleep(0.05)
        seconds = last_handled - started
    finally:
        stop.set()
        replay.join()
        source.stop()
        await source.wait_stopped()
    return Received(dict(readings), source.metrics.dead_lettered, seconds)
