"""Detection workers on real Kafka: they share the partitions, a killed worker's partitions resume
warm on the other from the changelog with nothing lost, and a settings change reaches them all.

Each worker is a ``workbench worker`` process on the session broker, with topics of its own test.
"""

from __future__ import annotations

import itertools
import os
import signal
import threading
import time
import uuid
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.waiting import eventually
from tests.worker_helpers import Namespace
from workbench import schema
from workbench.alerts.publish import decode_alert
from workbench.config import Settings
from workbench.evaluation.events import score_events
from workbench.schema import Reading
from workbench.simulator import simulate
from workbench.simulator.anomalies import Truth
from workbench.streams.clients import make_producer
from workbench.streams.records import read_partitions
from workbench.streams.settings_topic import decode_version
from workbench.streams.worker import WorkerTopics

DEVICES = 60
RATE = 600.0
"""Readings per second, produced in real time: the simulated clock runs with the wall clock."""


@pytest.fixture
def ns(kafka: Settings, tmp_path: Path) -> Namespace:
    return Namespace(kafka, tmp_path)


class PacedFleet(threading.Thread):
    """Simulated devices with labelled anomalies, each reading produced when its time comes."""

    def __init__(self, kafka: Settings, topic: str, seconds: float, seed: int = 11) -> None:
        super().__init__(daemon=True)
        self.kafka, self.topic = kafka, topic
        self.start_at = datetime.now(UTC)
        self.items = list(
            simulate(DEVICES, RATE, int(RATE * seconds), seed=seed, start=self.start_at)
        )
        self.sent: dict[str, list[int]] = defaultdict(list)
        self.truths: list[Truth] = [t for _, ts in self.items for t in ts]
        self.error: BaseException | None = None

    def run(self) -> None:
        producer = make_producer(self.kafka)
        began = time.monotonic()
        try:
            for reading, _truths in self.items:
                due = (reading.ts - self.start_at).total_seconds() - (time.monotonic() - began)
                if due > 0:
                    time.sleep(due)
                producer.send(self.topic, schema.encode(reading), key=reading.device_id.encode())
                self.sent[reading.device_id].append(reading.seq)
            producer.flush()
        except BaseException as exc:
            self.error = exc
        finally:
            producer.close()

    def readings(self) -> list[Reading]:
        return [r for r, _ in self.items]


def _all_partitions(owned: dict[str, list[int]]) -> list[int]:
    return sorted(p for parts in owned.values() for p in parts)


def test_workers_share_partitions_and_a_killed_ones_resume_warm(ns: Namespace) -> None:
    with ns.worker("A") as a, ns.worker("B") as b:
        # Two workers of one group split the six partitions between them, each its own.
        assert eventually(
            lambda: (
                set(owned := ns.owned()) == {"A", "B"}
                and all(owned.values())  # B joined, and the group rebalanced
                and _all_partitions(owned) == list(range(6))
            ),
            60,
        ), f"{ns.owned()}\n{a.output[-2000:]}\n{b.output[-2000:]}"
        shares = ns.owned()
        assert shares["A"] and shares["B"], shares
        # Each reports how far behind it is on each of its own partitions, and on no other.
        assert eventually(
            lambda: all(
                [p for p, _lag in ns.figures()[w]["pipeline"]["partition_lag"] or ()]
                == ns.owned()[w]
                for w in ("A", "B")
            ),
            30,
        ), ns.figures()

        fleet = PacedFleet(ns.kafka, ns.topics.readings, seconds=45)
        fleet.start()
        time.sleep(18)  # B has checkpointed a few times under load
        b_devices = {d for d, s in ns.devices().items() if s.worker == "B"}
        assert b_devices, "B checkpointed none of its devices"
        os.killpg(b.proc.pid, signal.SIGKILL)
        killed_at = datetime.now(UTC)

        # A takes every partition over, restoring B's devices from the changelog.
        assert eventually(lambda: ns.owned().get("A") == list(range(6)), 60), ns.owned()
        restored = ns.figures()["A"]["devices_restored"]
        assert restored >= len(b_devices), (restored, len(b_devices))
        fleet.join(120)
        assert fleet.error is None and not fleet.is_alive()

        def caught_up() -> bool:
            seen = ns.devices()
            return all(
                d in seen and seen[d].last_seq == max(seqs) for d, seqs in fleet.sent.items()
            )

        assert eventually(caught_up, 60), a.output[-3000:]
        assert eventually(
            lambda: ns.figures()["A"]["pipeline"]["partition_lag"] == [[p, 0] for p in range(6)],
            30,
        ), ns.figures()["A"]["pipeline"]
        code, _ = a.stop(signal.SIGTERM, 60)
        assert code == 0, a.output[-3000:]

    # Every reading is accounted for: no sequence number skipped beyond the simulator's own
    # dropouts, and anything processed twice (B died while it checkpointed) counted as such.
    devices = ns.devices()
    assert set(devices) == set(fleet.sent)
    for device_id, seqs in fleet.sent.items():
        status = devices[device_id]
        gaps = sum(b - a - 1 for a, b in itertools.pairwise(seqs))
        assert status.missing == gaps, (device_id, status, gaps)
        assert status.readings - status.repeated == len(seqs), (device_id, status, len(seqs))
        assert status.worker == "A"
    repeated = sum(s.repeated for s in devices.values())
    assert repeated <= RATE * 5, repeated  # at most one checkpoint interval's readings

    # One incident is one alert: B's open incidents were carried on by A under the same ids, so
    # no device and metric has two alerts open at once.
    alerts = {}
    for r in read_partitions(ns.kafka, ns.topics.alerts):
        alert = decode_alert(r.value)
        alerts[alert.alert_id] = alert
    assert alerts, "no alert at all: the fleet's anomalies went unseen"
    by_sensor = defaultdict(list)
    for alert in alerts.values():
        by_sensor[(alert.device_id, alert.metric)].append(alert)
    for sensor, group in by_sensor.items():
        group.sort(key=lambda x: x.first_seen)
        for earlier, later in itertools.pairwise(group):
            assert later.first_seen > earlier.last_seen, (sensor, earlier, later)

    # No warm-up burst: after the takeover, B's devices raise no more false alerts than the
    # whole fleet did per device before it.
    scores = score_events(fleet.truths, alerts.values())
    false_after = [
        x for x in scores.false_positives if x.device_id in b_devices and x.first_seen > killed_at
    ]
    assert len(false_after) <= max(3, len(scores.false_positives) // 2), (
        false_after,
        Counter(x.kind for x in scores.false_positives),
    )


def test_a_settings_change_reaches_every_worker_with_its_audit_record(ns: Namespace) -> None:
    with ns.worker("A") as a, ns.worker("B") as b:
        assert eventually(lambda: set(ns.owned()) == {"A", "B"}, 60), (a.output, b.output)
        with ns.command("settings", "set", "detector.window_size=150", "severity.high=0.9") as s:
            assert s.proc.wait(60) == 0, s.output
            assert "settings v1 published" in s.output

        def applied() -> bool:
            figures = ns.figures()
            return all(figures[w]["settings_version"] == 1 for w in ("A", "B"))

        assert eventually(applied, 30), ns.figures()

        # A bad change is refused, saying what is allowed, and publishes nothing.
        with ns.command("settings", "set", "detector.window=3") as bad:
            assert bad.proc.wait(60) == 2
            assert "no detector setting 'window'; allowed: anomaly_threshold" in bad.output

    versions = [decode_version(r.value) for r in read_partitions(ns.kafka, ns.topics.settings)]
    assert [v.version for v in versions] == [1]
    v = versions[0]
    assert v.new == {"detector": {"window_size": 150}, "severity": {"high": 0.9}}
    assert v.old == {"detector": {"window_size": 100}, "severity": {"high": 0.8}}
    assert v.role == "admin" and "(command line)" in v.changed_by
    assert abs(v.changed_at - time.time()) < 120

    from workbench.security.audit import AuditLog, AuditQuery
    from workbench.store.db import open_database

    db_settings = Settings.from_env(data_dir=Path(ns.env["WORKBENCH_DATA_DIR"]))
    records, total = AuditLog(open_database(db_settings.database)).query(
        AuditQuery(action="settings.change")
    )
    assert total == 1
    assert records[0]["target"] == "settings v1"
    assert records[0]["new"] == v.new


def test_workers_starting_together_both_create_their_groups_changelog(kafka: Settings) -> None:
    """Two workers of a new group start at once: each makes the topics it needs, and the one
    that loses the race to create the changelog goes on (it once died of TopicAlreadyExists)."""
    topics = WorkerTopics.prefixed(f"t.{uuid.uuid4().hex[:8]}.")
    errors: list[BaseException] = []

    def ensure() -> None:
        try:
            topics.ensure(kafka, groups=("g",))
        except BaseException as exc:
            errors.append(exc)

    racers = [threading.Thread(target=ensure) for _ in range(4)]
    for t in racers:
        t.start()
    for t in racers:
        t.join(120)
    assert errors == []
    changelog = read_partitions(kafka, topics.changelog_of("g"))
    assert changelog == []  # it exists (a missing topic raises), empty
