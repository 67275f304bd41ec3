"""``workbench worker``: the one detection pipeline, and the factory every runner builds it with.

Source → validate → detect → alerts, with its state and figures as topics: alert states go to
``iot.alerts`` (keyed by alert id), per-device detector state to its group's changelog
(``iot.detector-state.<group>``) before each commit
(``workbench.streams.checkpoint``), the latest state per device to ``iot.devices``, the
worker's figures to ``iot.metrics`` once a second, and it applies new versions from
``iot.settings`` between batches. Any number of workers in one consumer group share the readings'
partitions: Kafka's group protocol hands them out and moves them when a worker comes or goes.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from workbench.alerts.model import Alert
from workbench.alerts.publish import AlertPublisher
from workbench.config import (
    TOPIC_ALERTS,
    TOPIC_CHANGELOG,
    TOPIC_DEADLETTER,
    TOPIC_DEVICES,
    TOPIC_METRICS,
    TOPIC_READINGS,
    TOPIC_SETTINGS,
    Settings,
)
from workbench.models.ensemble import EnsembleDetector
from workbench.streams.checkpoint import Checkpointer
from workbench.streams.clients import make_producer
from workbench.streams.detect import DetectionStage, live_detection_stage
from workbench.streams.follow import TopicFollower, decode_each
from workbench.streams.records import Record
from workbench.streams.settings_topic import SettingsVersion, apply_version, newest
from workbench.streams.source import from_kafka_readings
from workbench.streams.topics import READING_PARTITIONS, TOPIC_CONFIGS, ensure_topics

WORKER_GROUP = "workbench-workers"
TOPIC_PREFIX_ENV = "WORKBENCH_TOPIC_PREFIX"
CHECKPOINT_S = 5.0
"""How often a worker checkpoints its state and commits its offsets (Quix Streams' default): a
killed worker's successor repeats at most this much of its work."""
FIGURES_S = 1.0
SETTINGS_POLL_S = 1.0
"""A settings change reaches a worker within about this long (a faster poll costs an idle
worker CPU for nothing)."""
log = logging.getLogger(__name__)


def _plain(value: object) -> object:
    """numpy scalars (the aggregates' figures) as Python numbers."""
    item = getattr(value, "item", None)
    if item is None:
        raise TypeError(f"cannot encode {type(value).__name__}")
    return item()


_encode = msgspec.json.Encoder(enc_hook=_plain).encode
_decode_figures = msgspec.json.Decoder(dict[str, Any]).decode
WORKER_GONE_S = 10.0
"""A worker that published no figures for this long is no longer listed as running."""


def published_figures(records: list[Record]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The metrics topic's records decoded: the workers' figures (what ``Worker.figures``
    returns), and the supervisors' reports (``Supervisor.report``, ``kind`` "supervisor")."""
    workers, supervisors = [], []
    for figures in decode_each(records, _decode_figures):
        (supervisors if figures.get("kind") == "supervisor" else workers).append(figures)
    return workers, supervisors


def live_workers(latest: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Of each worker's latest figures (or supervisor's report), those heard from in
    ``WORKER_GONE_S``."""
    recent = time.time() - WORKER_GONE_S
    return {w: f for w, f in latest.items() if f.get("at", 0) >= recent}


def partitions_line(partitions: list[int], lag: list[tuple[int, int]] | None) -> str:
    """A worker's partitions, each with how far behind it is: ``0 (lag 12 msgs), 1 (lag –)``."""
    behind = dict(lag or ())
    return (
        ", ".join(
            f"{p} (lag {behind[p]:,} msgs)" if p in behind else f"{p} (lag –)" for p in partitions
        )
        or "none yet"
    )


@dataclass(frozen=True)
class WorkerTopics:
    """The topics a worker reads and writes (tests and benchmarks use names of their own)."""

    readings: str = TOPIC_READINGS
    deadletter: str = TOPIC_DEADLETTER
    alerts: str = TOPIC_ALERTS
    changelog: str = TOPIC_CHANGELOG
    devices: str = TOPIC_DEVICES
    metrics: str = TOPIC_METRICS
    settings: str = TOPIC_SETTINGS

    @classmethod
    def prefixed(cls, prefix: str) -> WorkerTopics:
        """Every topic named ``prefix`` + its usual name."""
        return cls(**{f: prefix + getattr(cls, f) for f in cls.__dataclass_fields__})

    @classmethod
    def from_env(cls) -> WorkerTopics:
        """The topics named by ``WORKBENCH_TOPIC_PREFIX`` (default: none, the usual names)."""
        return cls.prefixed(os.environ.get(TOPIC_PREFIX_ENV, ""))

    def changelog_of(self, group: str) -> str:
        """The changelog of one consumer group's detector state: each group's workers keep
        their own, with their own offsets (Kafka Streams names it after the application)."""
        return f"{self.changelog}.{group}"

    def ensure(
        self,
        settings: Settings,
        partitions: int = READING_PARTITIONS,
        groups: tuple[str, ...] = (),
    ) -> list[str]:
        """Create those missing, and the changelogs of ``groups``, co-partitioned with the
        readings."""
        usual = WorkerTopics()
        counts = {self.readings: partitions}
        counts |= {self.deadletter: 1, self.alerts: 3, self.devices: 3}
        counts |= {self.metrics: 1, self.settings: 1}
        configs = {
            getattr(self, f): TOPIC_CONFIGS[getattr(usual, f)]
            for f in self.__dataclass_fields__
            if getattr(usual, f) in TOPIC_CONFIGS
        }
        for group in groups:
            counts[self.changelog_of(group)] = partitions
            configs[self.changelog_of(group)] = TOPIC_CONFIGS[TOPIC_CHANGELOG]
        return ensure_topics(settings, counts, configs=configs)


def default_worker_id() -> str:
    """host-pid: unique among the workers of a group, and says where to look."""
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass
class WorkerConfig:
    """How a worker runs."""

    group_id: str = WORKER_GROUP
    worker_id: str = field(default_factory=default_worker_id)
    start: str = "latest"
    """Where a group with no committed offsets (and no checkpoint) starts."""
    topics: WorkerTopics = field(default_factory=WorkerTopics)
    checkpoint_s: float = CHECKPOINT_S
    background_refits: bool = True


class Worker:
    """One detection pipeline; build it on the event loop that runs it."""

    def __init__(self, settings: Settings, config: WorkerConfig | None = None) -> None:
        self.settings = settings
        self.config = config or WorkerConfig()
        topics = self.config.topics
        self.producer = make_producer(settings, client_id=f"worker-{self.config.worker_id}")
        self.stage: DetectionStage = live_detection_stage(
            AlertPublisher(self.producer, topics.alerts), self.config.background_refits
        )
        self.checkpointer = Checkpointer(
            settings,
            self.stage,
            self.producer,
            self.config.worker_id,
            topics.changelog_of(self.config.group_id),
            topics.devices,
        )
        self.source = from_kafka_readings(
            settings,
            topic=topics.readings,
            group_id=self.config.group_id,
            start=self.config.start,
            commit_interval_s=self.config.checkpoint_s,
            deadletter_topic=topics.deadletter,
            owner=self.checkpointer,
        )
        self.source.sink(self.stage)
        self.follower = TopicFollower(
            settings, topics.settings, self._on_settings, poll_s=SETTINGS_POLL_S
        )
        self.latest_settings: SettingsVersion | None = None
        """The newest settings version on the topic."""
        self.settings_version = 0
        """The settings version in force (0: the defaults)."""
        self._means_from = 0

    @property
    def detector(self) -> EnsembleDetector:
        """The worker's ensemble."""
        assert isinstance(self.stage.detector, EnsembleDetector)
        return self.stage.detector

    def start(self) -> None:
        """Start following the settings and consuming (on the event loop)."""
        self.follower.start()
        self.source.start()

    async def _on_settings(self, records: list[Record]) -> None:
        self.latest_settings = newest(records, self.latest_settings)

    async def tick(self) -> None:
        """Once a second: apply a newer settings version, publish the worker's figures."""
        version = self.latest_settings
        if version is not None and version.version > self.settings_version:
            await self.stage.between_batches(lambda: self._apply(version))
        await self.stage.between_batches(self._publish_figures)

    def _apply(self, version: SettingsVersion) -> None:
        policy = apply_version(version, self.detector, self.stage.manager.policy)
        self.stage.manager.set_policy(policy)
        self.settings_version = version.version
        log.info(
            "settings version %d applied (by %s: %s)", version.version, version.changed_by,
            version.new,
        )  # fmt: skip

    def figures(self) -> dict[str, Any]:
        """What the worker publishes to the metrics topic (every figure's unit in its name);
        call it on the detection thread (once a second: 'recent' covers the time since)."""
        cp = self.checkpointer
        return {
            "kind": "worker",
            "worker": self.config.worker_id,
            "group": self.config.group_id,
            "at": time.time(),
            "pipeline": self.source.metrics.snapshot().as_dict(),
            "partitions": sorted(cp.owned),
            "devices": len(cp.ledger),
            "devices_restored": cp.restored,
            "alerts_active": len(self.stage.manager.active),
            "settings_version": self.settings_version,
            "aggregates": self.stage.aggregates.snapshot(),
            "recent": self._recent_means(),
        }

    def _recent_means(self) -> dict[str, dict[str, object]]:
        """Per type, the metric means of the readings since the last figures (trend charts)."""
        means, self._means_from = self.stage.aggregates.means_since(self._means_from)
        return means

    def _publish_figures(self) -> None:
        figures = self.figures()
        self.producer.send(
            self.config.topics.metrics, _encode(figures), key=self.config.worker_id.encode()
        )

    def status_lines(self) -> list[str]:
        """The worker's state for a terminal."""
        cp = self.checkpointer
        snapshot = self.source.metrics.snapshot()
        owned = partitions_line(sorted(cp.owned), snapshot.partition_lag)
        lines = [
            "pipeline: " + snapshot.line(),
            f"worker {self.config.worker_id}: partitions {owned} · {len(cp.ledger):,} devices · "
            f"{cp.restored:,} restored from the changelog · settings v{self.settings_version}",
            "alerts: " + self._alert_line(),
        ]
        return lines + [f"  {e}" for e in list(cp.events)[-2:]]

    def _alert_line(self) -> str:
        manager = self.stage.manager
        latest = next(reversed(manager.history.values()), None)
        return alert_line(manager.active, len(manager.history), latest)

    async def stop(self) -> None:
        """Stop after the batch in hand: checkpoint, commit, let everything go."""
        self.source.stop()
        await self.source.wait_stopped()
        await self.follower.stop()
        self.stage.close()
        self.producer.close()


def alert_line(active: list[Alert], history: int, latest: Alert | None) -> str:
    """Active alerts by severity, how many are known and the latest one, in a line."""
    by_severity = {sev: sum(a.severity == sev for a in active) for sev in ("high", "medium", "low")}
    counts = " · ".join(f"{n} {sev}" for sev, n in by_severity.items())
    tail = f" · latest: [{latest.severity}] {latest.explanation}" if latest else ""
    return f"{len(active)} active ({counts}) · {history:,} in history{tail}"


async def run_worker(
    worker: Worker,
    stopping: threading.Event,
    show: Callable[[Callable[[], list[str]]], None] | None = None,
) -> None:
    """Run ``worker`` until ``stopping`` is set, ticking once a second (``show`` is handed its
    status lines each time)."""
    worker.start()
    try:
        while not stopping.is_set():
            try:
                await worker.tick()
            except Exception:
                log.exception("a worker tick failed; carrying on")
            if show is not None:
                show(worker.status_lines)
            await asyncio.sleep(FIGURES_S)
    finally:
        await worker.stop()
