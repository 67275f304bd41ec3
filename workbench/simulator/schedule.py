"""The emission schedule: which device sends when, so the fleet as a whole sends at a fixed rate.

Time is cut into *slots* of exactly ``1/rate`` seconds. Device ``d`` of ``n`` sends its ``j``-th
reading in slot ``j·n + d``, so every device reports every ``n/rate`` seconds, the devices are
staggered evenly within each interval, and the fleet total is exactly ``rate`` readings/s. Working
in slots rather than clock readings keeps the simulation independent of how fast it actually runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np


@dataclass(frozen=True)
class Schedule:
    """Slots ↔ UTC times: ``devices`` devices sending ``rate`` readings/s in all from ``start``."""

    devices: int
    rate: float
    start: datetime

    @property
    def interval_s(self) -> float:
        """Seconds between two readings of one device."""
        return self.devices / self.rate

    @property
    def start_us(self) -> int:
        """The start, in whole microseconds since the epoch."""
        return round(self.start.timestamp() * 1_000_000)

    def slot(self, device: int, index: int) -> int:
        """The slot of a device's ``index``-th reading."""
        return index * self.devices + device

    def offset_us(self, slots: np.ndarray) -> np.ndarray:
        """Microseconds from the start to each slot (rounded; the one rounding used everywhere)."""
        return np.rint(slots * (1_000_000 / self.rate)).astype(np.int64)

    def time(self, slot: int) -> datetime:
        """The UTC time of one slot."""
        offset = int(self.offset_us(np.array([slot]))[0])
        return datetime.fromtimestamp((self.start_us + offset) / 1_000_000, UTC)

    def times(self, offsets_us: list[int]) -> list[datetime]:
        """UTC times for microsecond offsets from the start."""
        start = self.start_us
        return [datetime.fromtimestamp((start + o) / 1_000_000, UTC) for o in offsets_us]
