"""One viewer's live pipeline inside a kernel: its own consumer group, detector and buffers.

Each notebook or Voilà page builds one ``LiveSession``: source → detection → alert log, plus
bounded buffers the views read. Views only touch what lives on the kernel's main thread (the
alert log, buffers); detector and aggregates are read and changed between batches on the
detection thread (``DetectionStage.between_batches``), so nothing is half-updated.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

from workbench.alerts.manager import AlertManager
from workbench.alerts.model import Alert, SeverityPolicy
from workbench.config import TOPIC_READINGS, TOPIC_TRUTH, Settings
from workbench.evaluation.events import KindScore, score_events
from workbench.evaluation.replay import ReplayResult, replay
from workbench.models.ensemble import EnsembleDetector
from workbench.profiles.active import active
from workbench.profiles.compile import CompiledProfiles
from workbench.streams.aggregate import RollingAggregates
from workbench.streams.detect import DetectionStage
from workbench.streams.source import from_kafka_readings
from workbench.streams.validate import ReadingBatch, ReadingValidator
from workbench.ui.buffers import RecentReadings
from workbench.ui.truth import TruthFeed


class AlertLog:
    """The latest state of each alert (bounded, oldest evicted) and a feed of recent changes."""

    def __init__(self, size: int = 10_000, feed: int = 200) -> None:
        self.size = size
        self.by_id: OrderedDict[str, Alert] = OrderedDict()
        self.feed: deque[Alert] = deque(maxlen=feed)
        self.opened_at: dict[str, float] = {}
        """alert id → wall-clock time (s) this view first saw it (alerts per minute)."""

    def update(self, alerts: list[Alert]) -> None:
        for alert in alerts:
            if alert.alert_id not in self.by_id:
                self.opened_at[alert.alert_id] = time.time()
            self.by_id[alert.alert_id] = alert
            self.by_id.move_to_end(alert.alert_id)
            self.feed.append(alert)
        while len(self.by_id) > self.size:
            old, _ = self.by_id.popitem(last=False)
            self.opened_at.pop(old, None)

    def active(self) -> list[Alert]:
        return [a for a in self.by_id.values() if a.status == "active"]

    def opened_within(self, seconds: float) -> int:
        """Alerts this view saw open in the last ``seconds`` of wall-clock time."""
        cutoff = time.time() - seconds
        return sum(1 for t in self.opened_at.values() if t >= cutoff)

    def clear(self) -> None:
        self.by_id.clear()
        self.feed.clear()
        self.opened_at.clear()


class LiveSession:
    """Source, detection, alert log and buffers for one viewer (its own consumer group)."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        topic: str = TOPIC_READINGS,
        truth_topic: str | None = TOPIC_TRUTH,
        group_id: str | None = None,
        start: str = "latest",
        buffer_size: int = 300_000,
        detector: EnsembleDetector | None = None,
        policy: SeverityPolicy | None = None,
        profiles: CompiledProfiles | None = None,
    ) -> None:
        """``profiles``: the fleet's device types and wire format (default: the process's)."""
        compiled = profiles or active()
        self.profiles = compiled.profiles
        """The device types, metrics and units the views offer: what the validator accepts."""
        self.settings = settings or Settings.from_env()
        self.group_id = group_id or f"workbench-view-{uuid.uuid4().hex[:10]}"
        self.recent = RecentReadings(buffer_size)
        self.alerts = AlertLog()
        self.detector = detector or EnsembleDetector()
        aggregates = RollingAggregates(profiles=self.profiles)
        self.stage = DetectionStage(self.detector, AlertManager(policy), aggregates=aggregates)
        # The pipeline of `workbench up`/`consume` owns the dead-letter topic: N viewers must not
        # write N copies of each malformed record, so a view only counts its rejects.
        self.source = from_kafka_readings(
            self.settings,
            topic=topic,
            group_id=self.group_id,
            start=start,
            deadletter_topic=None,
            validator=ReadingValidator(profiles=compiled),
        )
        self.truth = TruthFeed(self.settings, truth_topic) if truth_topic else None
        self.batch_listeners: list[Callable[[ReadingBatch], object]] = []
        """Called on the kernel's loop with every batch (charts pick what they plot)."""
        self.alert_listeners: list[Callable[[list[Alert]], object]] = []
        self.data_now: datetime | None = None
        """Data time the pipeline has reached (the watermark)."""
        self.applied_at: datetime | None = None
        """Data time the current settings took effect (quality is judged from then on)."""
        self.started = False
        self._replays = ThreadPoolExecutor(1, thread_name_prefix="workbench-preview")
        self.source.sink(self._on_batch)
        self.source.sink(self.stage)
        self.stage.listeners.append(self._on_alerts)

    # -- running ---------------------------------------------------------------------------
    def start(self) -> None:
        """Start consuming on the running loop (a kernel's); returns at once."""
        if self.started:
            return
        self.started = True
        self.source.start()
        if self.truth is not None:
            self.truth.start()

    async def stop(self) -> None:
        """Commit what was handled, stop the consumer and the threads."""
        if not self.started:
            return
        self.started = False
        self.source.stop()
        await self.source.wait_stopped()
        if self.truth is not None:
            self.truth.stop()
        self.stage.close()
        self._replays.shutdown(wait=False, cancel_futures=True)

    def _on_batch(self, batch: ReadingBatch) -> None:
        self.recent.extend(batch.readings)
        newest = batch.watermark or max(r.ts for r in batch.readings)
        if self.data_now is None or newest > self.data_now:
            self.data_now = newest
        if self.applied_at is None:
            self.applied_at = self.data_now
        for listener in self.batch_listeners:
            listener(batch)

    def _on_alerts(self, alerts: list[Alert]) -> None:
        self.alerts.update(alerts)
        for listener in self.alert_listeners:
            listener(alerts)

    # -- settings --------------------------------------------------------------------------
    def params(self) -> dict[str, Any]:
        """The detector settings in use."""
        return self.detector.get_params()

    @property
    def policy(self) -> SeverityPolicy:
        return self.stage.manager.policy

    @staticmethod
    def check(params: dict[str, Any], policy: SeverityPolicy | None = None) -> None:
        """Refuse bad settings with a message naming the setting and what is allowed."""
        EnsembleDetector().set_params(**params)
        if policy is not None:
            policy.check()

    async def apply(self, params: dict[str, Any], policy: SeverityPolicy | None = None) -> None:
        """Change the running pipeline's settings between two batches."""
        self.check(params, policy)

        def change() -> None:
            self.detector.set_params(**params)
            if policy is not None:
                self.stage.manager.set_policy(policy)

        await self.stage.between_batches(change)
        self.applied_at = self.data_now

    # -- reading state ---------------------------------------------------------------------
    def quality(self) -> KindScore | None:
        """Precision and recall against the simulator's truth since the settings took effect.

        Only closed incidents count (a truth is published once its anomaly ends), and only truths
        that began after the settings were applied. None without truth.
        """
        if self.truth is None or self.applied_at is None:
            return None
        since = self.applied_at
        truths = [t for t in list(self.truth.truths) if t.start >= since]
        closed = [
            a for a in self.alerts.by_id.values() if a.status == "closed" and a.first_seen >= since
        ]
        if not truths and not closed:
            return None
        return score_events(truths, closed).overall

    async def preview(
        self,
        params: dict[str, Any],
        policy: SeverityPolicy | None = None,
        minutes: float = 5.0,
        progress: Callable[[int, int], None] | None = None,
    ) -> ReplayResult:
        """Replay the buffered readings with other settings; count the last ``minutes``' alerts.

        Runs on its own thread; the live pipeline keeps going meanwhile.
        """
        self.check(params, policy)
        readings = self.recent.snapshot()
        if not readings:
            raise ValueError("nothing to preview yet: no readings have arrived")
        truths = list(self.truth.truths) if self.truth is not None else []
        loop = asyncio.get_running_loop()

        def report(done: int, total: int) -> None:
            if progress is not None:
                loop.call_soon_threadsafe(progress, done, total)

        return await loop.run_in_executor(
            self._replays,
            lambda: replay(readings, params, policy, minutes * 60, truths, progress=report),
        )

    def clear(self) -> None:
        """Forget buffered readings and alerts shown (the pipeline keeps running)."""
        self.recent.clear()
        self.alerts.clear()

    def alerts_in_window(self, minutes: float) -> int:
        """Alerts the live pipeline opened in the last ``minutes`` of data time."""
        if self.data_now is None:
            return 0
        since = self.data_now - timedelta(minutes=minutes)
        return sum(1 for a in self.alerts.by_id.values() if a.first_seen >= since)
