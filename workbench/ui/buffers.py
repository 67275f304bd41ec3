"""Bounded buffers behind the live views: recent readings, and min/max downsampling for charts."""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterable
from datetime import datetime

import numpy as np

from workbench.schema import Reading


class RecentReadings:
    """The last ``size`` readings in arrival order (for previews, drill-downs and CSV export)."""

    def __init__(self, size: int = 300_000) -> None:
        if size < 1:
            raise ValueError(f"size={size}: a buffer holds at least 1 reading")
        self._readings: deque[Reading] = deque(maxlen=size)

    def extend(self, readings: Iterable[Reading]) -> None:
        self._readings.extend(readings)

    def __len__(self) -> int:
        return len(self._readings)

    def snapshot(self) -> list[Reading]:
        """A copy that later batches do not change."""
        return list(self._readings)

    def clear(self) -> None:
        self._readings.clear()


def minmax_downsample(
    x: np.ndarray, y: np.ndarray, max_points: int
) -> tuple[np.ndarray, np.ndarray]:
    """At most ``max_points`` points keeping each bucket's min and max, so spikes stay visible."""
    n = len(x)
    if n <= max_points:
        return x, y
    buckets = max(1, max_points // 2)
    edges = np.linspace(0, n, buckets + 1, dtype=int)
    keep = []
    for lo, hi in itertools.pairwise(edges):
        if hi <= lo:
            continue
        seg = y[lo:hi]
        a, b = lo + int(np.argmin(seg)), lo + int(np.argmax(seg))
        keep.extend(sorted({a, b}))
    idx = np.asarray(keep, dtype=int)
    return x[idx], y[idx]


def as_datetime64(times: Iterable[datetime]) -> np.ndarray:
    """Aware datetimes as UTC ``datetime64[ms]`` (what bqplot's DateScale plots)."""
    return np.array([t.replace(tzinfo=None) for t in times], dtype="datetime64[ms]")
