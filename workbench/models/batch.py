"""A batch of readings as numpy columns per device type, and its rounds of distinct devices.

A batch is split by device type into columns once and shared by every detector. Detectors score
then learn it in *rounds*: round k holds every device's k-th reading of the batch, so within a
round devices are distinct and everything is vectorised, yet each reading is scored against exactly
the state its predecessors left — as if the readings came one by one.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

import numpy as np

from workbench.profiles.active import active
from workbench.schema import METRICS, Reading

if TYPE_CHECKING:
    from workbench.models.state import DeviceIndex

SIGNALS: dict[str, tuple[str, ...]] = {t.name: t.of_kind("gauge") for t in active().profiles.types}
"""Metrics scored as levels per device type: the gauges. A counter only moves one way, so it has
no level to deviate from (the counter detector watches its rate), and a binary state has two."""
COUNTERS: dict[str, tuple[str, ...]] = {
    t.name: t.of_kind("counter") for t in active().profiles.types
}
"""Counter metrics per device type."""


@dataclass(slots=True)
class Columns:
    """The readings of one device type in a batch, as arrays (one row per reading)."""

    device_type: str
    readings: list[Reading]
    ids: list[str]
    ts: np.ndarray
    """Epoch seconds."""
    seq: np.ndarray
    """-1 where the reading has none (the profile maps no sequence number)."""
    lat: np.ndarray
    """NaN where the reading has no location (lat and lon alike)."""
    lon: np.ndarray
    values: np.ndarray
    """(readings, metrics) in ``METRICS[device_type]`` order."""
    signals: np.ndarray
    """The :data:`SIGNALS` columns of :attr:`values`."""
    _located: tuple[DeviceIndex, np.ndarray, list[np.ndarray]] | None = field(default=None)
    derived: dict[object, object] = field(default_factory=dict)
    """What one detector worked out from this batch for another to reuse (the fleet models'
    residual features)."""

    def __len__(self) -> int:
        return len(self.readings)

    def metric_columns(self, names: Sequence[str]) -> list[int]:
        """Column indices of ``names`` in :attr:`values`."""
        order = METRICS[self.device_type]
        return [order.index(n) for n in names]

    def locate(self, index: DeviceIndex) -> tuple[np.ndarray, list[np.ndarray]]:
        """(state row of each reading, rounds) in ``index``; computed once per batch and index."""
        located = self._located
        if located is None or located[0] is not index:
            rows = index.rows(self.ids)
            located = self._located = (index, rows, rounds(rows))
        return located[1], located[2]


_COMMON = ("seq", "lat", "lon")
_GETTERS = {t: operator.attrgetter(*_COMMON, *m) for t, m in METRICS.items()}
"""One call per reading takes its common fields and metrics together."""
_SIGNAL_COLUMNS = {t: [m.index(s) for s in SIGNALS[t]] for t, m in METRICS.items()}
_TS = operator.attrgetter("ts")
_ID = operator.attrgetter("device_id")


def columnar(readings: Sequence[Reading]) -> dict[str, Columns]:
    """Split a batch by device type into numpy columns (done once, shared by all detectors)."""
    groups: dict[str, list[Reading]] = {}
    for r in readings:
        tag = r.device_type
        group = groups.get(tag)
        if group is None:
            groups[tag] = group = []
        group.append(r)
    out = {}
    for tag, rs in groups.items():
        n = len(rs)
        table = np.array(list(map(_GETTERS[tag], rs)), dtype=np.float64)  # None: NaN
        table = table.reshape(n, -1)
        values = table[:, len(_COMMON) :]
        out[tag] = Columns(
            device_type=tag,
            readings=rs,
            ids=list(map(_ID, rs)),
            ts=np.fromiter(map(datetime.timestamp, map(_TS, rs)), np.float64, n),
            seq=np.nan_to_num(table[:, 0], nan=-1.0).astype(np.int64),
            lat=table[:, 1],
            lon=table[:, 2],
            values=values,
            signals=values[:, _SIGNAL_COLUMNS[tag]],
        )
    return out


def rounds(rows: np.ndarray) -> list[np.ndarray]:
    """Positions of each device's 1st, 2nd, … reading in the batch (devices distinct per round)."""
    n = len(rows)
    if n == 0:
        return []
    order = np.argsort(rows, kind="stable")
    ordered = rows[order]
    first = np.ones(n, dtype=bool)
    first[1:] = ordered[1:] != ordered[:-1]
    starts = np.maximum.accumulate(np.where(first, np.arange(n), 0))
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n) - starts
    top = int(rank.max())
    if top == 0:
        return [np.arange(n)]
    by_rank = np.argsort(rank, kind="stable")
    bounds = np.searchsorted(rank[by_rank], np.arange(top + 2))
    return [by_rank[bounds[k] : bounds[k + 1]] for k in range(top + 1)]
