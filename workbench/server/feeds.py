"""The server's live feeds: readings for the readings channel, and what the workers publish.

The server runs no detection. Alert states come from the alerts topic (from its beginning, so a
new server has the whole history): each poll's alerts are pseudonymised (when a key is set),
stored (idempotent by id) and only then broadcast, and their offsets are committed after that,
so a crash loses none. Worker figures come from the metrics topic, detector settings from the
settings topic; a settings change is published there for every worker to apply. Readings go to
the readings channel, encoded once per batch; the fleet's profiles say what the validator accepts
and give the devices' metrics their units.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import msgspec

from workbench.alerts.model import Alert
from workbench.alerts.publish import decode_alert
from workbench.config import Settings
from workbench.profiles.active import active
from workbench.profiles.compile import CompiledProfiles
from workbench.profiles.model import Profiles
from workbench.schema import Reading, to_dict
from workbench.security.pseudonym import Pseudonymiser
from workbench.server.hub import Hub
from workbench.store.alerts import AlertStore
from workbench.streams.clients import make_producer
from workbench.streams.follow import TopicFollower, decode_each
from workbench.streams.records import Record
from workbench.streams.settings_topic import (
    SettingsVersion,
    defaults,
    newest,
    plan_version,
    publish_version,
)
from workbench.streams.source import from_kafka_readings
from workbench.streams.validate import ReadingBatch, ReadingValidator
from workbench.streams.worker import WorkerTopics, live_workers, published_figures

T = TypeVar("T")
_encode = msgspec.json.Encoder().encode
DEVICES_KEPT = 1_000_000
"""Devices whose last reading the server keeps for /api/devices (the least recent go first)."""


class LiveFeeds:
    """Runs on the server's event loop; ``db`` runs store calls on the database thread."""

    def __init__(
        self,
        settings: Settings,
        store: AlertStore,
        hub: Hub,
        db: ThreadPoolExecutor,
        pseudonymiser: Pseudonymiser | None = None,
        topics: WorkerTopics | None = None,
        group_id: str = "workbench-serve",
        start: str = "latest",
        profiles: CompiledProfiles | None = None,
    ) -> None:
        compiled = profiles or active()
        self.profiles: Profiles = compiled.profiles
        self.settings = settings
        self.topics = topics or WorkerTopics()
        self.store = store
        self.hub = hub
        self.pseudonymiser = pseudonymiser
        self.readings = from_kafka_readings(
            settings,
            topic=self.topics.readings,
            group_id=group_id,
            start=start,
            deadletter_topic=None,  # the workers dead-letter what they refuse
            validator=ReadingValidator(profiles=compiled),
        )
        self.readings.sink(self._on_readings)
        self.latest: OrderedDict[str, Reading] = OrderedDict()
        """Each device's last reading, least recently seen first."""
        self.active: dict[str, Alert] = {}
        """Alerts whose incident is going on, by id (devices' status)."""
        self.alerts_stored = 0
        self.workers: dict[str, dict[str, Any]] = {}
        """Each worker's latest figures."""
        self.version: SettingsVersion | None = None
        """The newest settings version (None: the defaults are in force)."""
        self.followers = [
            TopicFollower(settings, self.topics.alerts, self._on_alerts, f"{group_id}-alerts"),
            TopicFollower(settings, self.topics.metrics, self._on_figures, start="latest"),
            TopicFollower(settings, self.topics.settings, self._on_settings),
        ]
        self._db = db
        self._producer = None

    async def in_db(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a store call on the database thread."""
        return await asyncio.get_running_loop().run_in_executor(self._db, fn, *args)

    def start(self) -> None:
        """Start following (call on the event loop)."""
        self.readings.start()
        for follower in self.followers:
            follower.start()

    async def stop(self) -> None:
        """Stop after the batch in hand (committed)."""
        self.readings.stop()
        await self.readings.wait_stopped()
        for follower in self.followers:
            await follower.stop()
        if self._producer is not None:
            await asyncio.get_running_loop().run_in_executor(self._db, self._producer.close)

    # -- the feeds ---------------------------------------------------------------------------
    async def _on_readings(self, batch: ReadingBatch) -> None:
        latest = self.latest
        for r in batch.readings:
            latest[r.device_id] = r
            latest.move_to_end(r.device_id)
        while len(latest) > DEVICES_KEPT:
            latest.popitem(last=False)
        if self.hub.wants_readings():
            self._publish_readings(batch.readings)

    async def _on_alerts(self, records: list[Record]) -> None:
        alerts = list({a.alert_id: a for a in decode_each(records, decode_alert)}.values())
        for a in alerts:
            if a.status == "active":
                self.active[a.alert_id] = a
            else:
                self.active.pop(a.alert_id, None)
        if self.pseudonymiser is not None:
            alerts = [self.pseudonymiser.alert(a) for a in alerts]
        if alerts:
            self.alerts_stored += await self.in_db(self.store.upsert, alerts)
            self.hub.publish("alerts", alerts_message(alerts))

    async def _on_figures(self, records: list[Record]) -> None:
        for figures in published_figures(records)[0]:
            self.workers[str(figures.get("worker"))] = figures

    async def _on_settings(self, records: list[Record]) -> None:
        self.version = newest(records, self.version)

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

    # -- what the API serves -----------------------------------------------------------------
    def live_workers(self) -> dict[str, dict[str, Any]]:
        """The figures of the workers heard from lately (``worker.live_workers``)."""
        return live_workers(self.workers)

    def metrics(self) -> dict[str, Any]:
        """Readings feed, workers, alert and client figures (/metrics channel, /api/metrics)."""
        return {
            "readings": self.readings.metrics.snapshot().as_dict(),
            "workers": self.live_workers(),
            "alerts": {"active": len(self.active), "stored_updates": self.alerts_stored},
            "clients": self.hub.stats(),
        }

    async def devices(self) -> list[dict[str, Any]]:
        """Every known device with its last reading, its metrics' units and status."""
        alerting: dict[str, list[str]] = {}
        for a in self.active.values():
            alerting.setdefault(a.device_id, []).append(a.severity)
        units = self.profiles.units
        devices = [_device(r, alerting.get(r.device_id, []), units) for r in self.latest.values()]
        if self.pseudonymiser is not None:
            for d in devices:
                d["device_id"] = self.pseudonymiser.device(d["device_id"])
                d["last_reading"]["device_id"] = d["device_id"]
        return devices

    def settings_in_force(self) -> dict[str, dict[str, Any]]:
        """The detector settings the workers apply."""
        return defaults() if self.version is None else self.version.settings

    async def change_settings(self, body: object, actor: str, role: str) -> tuple[dict, dict]:
        """Check a change and publish it for every worker; (old, new) of what changed.

        Raises ValueError saying what is wrong and what is allowed.
        """
        version = plan_version(self.version, body, actor, role)
        if version is None:
            return {}, {}

        def publish() -> None:
            if self._producer is None:
                self._producer = make_producer(self.settings, client_id="workbench-serve")
            publish_version(self._producer, version, self.topics.settings)

        await self.in_db(publish)
        self.version = version
        return version.old, version.new


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
    """The /alerts channel's message for one poll's changed alerts."""
    return _encode({"type": "alerts", "at": time.time(), "alerts": alerts})
