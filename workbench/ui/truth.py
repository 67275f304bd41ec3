"""The simulator's ground truth, read live so the dashboard can score its alerts."""

from __future__ import annotations

import threading
from collections import deque

from workbench.config import TOPIC_TRUTH, Settings
from workbench.simulator.anomalies import Truth, decode_truth


class TruthFeed:
    """Reads ``iot.truth`` from its end on a daemon thread into a bounded deque (newest last).

    A simulator publishes an anomaly's truth once it has ended, so the feed trails the alerts.
    Undecodable records are skipped: truth is only a yardstick, never an input to detection.
    """

    def __init__(self, settings: Settings, topic: str = TOPIC_TRUTH, size: int = 10_000) -> None:
        self.settings = settings
        self.topic = topic
        self.truths: deque[Truth] = deque(maxlen=size)
        self.error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="workbench-truth", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)

    def _run(self) -> None:
        from kafka import KafkaConsumer

        try:
            consumer = KafkaConsumer(
                self.topic,
                bootstrap_servers=self.settings.bootstrap,
                group_id=None,
                auto_offset_reset="latest",
                enable_auto_commit=False,
                **self.settings.kafka_python_security(),
            )
        except Exception as exc:  # no broker yet: the dashboard shows it instead of dying
            self.error = f"truth feed unavailable: {exc}"
            return
        try:
            while not self._stop.is_set():
                for records in consumer.poll(500).values():
                    for record in records:
                        try:
                            self.truths.append(decode_truth(record.value))
                        except Exception:
                            continue
        finally:
            consumer.close()
