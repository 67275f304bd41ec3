"""Rolling per-type aggregates for the charts: metric mean/min/max and energy use.

Each batch is folded in as one bucket per device type (vectorised with numpy), and buckets older
than the window (in data time) are dropped, so the cost is per batch and memory is bounded. Energy
comes from each device's cumulative register: what it advanced since the device was first seen.
"""

from __future__ import annotations

from collections import OrderedDict, defaultdict, deque
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np

from workbench.schema import METRICS, Reading


@dataclass(frozen=True, slots=True)
class _Bucket:
    ts: datetime
    count: int
    sums: dict[str, float]
    mins: dict[str, float]
    maxs: dict[str, float]


class RollingAggregates:
    """Per device type: readings, metric mean/min/max over ``window``, energy since start."""

    def __init__(
        self, window: timedelta = timedelta(minutes=5), max_devices: int = 100_000
    ) -> None:
        if window <= timedelta(0) or max_devices < 1:
            raise ValueError("window must be positive and max_devices at least 1")
        self.window = window
        self.max_devices = max_devices
        self._buckets: dict[str, deque[_Bucket]] = defaultdict(deque)
        self._energy_first: OrderedDict[str, tuple[str, float]] = OrderedDict()
        self._energy_last: dict[str, float] = {}
        self._devices: dict[str, set[str]] = defaultdict(set)
        self.latest: dict[str, Reading] = {}
        """device id → its most recent reading (status, map and drill-down views)."""

    def update(self, readings: list[Reading]) -> None:
        """Fold a batch in."""
        if not readings:
            return
        by_type: dict[str, list[Reading]] = defaultdict(list)
        for r in readings:
            by_type[r.device_type].append(r)
        newest = max(r.ts for r in readings)
        latest = self.latest
        for r in readings:
            if r.device_id in latest or len(latest) < self.max_devices:
                latest[r.device_id] = r
        for device_type, group in by_type.items():
            self._add_bucket(device_type, group)
            self._track_energy(device_type, group)
        for buckets in self._buckets.values():
            while buckets and buckets[0].ts < newest - self.window:
                buckets.popleft()

    def _add_bucket(self, device_type: str, group: list[Reading]) -> None:
        sums, mins, maxs = {}, {}, {}
        for metric in METRICS[device_type]:
            values = np.fromiter((getattr(r, metric) for r in group), float, len(group))
            sums[metric], mins[metric], maxs[metric] = values.sum(), values.min(), values.max()
        ts = max(r.ts for r in group)
        self._buckets[device_type].append(_Bucket(ts, len(group), sums, mins, maxs))
        devices = self._devices[device_type]
        if len(devices) < self.max_devices:
            devices.update(r.device_id for r in group)

    def _track_energy(self, device_type: str, group: list[Reading]) -> None:
        if "energy" not in METRICS[device_type]:
            return
        for r in group:
            if r.device_id not in self._energy_first:
                if len(self._energy_first) >= self.max_devices:
                    old, _ = self._energy_first.popitem(last=False)
                    self._energy_last.pop(old, None)
                self._energy_first[r.device_id] = (device_type, r.energy)
            self._energy_last[r.device_id] = r.energy

    def energy_by_device(self) -> dict[str, float]:
        """Energy (kWh) each metered device's register advanced since it was first seen."""
        return {
            device_id: max(0.0, self._energy_last[device_id] - first)
            for device_id, (_type, first) in self._energy_first.items()
        }

    def snapshot(self) -> dict[str, dict[str, object]]:
        """Per device type: devices seen, readings in the window, metric stats, energy figures."""
        energy: dict[str, float] = defaultdict(float)
        for device_id, kwh in self.energy_by_device().items():
            energy[self._energy_first[device_id][0]] += kwh
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
                for m in METRICS[device_type]
            }
            devices = len(self._devices[device_type])
            entry: dict[str, object] = {
                "devices": devices,
                "readings": count,
                "readings_per_s": count / span_s,
                "metrics": metrics,
            }
            if device_type in energy:
                entry["energy_kwh"] = energy[device_type]
                entry["mean_power_w"] = metrics["power"]["mean"]
            out[device_type] = entry
        return out
