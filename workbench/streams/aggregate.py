"""Rolling per-type aggregates for the charts: metric mean/min/max, and what counters advanced.

Each batch is folded in as one bucket per device type (vectorised with numpy), and buckets older
than the window (in data time) are dropped, so the cost is per batch and memory is bounded. A
counter metric (a register that only rises, as the profile declares it) is followed per device:
how far it advanced since the device was first seen, over how much of that device's data time.
"""

from __future__ import annotations

import copy
import itertools
import operator
from collections import OrderedDict, defaultdict, deque
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np

from workbench.profiles.active import active
from workbench.profiles.model import Profiles
from workbench.schema import Reading

_TS = operator.attrgetter("ts")
_ID = operator.attrgetter("device_id")


def _as_floats(names: tuple[str, ...], got: object) -> dict[str, float]:
    """An attrgetter's result (one value, or a tuple of several) as name → float."""
    values = got if len(names) > 1 else (got,)
    return {name: float(v) for name, v in zip(names, values, strict=True)}  # type: ignore[arg-type]


SLOTS = 60
"""The window is held as at most about this many buckets per type, one per slot of data time
(5 s of a 5-minute window), so what a snapshot costs does not grow with the batch rate."""
RECENT_BATCHES = 1_000
"""Batches per type kept for ``means_since`` (its caller asks about once a second)."""


@dataclass(frozen=True, slots=True)
class _Bucket:
    ts: datetime
    count: int
    sums: dict[str, float]
    mins: dict[str, float]
    maxs: dict[str, float]
    serial: int = 0
    """Batches are numbered in the order they were added (``means_since``)."""

    def merged(self, other: _Bucket) -> _Bucket:
        """This bucket with ``other``'s readings folded in."""
        return _Bucket(
            max(self.ts, other.ts),
            self.count + other.count,
            {m: v + other.sums[m] for m, v in self.sums.items()},
            {m: min(v, other.mins[m]) for m, v in self.mins.items()},
            {m: max(v, other.maxs[m]) for m, v in self.maxs.items()},
            other.serial,
        )


@dataclass(slots=True)
class CounterRun:
    """One device's counters since it was first seen: first and latest values, and when."""

    device_type: str
    first_ts: datetime
    first: dict[str, float]
    last_ts: datetime
    last: dict[str, float]

    @property
    def hours(self) -> float:
        """Data time between the first and the latest reading (h)."""
        return (self.last_ts - self.first_ts).total_seconds() / 3600

    def advance(self, metric: str, falls: bool = False) -> float:
        """How far ``metric`` moved its way: up, or down for a counter that ``falls`` (a
        battery's charge). A register reset counts as no advance."""
        moved = self.last[metric] - self.first[metric]
        return max(0.0, -moved if falls else moved)


class RollingAggregates:
    """Per device type: readings, metric mean/min/max over ``window``; counters since first seen.

    ``profiles``: the fleet's device types (default: the process's), which say each type's
    metrics and which of them are counters.
    """

    def __init__(
        self,
        window: timedelta = timedelta(minutes=5),
        max_devices: int = 100_000,
        profiles: Profiles | None = None,
    ) -> None:
        if window <= timedelta(0) or max_devices < 1:
            raise ValueError("window must be positive and max_devices at least 1")
        self.window = window
        self.max_devices = max_devices
        self.profiles = profiles or active().profiles
        self._metrics = self.profiles.metrics
        self._counters = {t.name: t.of_kind("counter") for t in self.profiles.types}
        self._buckets: dict[str, deque[_Bucket]] = defaultdict(deque)
        """Per type, the window's buckets, one per slot of data time."""
        self._slot_s = window.total_seconds() / SLOTS
        self._batches: dict[str, deque[_Bucket]] = defaultdict(lambda: deque(maxlen=RECENT_BATCHES))
        """Per type, its latest batches, one bucket each (``means_since``)."""
        self._runs: OrderedDict[str, CounterRun] = OrderedDict()
        """device id → its counters' run, for devices of a type with counter metrics."""
        self._devices: dict[str, set[str]] = defaultdict(set)
        self._serial = 0
        self.latest: dict[str, Reading] = {}
        """device id → its most recent reading (status, map and drill-down views)."""

    def update(self, readings: list[Reading]) -> None:
        """Fold a batch in."""
        if not readings:
            return
        by_type: dict[str, list[Reading]] = defaultdict(list)
        for r in readings:
            by_type[r.device_type].append(r)
        newest = max(map(_TS, readings))
        latest = self.latest
        if len(latest) + len(readings) <= self.max_devices:
            latest.update(zip(map(_ID, readings), readings, strict=True))
        else:
            for r in readings:
                if r.device_id in latest or len(latest) < self.max_devices:
                    latest[r.device_id] = r
        for device_type, group in by_type.items():
            self._add_bucket(device_type, group)
            self._track_counters(self._counters[device_type], group)
        for buckets in self._buckets.values():
            while buckets and buckets[0].ts < newest - self.window:
                buckets.popleft()

    def _add_bucket(self, device_type: str, group: list[Reading]) -> None:
        metrics = self._metrics[device_type]
        values = np.array(list(map(operator.attrgetter(*metrics), group)), dtype=np.float64)
        values = values.reshape(len(group), len(metrics))
        sums = dict(zip(metrics, values.sum(axis=0).tolist(), strict=True))
        mins = dict(zip(metrics, values.min(axis=0).tolist(), strict=True))
        maxs = dict(zip(metrics, values.max(axis=0).tolist(), strict=True))
        self._serial += 1
        batch = _Bucket(max(map(_TS, group)), len(group), sums, mins, maxs, self._serial)
        self._batches[device_type].append(batch)
        buckets = self._buckets[device_type]
        slot = self._slot_s
        if buckets and buckets[-1].ts.timestamp() // slot == batch.ts.timestamp() // slot:
            buckets[-1] = buckets[-1].merged(batch)
        else:
            buckets.append(batch)
        devices = self._devices[device_type]
        if len(devices) < self.max_devices:
            devices.update(map(_ID, group))

    def _track_counters(self, counters: tuple[str, ...], group: list[Reading]) -> None:
        """Each device's run, from the batch's last reading of it (Kafka keeps a device's
        readings in order; one older than the run's latest is passed over)."""
        if not counters:
            return
        runs = self._runs
        values = operator.attrgetter(*counters)
        ids = list(map(_ID, group))
        lasts = dict(zip(ids, group, strict=True))
        firsts = None
        for device_id, r in lasts.items():
            run = runs.get(device_id)
            if run is None:
                if firsts is None:  # each device's first reading in the batch
                    firsts = dict(zip(reversed(ids), reversed(group), strict=True))
                if len(runs) >= self.max_devices:
                    runs.popitem(last=False)
                f = firsts[device_id]
                first = _as_floats(counters, values(f))
                runs[device_id] = run = CounterRun(r.device_type, f.ts, first, f.ts, first)
            if r.ts >= run.last_ts:
                run.last_ts, run.last = r.ts, _as_floats(counters, values(r))

    def counter_run(self, device_id: str) -> CounterRun | None:
        """The device's counters since first seen (None: it has none, or was evicted)."""
        return self._runs.get(device_id)

    def means_since(self, serial: int) -> tuple[dict[str, dict[str, object]], int]:
        """Per device type, the readings and metric means of the batches added after batch
        ``serial`` (with the latest data time among them), and the serial to ask from next."""
        out: dict[str, dict[str, object]] = {}
        for device_type, batches in self._batches.items():
            fresh = list(itertools.takewhile(lambda b: b.serial > serial, reversed(batches)))
            count = sum(b.count for b in fresh)
            if not count:
                continue
            out[device_type] = {
                "ts": max(b.ts for b in fresh).isoformat(),
                "readings": count,
                "means": {
                    m: sum(b.sums[m] for b in fresh) / count for m in self._metrics[device_type]
                },
            }
        return out, self._serial

    def counter_runs(self) -> dict[str, CounterRun]:
        """device id → its counters since first seen; a copy later batches do not change."""
        return {device_id: copy.copy(run) for device_id, run in self._runs.items()}

    def snapshot(self) -> dict[str, dict[str, object]]:
        """Per device type: devices seen, readings in the window, metric stats over it."""
        out: dict[str, dict[str, object]] = {}
        for device_type, buckets in self._buckets.items():
            if not buckets:
                continue
            count = sum(b.count for b in buckets)
            span_s = max((buckets[-1].ts - buckets[0].ts).total_seconds(), 1.0)
            metrics = {
                m: {
                    "mean": sum(b.sums[m] for b in buckets) / count,
                    "min": min(b.mins[m] for b in buckets),
                    "max": max(b.maxs[m] for b in buckets),
                }
                for m in self._metrics[device_type]
            }
            out[device_type] = {
                "devices": len(self._devices[device_type]),
                "readings": count,
                "readings_per_s": count / span_s,
                "metrics": metrics,
            }
        return out
