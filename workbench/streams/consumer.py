"""``LiveIoTDataConsumer``: the original spec's one-object entry point to live readings."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from workbench.config import TOPIC_READINGS, Settings
from workbench.streams.metrics import MetricsSnapshot
from workbench.streams.source import from_kafka_readings
from workbench.streams.validate import ReadingBatch


class LiveIoTDataConsumer:
    """Consume validated reading batches from Kafka and hand them to ``on_batch`` callbacks.

    ``consumer.stream`` is the Streamz source node, so any Streamz pipeline can hang off it.
    In a notebook ``start_consuming()`` returns at once and the work runs on the kernel's event
    loop; in a script it blocks until ``stop_consuming()`` (from a callback) or Ctrl-C.
    """

    def __init__(
        self,
        bootstrap_servers: str | None = None,
        topic: str = TOPIC_READINGS,
        group_id: str | None = "workbench",
        backend: str | None = None,
        on_batch: Callable[[ReadingBatch], Any] | None = None,
        settings: Settings | None = None,
        **source_options: Any,
    ) -> None:
        self.settings = settings or Settings.from_env(
            bootstrap_servers=bootstrap_servers, backend=backend
        )
        self.stream = from_kafka_readings(
            self.settings, topic=topic, group_id=group_id, **source_options
        )
        if on_batch is not None:
            self.stream.sink(on_batch)

    @property
    def metrics(self) -> MetricsSnapshot:
        """The pipeline's current figures."""
        return self.stream.metrics.snapshot()

    def start_consuming(self) -> None:
        """Start; inside a running event loop return at once, else block until stopped."""
        self.stream.start()
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            try:
                while not self.stream.finished.wait(0.2):
                    pass
            except KeyboardInterrupt:
                self.stop_consuming()
                self.stream.finished.wait(30)

    def stop_consuming(self) -> None:
        """Stop after the batch in hand: it is handled and committed, then the clients close."""
        self.stream.loop.add_callback(self.stream.stop)
