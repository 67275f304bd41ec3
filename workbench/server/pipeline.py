"""The server's own live pipeline: Kafka source → detection → alert store → WebSocket clients.

Each batch's changed alerts are pseudonymised (when a key is set), stored (idempotent by id) and
only then broadcast, and the source commits the batch after that: an alert a client sees can be
acknowledged, and a crash loses none. Readings go to the readings channel, encoded once per batch.
The fleet's profiles (default: the process's) say what the validator accepts and give the devices'
metrics their units.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import msgspec

from workbench.alerts.model import Alert
from workbench.config import TOPIC_READINGS, Settings
from workbench.models.ensemble import EnsembleDetector
from workbench.profiles.active import active
from workbench.profiles.compile import CompiledProfiles
from workbench.profiles.model import Profiles
from workbench.schema import Reading, to_dict
from workbench.security.pseudonym import Pseudonymiser
from workbench.server import tuning
from workbench.server.hub import Hub
from workbench.store.alerts import AlertStore
from workbench.streams.aggregate import RollingAggregates
from workbench.streams.detect import DetectionStage
from workbench.streams.source import from_kafka_readings
from workbench.streams.validate import ReadingBatch, ReadingValidator

T = TypeVar("T")
_encode = msgspec.json.Encoder().encode


class LivePipeline:
    """Runs on the server's event loop; ``db`` runs store calls on the database thread."""

    def __init__(
        self,
        settings: Settings,
        store: AlertStore,
        hub: Hub,
        db: ThreadPoolExecutor,
        pseudonymiser: Pseudonymiser | None = None,
        topic: str = TOPIC_READINGS,
        group_id: str = "workbench-serve",
        start: str = "latest",
        detector: EnsembleDetector | None = None,
        profiles: CompiledProfiles | None = None,
    ) -> None:
        compiled = profiles or active()
        self.profiles: Profiles = compiled.profiles
        self.store = store
        self.hub = hub
        self.pseudonymiser = pseudonymiser
        self.detector = detector or EnsembleDetector()
        self.stage = DetectionStage(
            self.detector, aggregates=RollingAggregates(profiles=self.profiles)
        )
        self.source = from_kafka_readings(
            settings,
            topic=topic,
            group_id=group_id,
            start=start,
            validator=ReadingValidator(profiles=compiled),
        )
        self.source.sink(self._handle)
        self.alerts_stored = 0
        self.active_alerts = 0
        self._db = db

    async def in_db(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a store call on the database thread."""
        return await asyncio.get_running_loop().run_in_executor(self._db, fn, *args)

    def start(self) -> None:
        """Start consuming (call on the event loop)."""
        self.source.start()

    async def stop(self) -> None:
        """Stop after the batch in hand (committed), then let the detection thread go."""
        self.source.stop()
        await self.source.wait_stopped()
        self.stage.close()

    async def _handle(self, batch: ReadingBatch) -> None:
        alerts = await self.stage(batch)
        self.active_alerts = len(self.stage.manager.active)
        if self.pseudonymiser is not None:
            alerts = [self.pseudonymiser.alert(a) for a in alerts]
        if alerts:
            self.alerts_stored += await self.in_db(self.store.upsert, alerts)
            self.hub.publish("alerts", alerts_message(alerts))
        if self.hub.wants_readings():
            self._publish_readings(batch.readings)

    def _publish_readings(self, readings: list[Reading]) -> None:
        if self.pseudonymiser is not None:
            readings = [self.pseudonymiser.reading(r) for r in readings]
        encoded = [(r.device_id, r.device_type, _encode(r)) for r in readings]
        head = b'{"type":"readings","at":%.6f,"readings":[' % time.time()
        everything = None
        for client in self.hub.clients["readings"].values():
            wanted = client.wanted
            if not wanted.devices and not wanted.types:
                if everything is None:
                    everything = head + b",".join(e for _, _, e in encoded) + b"]}"
                client.offer(everything)
                continue
            parts = [e for d, t, e in encoded if wanted.wants(d, t)]
            if parts:
                client.offer(head + b",".join(parts) + b"]}")

    def metrics(self) -> dict[str, Any]:
        """Pipeline, alert and client figures (the /metrics channel and GET /api/metrics)."""
        return {
            "pipeline": self.source.metrics.snapshot().as_dict(),
            "alerts": {"active": self.active_alerts, "stored_updates": self.alerts_stored},
            "clients": self.hub.stats(),
        }

    async def devices(self) -> list[dict[str, Any]]:
        """Every known device with its last reading, its metrics' units and status."""

        def collect() -> list[dict[str, Any]]:
            alerting: dict[str, list[str]] = {}
            for a in self.stage.manager.active:
                alerting.setdefault(a.device_id, []).append(a.severity)
            units = self.profiles.units
            return [
                _device(r, alerting.get(r.device_id, []), units)
                for r in self.stage.aggregates.latest.values()
            ]

        devices = await self.stage.between_batches(collect)
        if self.pseudonymiser is not None:
            for d in devices:
                d["device_id"] = self.pseudonymiser.device(d["device_id"])
                d["last_reading"]["device_id"] = d["device_id"]
        return devices

    def settings(self) -> dict[str, dict[str, Any]]:
        """The detector settings in force."""
        return tuning.current(self.detector, self.stage.manager.policy)

    async def change_settings(self, body: object) -> tuple[dict, dict]:
        """Validate and apply a settings change between batches; (old, new) of what changed."""

        def change() -> tuple[dict, dict]:
            old, new = tuning.plan_change(body, self.detector, self.stage.manager.policy)
            policy = tuning.apply_change(new, self.detector, self.stage.manager.policy)
            self.stage.manager.set_policy(policy)
            return old, new

        return await self.stage.between_batches(change)


SEVERITY_RANK = {"low": 0, "medium": 1, "high": 2}


def _device(reading: Reading, severities: list[str], units: dict[str, str]) -> dict[str, Any]:
    """A device as /api/devices lists it: its last reading by field name (whatever the wire
    calls them) and the unit of each of its metrics (``units``: the fleet's, metric → unit)."""
    worst = max(severities, key=SEVERITY_RANK.__getitem__, default=None)
    return {
        "device_id": reading.device_id,
        "device_type": reading.device_type,
        "status": "alerting" if severities else "ok",
        "active_alerts": len(severities),
        "worst_severity": worst,
        "last_seen": reading.ts.isoformat(),
        "last_reading": msgspec.to_builtins(to_dict(reading)),
        "units": {m: units[m] for m in reading.metric_names},
    }


def alerts_message(alerts: list[Alert]) -> bytes:
    """The /alerts channel's message for one batch's changed alerts."""
    return _encode({"type": "alerts", "at": time.time(), "alerts": alerts})
