"""The detection stage of the live pipeline: detect, fold into incidents, publish, aggregate.

It runs off the event loop on its own thread (a kernel stays responsive while a batch is scored)
and the source awaits it, so a batch's offsets are committed only once its alerts are on the
broker. Detector, severity policy and aggregates can be changed while it runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Protocol, TypeVar

from workbench.alerts.manager import AlertManager
from workbench.alerts.model import Alert
from workbench.alerts.publish import AlertPublisher
from workbench.models.base import Finding
from workbench.models.ensemble import EnsembleDetector
from workbench.models.forest import FleetModelDetector
from workbench.schema import Reading
from workbench.streams.aggregate import RollingAggregates
from workbench.streams.validate import ReadingBatch

T = TypeVar("T")


class BatchDetector(Protocol):
    """Anything that scores then learns a batch of readings, and reports devices gone silent."""

    def process_batch(self, readings: list[Reading]) -> list[Finding]: ...
    def silent_findings(self, now: datetime) -> list[Finding]: ...


class DetectionStage:
    """Awaitable sink for a ``from_kafka_readings`` source: ``source.sink(stage)``."""

    def __init__(
        self,
        detector: BatchDetector,
        manager: AlertManager | None = None,
        publisher: AlertPublisher | None = None,
        aggregates: RollingAggregates | None = None,
    ) -> None:
        self.detector = detector
        self.manager = manager or AlertManager()
        self.publisher = publisher
        self.aggregates = aggregates or RollingAggregates()
        self.listeners: list[Callable[[list[Alert]], object]] = []
        """Called on the event loop with each batch's changed alerts (feeds, charts)."""
        self.observers: list[Callable[[ReadingBatch], object]] = []
        """Called on the detection thread with each batch once it is processed (a worker's
        checkpoint bookkeeping)."""
        self.findings = 0
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="workbench-detect")

    def _process(self, batch: ReadingBatch) -> list[Alert]:
        readings = batch.readings
        findings = self.detector.process_batch(readings)
        # Silence is judged against the watermark (data time all partitions reached), never
        # against wall-clock time or the fastest partition: a replay behaves the same, and a
        # lagging partition does not make its devices look silent.
        if batch.watermark is not None:
            findings += self.detector.silent_findings(batch.watermark)
        self.findings += len(findings)
        now = batch.watermark or max(r.ts for r in readings)
        alerts = self.manager.process(findings, now=now)
        self.aggregates.update(readings)
        if self.publisher is not None and alerts:
            self.publisher.publish(alerts)
        for observe in self.observers:
            observe(batch)
        return alerts

    async def __call__(self, batch: ReadingBatch) -> list[Alert]:
        """Process one batch; returns the alerts it opened, changed or closed."""
        loop = asyncio.get_running_loop()
        alerts = await loop.run_in_executor(self._executor, self._process, batch)
        for listener in self.listeners:
            listener(alerts)
        return alerts

    async def between_batches(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the detection thread between two batches (change settings, read state).

        Detector, alert manager and aggregates are only ever touched on that thread, so a
        settings change never lands in the middle of a batch and a reader never sees one half done.
        """
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    def run_sync(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the detection thread and wait for it, from a thread other than that one
        (a Kafka client's rebalance callback)."""
        return self._executor.submit(fn).result()

    def close(self) -> None:
        """Let the detection thread go (after the source has stopped)."""
        self._executor.shutdown(wait=True)


def live_detection_stage(
    publisher: AlertPublisher | None = None, background_refits: bool = True
) -> DetectionStage:
    """The detection stage as the live pipeline builds it: the ensemble and the alert manager with
    their defaults (``workbench up`` and ``consume``, the fuzz benchmark, the labelled evaluation).

    ``background_refits=False`` fits the fleet models (Isolation Forest, DBSCAN) on the detection
    thread at exactly every model update interval, where live they are fitted beside the stream
    and swapped in when ready: an evaluation's figures then depend on its data alone, not on how
    fast the trainer was.
    """
    detector = EnsembleDetector()
    if not background_refits:
        for component in detector.components.values():
            if isinstance(component, FleetModelDetector):
                component.set_params(background=False)
    return DetectionStage(detector, AlertManager(), publisher)
