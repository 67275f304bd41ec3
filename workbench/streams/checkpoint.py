"""Per-device detection state checkpointed to a compacted changelog topic, restored on takeover.

A worker owns some partitions of the readings topic. Before the source commits offsets, every
device that changed since the last checkpoint is written to the changelog partition its readings
come from (keyed by device id, so compaction keeps the latest), followed by a marker saying the
next reading offset that state does not include; only then are the offsets committed. When the
group hands the worker a partition, it reads that changelog partition to its end, restores each
device's detector state, open incidents and counts, and resumes the partition at the marker:
state and position come back together, so nothing is learned twice or lost (Kafka Streams and
Quix Streams restore their state stores the same way).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Iterable
from datetime import datetime

import msgspec

from workbench import schema
from workbench.alerts.model import Alert
from workbench.config import TOPIC_CHANGELOG, TOPIC_DEVICES, Settings
from workbench.models import snapshot
from workbench.models.ensemble import EnsembleDetector
from workbench.streams.clients import Messages, ProducerBackend, deliver_many
from workbench.streams.detect import DetectionStage
from workbench.streams.records import read_partitions
from workbench.streams.validate import ReadingBatch

MARKER = b"\x00checkpoint"
"""Key of each changelog partition's marker record (no device id can start with NUL)."""
log = logging.getLogger(__name__)


class DeviceLedger(msgspec.Struct, kw_only=True):
    """What a worker counts of one device: the figures that must survive a takeover."""

    device_type: str
    partition: int
    readings: int = 0
    """Valid readings of the device processed, over every worker that has owned it."""
    last_seq: int | None = None
    """The highest sequence number seen."""
    last_ts: datetime | None = None
    missing: int = 0
    """Sequence numbers skipped (readings the device numbered but nobody processed)."""
    repeated: int = 0
    """Readings numbered at or below the highest seen: processed again (a worker died while it
    checkpointed), or sent by a device that restarted its count."""


class DeviceCheckpoint(msgspec.Struct, kw_only=True):
    """A device's changelog record."""

    ledger: DeviceLedger
    detector: bytes | None
    """Every detector component's state of the device (``workbench.models.snapshot``)."""
    incidents: list[tuple[Alert, datetime | None]] = []
    """Its open incidents, each with when it was last published."""


NO_READING = msgspec.Raw(b"null")


class DeviceStatus(msgspec.Struct, kw_only=True):
    """A device's record on the devices topic: its latest state, for views."""

    device_id: str
    device_type: str
    readings: int
    last_seq: int | None
    last_ts: datetime | None
    missing: int
    repeated: int
    active_alerts: int
    worker: str
    partition: int
    reading: msgspec.Raw = NO_READING
    """Its latest reading, encoded as the readings topic carries it (``null``: none kept)."""
    counters_since: datetime | None = None
    counters_first: dict[str, float] | None = None
    """Its counters' first values and when they were read (how far they advanced since)."""


class Marker(msgspec.Struct, kw_only=True):
    """The offset of the first reading of the partition that the checkpointed state lacks."""

    offset: int
    worker: str
    at: float


_encode = msgspec.msgpack.Encoder().encode
_decode_device = msgspec.msgpack.Decoder(DeviceCheckpoint).decode
_decode_marker = msgspec.msgpack.Decoder(Marker).decode
_encode_json = msgspec.json.Encoder().encode
decode_device_status = msgspec.json.Decoder(DeviceStatus).decode


class Checkpointer:
    """Keeps a worker's per-device ledger and its changelog; hooks for a Kafka source.

    ``observe`` runs on the detection thread after each batch; ``checkpoint``, ``assigned`` and
    ``revoked`` are called on the consumer's thread (before a commit, in rebalance callbacks)
    and do their work on the detection thread, between batches.
    """

    def __init__(
        self,
        settings: Settings,
        stage: DetectionStage,
        producer: ProducerBackend,
        worker: str,
        topic: str = TOPIC_CHANGELOG,
        devices_topic: str | None = TOPIC_DEVICES,
    ) -> None:
        """``devices_topic``: where each checkpointed device's status goes (None: nowhere)."""
        if not isinstance(stage.detector, EnsembleDetector):
            raise TypeError("checkpointing needs the ensemble detector")
        self.settings = settings
        self.stage = stage
        self.ensemble: EnsembleDetector = stage.detector
        self.producer = producer
        self.worker = worker
        self.topic = topic
        self.devices_topic = devices_topic
        self.ledger: dict[str, DeviceLedger] = {}
        self.owned: set[int] = set()
        """Partitions this worker holds state for."""
        self.restored = 0
        """Devices restored from the changelog, in all."""
        self.events: deque[str] = deque(maxlen=20)
        """What happened to this worker's partitions, latest last (shown in its status)."""
        self._dirty: set[str] = set()
        stage.observers.append(self.observe)

    def observe(self, batch: ReadingBatch) -> None:
        """Count each device's readings and note it for the next checkpoint."""
        ledger, dirty = self.ledger, self._dirty
        for partition, readings in batch.partitions():
            self.owned.add(partition)
            for r in readings:
                entry = ledger.get(r.device_id)
                if entry is None or entry.partition != partition:
                    entry = ledger[r.device_id] = DeviceLedger(
                        device_type=r.device_type, partition=partition
                    )
                entry.readings += 1
                entry.last_ts = r.ts
                seq, last = r.seq, entry.last_seq
                if seq is None:
                    continue
                if last is None or seq > last:
                    if last is not None:
                        entry.missing += seq - last - 1
                    entry.last_seq = seq
                else:
                    entry.repeated += 1
                dirty.add(r.device_id)

    # -- the source's hooks (consumer thread) -------------------------------------------------
    def checkpoint(self, offsets: dict[int, int]) -> None:
        """Write what changed on these partitions, then their markers; returns once the broker
        has it all (the offsets may be committed then)."""
        self.stage.run_sync(lambda: self._write(offsets))

    def assigned(self, partitions: list[int]) -> dict[int, int]:
        """Now holding ``partitions``: let go of the others, restore the new ones; where to
        resume each restored partition."""
        return self.stage.run_sync(lambda: self._reassign(set(partitions)))

    def revoked(self, partitions: list[int]) -> None:
        """Nothing to let go yet: an eager rebalance takes every partition away and hands most
        back, so state is dropped only for those not handed back (``assigned``)."""

    def data_time(self, partition: int) -> datetime | None:
        """The latest reading time among the devices held for ``partition``."""
        times = [
            e.last_ts
            for e in self.ledger.values()
            if e.partition == partition and e.last_ts is not None
        ]
        return max(times, default=None)

    # -- on the detection thread --------------------------------------------------------------
    def _write(self, offsets: dict[int, int]) -> None:
        held = self.ledger.get
        device_ids = [d for d in self._dirty if (e := held(d)) and e.partition in offsets]
        incidents = self.stage.manager.incidents(set(device_ids))
        by_partition: dict[int, list[tuple[bytes, bytes, None]]] = {}
        for device_id, record in self._records(device_ids, incidents):
            by_partition.setdefault(self.ledger[device_id].partition, []).append(record)
        changed: list[tuple[str, int | None, Messages]] = [
            (self.topic, p, records) for p, records in by_partition.items()
        ]
        if self.devices_topic is not None:
            changed.append((self.devices_topic, None, list(self._statuses(device_ids, incidents))))
        deliver_many(self.producer, changed)  # all state on the broker before any marker
        self._dirty.difference_update(device_ids)
        now = time.time()
        markers = []
        for partition, offset in offsets.items():
            marker = _encode(Marker(offset=offset, worker=self.worker, at=now))
            markers.append((self.topic, partition, [(MARKER, marker, None)]))
        deliver_many(self.producer, markers)

    def _records(
        self, device_ids: list[str], incidents: dict[str, list[tuple[Alert, datetime | None]]]
    ) -> Iterable[tuple[str, tuple[bytes, bytes, None]]]:
        """Each device's changelog record, by device: one state export per type, whatever the
        partitions (each export has a fixed cost)."""
        by_type: dict[str, list[str]] = {}
        for device_id in device_ids:
            by_type.setdefault(self.ledger[device_id].device_type, []).append(device_id)
        for device_type, ids in by_type.items():
            states = snapshot.take_many(self.ensemble, device_type, ids)
            for device_id, state in zip(ids, states, strict=True):
                record = DeviceCheckpoint(
                    ledger=self.ledger[device_id],
                    detector=state,
                    incidents=incidents.get(device_id, []),
                )
                yield device_id, (device_id.encode(), _encode(record), None)

    def _statuses(
        self, device_ids: list[str], incidents: dict[str, list[tuple[Alert, datetime | None]]]
    ) -> Iterable[tuple[bytes, bytes, None]]:
        aggregates = self.stage.aggregates
        for device_id in device_ids:
            e = self.ledger[device_id]
            latest = aggregates.latest.get(device_id)
            run = aggregates.counter_run(device_id)
            status = DeviceStatus(
                device_id=device_id,
                device_type=e.device_type,
                readings=e.readings,
                last_seq=e.last_seq,
                last_ts=e.last_ts,
                missing=e.missing,
                repeated=e.repeated,
                active_alerts=len(incidents.get(device_id, ())),
                worker=self.worker,
                partition=e.partition,
                reading=NO_READING if latest is None else msgspec.Raw(schema.encode(latest)),
                counters_since=None if run is None else run.first_ts,
                counters_first=None if run is None else run.first,
            )
            yield device_id.encode(), _encode_json(status), None

    def _reassign(self, partitions: set[int]) -> dict[int, int]:
        lost = self.owned - partitions
        if lost:
            self._release(lost)
        gained = sorted(partitions - self.owned)
        resume = self._restore(gained) if gained else {}
        self.owned = set(partitions)
        return resume

    def _release(self, partitions: set[int]) -> None:
        gone = {d for d, e in self.ledger.items() if e.partition in partitions}
        snapshot.forget(self.ensemble, ((self.ledger[d].device_type, d) for d in gone))
        self.stage.manager.release(gone)
        for device_id in gone:
            del self.ledger[device_id]
        self._dirty -= gone
        self.events.append(f"released partitions {_listed(partitions)} ({len(gone):,} devices)")

    def _restore(self, partitions: list[int]) -> dict[int, int]:
        began = time.monotonic()
        latest: dict[bytes, bytes] = {}
        markers: dict[int, Marker] = {}
        for record in read_partitions(self.settings, self.topic, partitions, timeout_s=300):
            if record.key == MARKER and record.value:
                markers[record.partition] = _decode_marker(record.value)
            elif record.key is not None and record.value:
                latest[record.key] = record.value
        detectors = []
        for key, value in latest.items():
            device_id = key.decode()
            state = _decode_device(value)
            if state.detector is not None:
                detectors.append((device_id, state.detector))
            self.stage.manager.adopt(state.incidents)
            self.ledger[device_id] = state.ledger
        cold = len(detectors) - snapshot.put_many(self.ensemble, detectors)
        self.restored += len(latest)
        took = time.monotonic() - began
        note = f" ({cold:,} cold: other detector shapes)" if cold else ""
        self.events.append(
            f"took partitions {_listed(partitions)}: {len(latest):,} devices restored{note} "
            f"in {took:.1f} s"
        )
        log.info("%s", self.events[-1])
        return {p: m.offset for p, m in markers.items()}


def _listed(partitions: Iterable[int]) -> str:
    return ", ".join(map(str, sorted(partitions)))
