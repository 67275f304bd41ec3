"""One viewer's live view inside a kernel: what the detection workers publish, and no detection.

Each notebook or Voilà page builds one ``LiveSession``. It follows the workers' topics: alert
states (from the beginning, so a late viewer sees the active alerts and the history at once),
the latest state of every device, the workers' figures once a second and the settings in force.
Only the one device a viewer follows is read from the readings topic (its partition, bounded).
Settings changes are published for every worker, and acknowledgements go to the alert store, each
checked against the role of the token the page was opened with. A *preview* replays the last
minutes of readings from Kafka with candidate settings on a thread of the kernel's own.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from workbench.alerts.model import Alert, SeverityPolicy
from workbench.alerts.publish import decode_alert
from workbench.config import TOPIC_TRUTH, Settings
from workbench.evaluation.events import KindScore, score_events
from workbench.evaluation.replay import ReplayResult, replay
from workbench.explore.recent import decode_readings, read_recent
from workbench.models.ensemble import EnsembleDetector
from workbench.profiles.active import active
from workbench.profiles.compile import CompiledProfiles
from workbench.schema import Reading
from workbench.security.kernel_grants import Grant, kernel_grant
from workbench.security.tokens import ROLES
from workbench.store.alerts import AlertStore
from workbench.store.db import Database, open_database
from workbench.store.lifecycle import act_on_alert
from workbench.streams.aggregate import CounterRun
from workbench.streams.checkpoint import NO_READING, DeviceStatus, decode_device_status
from workbench.streams.follow import TopicFollower, TopicsFollower, decode_each
from workbench.streams.records import Record
from workbench.streams.settings_topic import (
    SettingsVersion,
    change_settings,
    defaults,
    newest,
)
from workbench.streams.worker import WorkerTopics, live_workers, published_figures
from workbench.ui.truth import TruthFeed

DEVICE_READINGS = 20_000
"""Most readings of the followed device kept (the trend and the CSV export)."""
DEVICE_LOOKBACK = timedelta(minutes=10)
"""How far back the followed device's readings are read when a viewer picks it."""
PREVIEW_READINGS = 300_000
"""Most readings a preview replays (the latest of its window): bounds the kernel's memory."""
GRANT_TTL_S = 1.0
HAND_OVER_S = 0.25
"""The workers' outputs are handed to the view at most this often (the dashboard's tick)."""


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
    """The workers' outputs and one followed device's readings, for one viewer."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        topics: WorkerTopics | None = None,
        truth_topic: str | None = TOPIC_TRUTH,
        profiles: CompiledProfiles | None = None,
        database: Database | None = None,
    ) -> None:
        """``profiles``: the fleet's device types and wire format (default: the process's)."""
        compiled = profiles or active()
        self.compiled = compiled
        self.profiles = compiled.profiles
        """The device types, metrics and units the views offer."""
        self.settings = settings or Settings.from_env()
        self.topics = topics or WorkerTopics()
        self.alerts = AlertLog()
        self.workers: dict[str, dict[str, Any]] = {}
        """Each worker's latest figures."""
        self.supervisors: dict[str, dict[str, Any]] = {}
        """Each supervised group's latest report (``workbench up``: its workers, restarts and
        scaling events)."""
        self.statuses: dict[str, DeviceStatus] = {}
        self.latest: dict[str, Reading] = {}
        """Each device's latest reading, as its worker last checkpointed it."""
        self.version: SettingsVersion | None = None
        self.device: str | None = None
        """The device whose readings are followed."""
        self.device_readings: deque[Reading] = deque(maxlen=DEVICE_READINGS)
        self.truth: TruthFeed | None = None
        self.reading_listeners: list[Callable[[list[Reading]], object]] = []
        """Called on the kernel's loop with each poll's readings of the followed device."""
        self.alert_listeners: list[Callable[[list[Alert]], object]] = []
        self.figure_listeners: list[Callable[[dict[str, Any]], object]] = []
        """Called with each worker's figures as they arrive (type means for the trend)."""
        self.applied_at: datetime | None = None
        """When the settings in force took effect (quality is judged from then on)."""
        self.lifecycle: dict[str, dict[str, Any]] = {}
        """alert id → its lifecycle in the store (state, who acknowledged or cleared it)."""
        self.changes: Counter[str] = Counter()
        """How often each of "alerts", "devices", "figures", "settings" and "lifecycle" changed:
        a view redraws a panel only when what it shows changed."""
        self.started = False
        self._database = database
        self._grant: tuple[Grant, float] | None = None
        self._threads = ThreadPoolExecutor(1, thread_name_prefix="workbench-view")
        self._replays = ThreadPoolExecutor(1, thread_name_prefix="workbench-preview")
        follows = {
            self.topics.alerts: (self._on_alerts, "earliest"),
            self.topics.devices: (self._on_devices, "earliest"),
            self.topics.metrics: (self._on_figures, "latest"),
            self.topics.settings: (self._on_settings, "earliest"),
        }
        optional: frozenset[str] = frozenset()
        if truth_topic:  # the views never wait for it (a fleet with no simulator has none)
            self.truth = TruthFeed()
            follows[truth_topic] = (self.truth.take, "latest")
            optional = frozenset({truth_topic})
        self._followers = [  # one consumer for all (a connection and a thread per view)
            TopicsFollower(
                self.settings,
                follows,
                every_s=HAND_OVER_S,
                optional=optional,
            )
        ]
        self._device_follower: TopicFollower | None = None

    # -- running ---------------------------------------------------------------------------
    def start(self) -> None:
        """Start following on the running loop (a kernel's); returns at once."""
        if self.started:
            return
        self.started = True
        for follower in self._followers:
            follower.start()

    async def stop(self) -> None:
        """Stop following and let the threads go."""
        if not self.started:
            return
        self.started = False
        for follower in [*self._followers, *filter(None, [self._device_follower])]:
            await follower.stop()
        self._device_follower = None
        self._threads.shutdown(wait=False, cancel_futures=True)
        self._replays.shutdown(wait=False, cancel_futures=True)

    async def _on_alerts(self, records: list[Record]) -> None:
        alerts = decode_each(records, decode_alert)
        self.alerts.update(alerts)
        self.changes["alerts"] += 1
        for listener in self.alert_listeners:
            listener(alerts)

    async def _on_devices(self, records: list[Record]) -> None:
        decode = self.compiled.decode
        self.changes["devices"] += 1
        for status in decode_each(records, decode_device_status):
            self.statuses[status.device_id] = status
            if status.reading != NO_READING:
                try:
                    self.latest[status.device_id] = decode(bytes(status.reading))
                except (msgspec.DecodeError, ValueError):
                    continue  # a type of other profiles than this view's

    async def _on_figures(self, records: list[Record]) -> None:
        workers, supervisors = published_figures(records)
        self.changes["figures"] += 1
        for figures in workers:
            self.workers[str(figures.get("worker"))] = figures
            for listener in self.figure_listeners:
                listener(figures)
        for report in supervisors:
            self.supervisors[str(report.get("group"))] = report

    async def _on_settings(self, records: list[Record]) -> None:
        before = self.version
        self.version = newest(records, self.version)
        self.changes["settings"] += 1
        if self.version is not before or self.applied_at is None:
            self.applied_at = datetime.now(UTC)

    # -- the followed device ---------------------------------------------------------------
    @property
    def following(self) -> bool:
        """True while the picked device's readings are being read (its state has arrived)."""
        return self._device_follower is not None

    async def follow(self, device_id: str | None) -> None:
        """Follow ``device_id``'s readings (its last ``DEVICE_LOOKBACK`` first), or none. A
        device whose state has not arrived yet (its partition unknown) is picked but not read:
        call again once it has."""
        if self._device_follower is not None:
            await self._device_follower.stop()
            self._device_follower = None
        self.device = device_id
        self.device_readings.clear()
        status = self.statuses.get(device_id or "")
        if device_id is None or status is None or not self.started:
            return
        key = device_id.encode()
        decode = self.compiled.decode

        async def take(records: list[Record]) -> None:
            mine = []
            for r in records:
                if r.key == key and r.value:
                    try:
                        mine.append(decode(r.value))
                    except (msgspec.DecodeError, ValueError):
                        continue  # dead-lettered by the workers
            if mine and self.device == device_id:
                self.device_readings.extend(mine)
                for listener in self.reading_listeners:
                    listener(mine)

        self._device_follower = TopicFollower(
            self.settings,
            self.topics.readings,
            take,
            partitions=[status.partition],
            since=datetime.now(UTC) - DEVICE_LOOKBACK,
        )
        self._device_follower.start()

    # -- who this viewer is ----------------------------------------------------------------
    @property
    def grant(self) -> Grant:
        """The role this kernel acts in (from the token its page was opened with); looked up
        again every ``GRANT_TTL_S``, since a preheated kernel is handed to a page later."""
        now = time.monotonic()
        if self._grant is None or now - self._grant[1] >= GRANT_TTL_S:
            self._grant = (kernel_grant(), now)
        return self._grant[0]

    def may(self, role: str) -> bool:
        """True when this viewer's role is ``role`` or above."""
        mine = self.grant.role
        return mine in ROLES and ROLES.index(mine) >= ROLES.index(role)

    # -- settings --------------------------------------------------------------------------
    def params(self) -> dict[str, Any]:
        """The detector settings the workers apply."""
        in_force = defaults() if self.version is None else self.version.settings
        return dict(in_force["detector"])

    @property
    def policy(self) -> SeverityPolicy:
        in_force = defaults() if self.version is None else self.version.settings
        return SeverityPolicy(**in_force["severity"])

    @staticmethod
    def check(params: dict[str, Any], policy: SeverityPolicy | None = None) -> None:
        """Refuse bad settings with a message naming the setting and what is allowed."""
        EnsembleDetector().set_params(**params)
        if policy is not None:
            policy.check()

    async def apply(self, params: dict[str, Any], policy: SeverityPolicy | None = None) -> bool:
        """Publish new settings for every worker (analysts and admins only); False when they
        change nothing. Raises PermissionError for a viewer, ValueError for bad settings."""
        grant = self.grant
        if not self.may("analyst"):
            raise PermissionError(f"settings are read-only for a {grant.role}")
        self.check(params, policy)
        body: dict[str, dict[str, Any]] = {"detector": params}
        if policy is not None:
            body["severity"] = msgspec.to_builtins(policy)
        version = await self._in_thread(
            change_settings,
            self.settings,
            body,
            grant.actor,
            grant.role,
            self.topics.settings,
            self._database,
        )
        if version is None:
            return False
        self.version = version
        self.applied_at = datetime.now(UTC)
        return True

    # -- alerts' lifecycle -----------------------------------------------------------------
    def _db(self) -> Database:
        if self._database is None:
            self._database = open_database(self.settings.database)
        return self._database

    async def act_on(self, alert_id: str, action: str) -> dict[str, Any]:
        """Acknowledge ('ack') or clear ('clear') an alert for everyone, audited (analysts and
        admins only). Raises PermissionError, NotFound or LifecycleError saying why not."""
        grant = self.grant
        if not self.may("analyst"):
            raise PermissionError(f"a {grant.role} cannot acknowledge or clear alerts")
        alert = self.alerts.by_id.get(alert_id)

        def act() -> dict[str, Any]:
            if alert is not None:  # stored by id: a no-op when an API server stored it first
                AlertStore(self._db()).upsert([alert])
            return act_on_alert(self._db(), alert_id, action, grant.actor)

        after = await self._in_thread(act)
        self.lifecycle[alert_id] = after
        return after

    async def refresh_lifecycle(self, alert_ids: list[str]) -> None:
        """Read these alerts' lifecycle from the store (what anyone acknowledged or cleared);
        alerts not stored yet (no API server has caught up) stay as they are."""
        if alert_ids:
            found = await self._in_thread(lambda: AlertStore(self._db()).lifecycles(alert_ids))
            if any(self.lifecycle.get(i) != v for i, v in found.items()):
                self.changes["lifecycle"] += 1
            self.lifecycle.update(found)

    # -- reading state ---------------------------------------------------------------------
    def live_workers(self) -> dict[str, dict[str, Any]]:
        """The figures of the workers heard from lately (``worker.live_workers``)."""
        return live_workers(self.workers)

    def counter_runs(self) -> dict[str, CounterRun]:
        """Each metered device's counters since first seen, from the devices' latest states."""
        runs = {}
        for device_id, status in self.statuses.items():
            latest = self.latest.get(device_id)
            if status.counters_first is None or status.counters_since is None or latest is None:
                continue
            last = {m: float(getattr(latest, m)) for m in status.counters_first}
            runs[device_id] = CounterRun(
                status.device_type, status.counters_since, status.counters_first, latest.ts, last
            )
        return runs

    @property
    def data_now(self) -> datetime | None:
        """The data time the fleet has reached (its newest reading)."""
        return max((s.last_ts for s in self.statuses.values() if s.last_ts), default=None)

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
        """Replay the last ``minutes`` of readings from Kafka with other settings; count the
        alerts they raise. Runs on a thread of its own; the workers are left alone."""
        self.check(params, policy)
        if not 1 <= minutes <= 60:
            raise ValueError(f"minutes={minutes}: preview 1 to 60 minutes")
        truths = list(self.truth.truths) if self.truth is not None else []
        loop = asyncio.get_running_loop()

        def report(done: int, total: int) -> None:
            if progress is not None:
                loop.call_soon_threadsafe(progress, done, total)

        def run() -> ReplayResult:
            since = datetime.now(UTC) - timedelta(minutes=minutes)
            records = read_recent(self.settings, self.topics.readings, PREVIEW_READINGS, since)
            readings, _ = decode_readings(records, self.topics.readings)
            if not readings:
                raise ValueError(f"nothing to preview: no readings in the last {minutes} min")
            readings.sort(key=lambda r: r.ts)
            return replay(readings, params, policy, minutes * 60, truths, progress=report)

        return await loop.run_in_executor(self._replays, run)

    def clear(self) -> None:
        """Forget the followed device's readings and the alerts shown (following goes on)."""
        self.device_readings.clear()
        self.alerts.clear()
        self.changes["alerts"] += 1

    def alerts_in_window(self, minutes: float) -> int:
        """Alerts the workers opened in the last ``minutes`` of data time."""
        now = self.data_now
        if now is None:
            return 0
        since = now - timedelta(minutes=minutes)
        return sum(1 for a in self.alerts.by_id.values() if a.first_seen >= since)

    async def _in_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._threads, fn, *args)
