"""Run ``workbench worker`` processes on the session broker, on one test's own topics."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import msgspec

from tests.cli_helpers import RunningCommand
from workbench.config import Settings
from workbench.streams.checkpoint import DeviceStatus, decode_device_status
from workbench.streams.records import read_partitions
from workbench.streams.worker import WorkerTopics


class Namespace:
    """One test's topics and consumer group; ``worker()`` starts a ``workbench worker`` on them."""

    def __init__(self, kafka: Settings, data_dir: Path, prefix: str | None = None) -> None:
        self.kafka = kafka
        self.prefix = prefix or f"t.{uuid.uuid4().hex[:8]}."
        self.topics = WorkerTopics.prefixed(self.prefix)
        self.topics.ensure(kafka)
        self.group = f"{self.prefix}workers"
        self.env: dict[str, str | None] = {
            "WORKBENCH_DATA_DIR": str(data_dir),
            "KAFKA_BOOTSTRAP_SERVERS": None,
        }

    def command(self, *args: str) -> RunningCommand:
        """``workbench ARGS`` on this namespace's cluster and topics."""
        return RunningCommand(
            *args,
            "--bootstrap-servers",
            self.kafka.bootstrap,
            "--topic-prefix",
            self.prefix,
            env=self.env,
        )

    def worker(self, name: str, *args: str) -> RunningCommand:
        """A worker of the namespace's group, reading from the topics' beginning."""
        return self.command(
            "worker", "--group", self.group, "--id", name, "--start", "earliest", *args
        )

    def figures(self) -> dict[str, dict]:
        """Each worker's latest figures from the metrics topic."""
        latest: dict[str, dict] = {}
        for r in read_partitions(self.kafka, self.topics.metrics):
            figures = msgspec.json.decode(r.value)
            latest[figures["worker"]] = figures
        return latest

    def owned(self) -> dict[str, list[int]]:
        """The partitions each worker said it holds in its latest figures (past 3 s)."""
        recent = time.time() - 3
        return {w: f["partitions"] for w, f in self.figures().items() if f["at"] > recent}

    def devices(self) -> dict[str, DeviceStatus]:
        """The latest status of every device on the devices topic."""
        out = {}
        for r in read_partitions(self.kafka, self.topics.devices):
            status = decode_device_status(r.value)
            out[status.device_id] = status
        return out
