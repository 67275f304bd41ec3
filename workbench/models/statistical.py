"""Per-device statistics: the columnar batch and bounded device state every detector builds on,
and the robust z-score (median/MAD) and EWMA detectors.

A batch of readings is split by device type into numpy columns once. Each detector keeps its
per-device state in :class:`DeviceTable` rows (capped; least recently seen devices are evicted),
and scores then learns a batch in *rounds*: round k holds every device's k-th reading of the batch,
so within a round devices are distinct and everything is vectorised, yet each reading is scored
against exactly the state its predecessors left — as if the readings came one by one.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from workbench.models.base import Finding, ParamsMixin, check_range
from workbench.schema import METRICS, Reading

BASE_SCORE = 0.1
"""The score a detector gives a reading exactly at its own trigger level (the default threshold)."""
SIGNALS: dict[str, tuple[str, ...]] = {
    t: tuple(m for m in metrics if m not in ("energy", "battery")) for t, metrics in METRICS.items()
}
"""Metrics scored per device type: the energy register only grows and battery charge only drains,
so neither has a level to deviate from (energy is checked by the energy-surge detector)."""
SCALE_FLOOR: dict[str, float] = {
    "temperature": 0.03,
    "humidity": 0.15,
    "power": 2.0,
    "co2": 2.0,
    "pm25": 0.15,
}
"""Smallest spread assumed per metric (a little above reporting resolution), so a quiet sensor
whose window happens to be nearly constant does not turn rounding into huge z-scores."""
RELATIVE_FLOOR = 0.005
"""…and at least this fraction of the level (power ranges over watts to kilowatts)."""
MAD_TO_SIGMA = 1.4826
YOUNG = 5.0
"""A spread estimated from n values is widened by (1 + YOUNG/n): few values, less certainty."""
MAX_DEVICES = 100_000
DEVICE_LIMIT = 10_000_000


def calibrate(ratio: np.ndarray) -> np.ndarray:
    """Map 'how many times the trigger level' (≥ 0) to a score in [0, 1): 1 → BASE_SCORE."""
    return 1.0 - (1.0 - BASE_SCORE) ** np.maximum(ratio, 0.0)


@dataclass(slots=True)
class Columns:
    """The readings of one device type in a batch, as arrays (one row per reading)."""

    device_type: str
    readings: list[Reading]
    ids: list[str]
    ts: np.ndarray
    """Epoch seconds."""
    seq: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    values: np.ndarray
    """(readings, metrics) in ``METRICS[device_type]`` order."""

    def __len__(self) -> int:
        return len(self.readings)

    def metric_columns(self, names: Sequence[str]) -> list[int]:
        """Column indices of ``names`` in :attr:`values`."""
        order = METRICS[self.device_type]
        return [order.index(n) for n in names]


_COMMON = operator.attrgetter("seq", "lat", "lon")
_GETTERS = {t: operator.attrgetter(*m) for t, m in METRICS.items()}


def columnar(readings: Sequence[Reading]) -> dict[str, Columns]:
    """Split a batch by device type into numpy columns (done once, shared by all detectors)."""
    groups: dict[str, list[Reading]] = {}
    for r in readings:
        tag = r.__struct_config__.tag
        group = groups.get(tag)
        if group is None:
            groups[tag] = group = []
        group.append(r)
    out = {}
    for tag, rs in groups.items():
        common = np.array([_COMMON(r) for r in rs], dtype=np.float64).reshape(-1, 3)
        getter = _GETTERS[tag]
        values = np.array([getter(r) for r in rs], dtype=np.float64).reshape(len(rs), -1)
        out[tag] = Columns(
            device_type=tag,
            readings=rs,
            ids=[r.device_id for r in rs],
            ts=np.array([r.ts.timestamp() for r in rs]),
            seq=common[:, 0].astype(np.int64),
            lat=common[:, 1],
            lon=common[:, 2],
            values=values,
        )
    return out


def rounds(rows: np.ndarray) -> Iterator[np.ndarray]:
    """Positions of each device's 1st, 2nd, … reading in the batch (devices distinct per round)."""
    n = len(rows)
    if n == 0:
        return
    order = np.argsort(rows, kind="stable")
    ordered = rows[order]
    first = np.ones(n, dtype=bool)
    first[1:] = ordered[1:] != ordered[:-1]
    starts = np.maximum.accumulate(np.where(first, np.arange(n), 0))
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n) - starts
    top = int(rank.max())
    if top == 0:
        yield np.arange(n)
        return
    by_rank = np.argsort(rank, kind="stable")
    bounds = np.searchsorted(rank[by_rank], np.arange(top + 2))
    for k in range(top + 1):
        yield by_rank[bounds[k] : bounds[k + 1]]


Field = tuple[tuple[int, ...], float, Any]
"""A per-device state array: (shape per device, initial value, dtype)."""


class DeviceTable:
    """Per-device numpy state for at most ``capacity`` devices; the least recently seen go first.

    Arrays grow by doubling up to the cap, so memory follows the fleet actually seen and never
    exceeds ``capacity`` rows whatever the run length.
    """

    def __init__(self, capacity: int, fields: dict[str, Field]) -> None:
        self.capacity = capacity
        self.fields = fields
        self.row_of: dict[str, int] = {}
        self.ids: list[str | None] = []
        self.arrays = {
            name: np.full((0, *shape), fill, dtype=dtype)
            for name, (shape, fill, dtype) in fields.items()
        }
        self._seen = np.zeros(0, dtype=np.int64)
        self._clock = 0

    def __getitem__(self, name: str) -> np.ndarray:
        return self.arrays[name]

    def __len__(self) -> int:
        return len(self.row_of)

    @property
    def nbytes(self) -> int:
        """Bytes held by the state arrays."""
        return sum(a.nbytes for a in self.arrays.values()) + self._seen.nbytes

    def rows(self, ids: Sequence[str]) -> np.ndarray:
        """Row of each device id, new devices getting fresh (reset) rows."""
        self._clock += 1
        get = self.row_of.get
        rows = np.fromiter((get(i, -1) for i in ids), dtype=np.int64, count=len(ids))
        missing = rows < 0
        self._seen[rows[~missing]] = self._clock  # so that making room never evicts them
        if missing.any():
            new_ids = list(
                dict.fromkeys(i for i, m in zip(ids, missing.tolist(), strict=True) if m)
            )
            fresh = self._allocate(len(new_ids))
            for device_id, row in zip(new_ids, fresh.tolist(), strict=True):
                old = self.ids[row]
                if old is not None:
                    self.row_of.pop(old, None)
                self.ids[row] = device_id
                self.row_of[device_id] = row
            self._reset(fresh)
            given = dict(zip(new_ids, fresh.tolist(), strict=True))
            rows[missing] = [given[i] for i, m in zip(ids, missing, strict=True) if m]
        self._seen[rows] = self._clock
        return rows

    def _allocate(self, k: int) -> np.ndarray:
        """``k`` rows for new devices: unused ones first, then the least recently seen."""
        size = len(self.ids)
        free = max(0, min(k, self.capacity - size))
        if free:
            self._grow(size + free)
        taken = np.arange(size, size + free)
        need = k - free
        if need > 0:  # more new devices in one batch than the cap: overflow shares rows
            oldest = np.argpartition(self._seen[:size], min(need, size) - 1)[:need]
            taken = np.concatenate([taken, np.resize(oldest, need)])
        return taken

    def _grow(self, size: int) -> None:
        allocated = len(self._seen)
        if size > allocated:
            new = min(self.capacity, max(size, 2 * allocated, 64))
            for name, (shape, fill, dtype) in self.fields.items():
                grown = np.full((new, *shape), fill, dtype=dtype)
                grown[:allocated] = self.arrays[name]
                self.arrays[name] = grown
            seen = np.zeros(new, dtype=np.int64)
            seen[:allocated] = self._seen
            self._seen = seen
        self.ids.extend([None] * (size - len(self.ids)))

    def _reset(self, rows: np.ndarray) -> None:
        for name, (_shape, fill, _dtype) in self.fields.items():
            self.arrays[name][rows] = fill


@dataclass(slots=True)
class Scores:
    """One round's verdicts, one entry per reading: what a detector hands back to be reported."""

    score: np.ndarray
    metric: np.ndarray
    """Index into the detector's metric names for the reading's device type (-1: none)."""
    observed: np.ndarray
    low: np.ndarray
    high: np.ndarray
    kind: np.ndarray | str


class Detector(ParamsMixin):
    """Base of all detectors: per-type state tables, rounds, findings above the threshold."""

    kind: ClassVar[str] = "outlier"
    name: ClassVar[str] = "detector"
    threshold: float
    max_devices: int

    def __init__(self, threshold: float = BASE_SCORE, max_devices: int = MAX_DEVICES) -> None:
        self.threshold = threshold
        self.max_devices = max_devices

    def _check_params(self) -> None:
        check_range("threshold", self.threshold, 0.0, 1.0)
        check_range("max_devices", self.max_devices, 1, DEVICE_LIMIT, integer=True)

    def _params_changed(self, names: set[str]) -> None:
        if names & self._structural():
            self.reset()

    def _structural(self) -> set[str]:
        """Parameters whose change invalidates the kept state (window shapes, the cap)."""
        return {"max_devices"}

    def reset(self) -> None:
        """Forget every device."""
        self._tables: dict[str, DeviceTable] = {}

    def _table(self, device_type: str) -> DeviceTable:
        tables = getattr(self, "_tables", None)
        if tables is None:
            self.reset()
            tables = self._tables
        table = tables.get(device_type)
        if table is None:
            tables[device_type] = table = DeviceTable(self.max_devices, self._fields(device_type))
        return table

    @property
    def state_bytes(self) -> int:
        """Bytes of per-device state held now (bounded by ``max_devices``)."""
        return sum(t.nbytes for t in getattr(self, "_tables", {}).values())

    @property
    def devices_tracked(self) -> int:
        """Devices with state now, over all device types."""
        return sum(len(t) for t in getattr(self, "_tables", {}).values())

    # -- what each detector defines -------------------------------------------------------------
    def _fields(self, device_type: str) -> dict[str, Field]:
        raise NotImplementedError

    def _metric_names(self, device_type: str) -> Sequence[str | None]:
        return SIGNALS[device_type]

    def _round(
        self, table: DeviceTable, rows: np.ndarray, cols: Columns, sel: np.ndarray, learn: bool
    ) -> Scores:
        """Score readings ``sel`` of ``cols`` (distinct devices at ``rows``), then learn them."""
        raise NotImplementedError

    # -- the public API ----------------------------------------------------------------------
    def process_batch(self, readings: Sequence[Reading]) -> list[Finding]:
        """Score then learn a batch; findings for readings scoring at least ``threshold``."""
        return self.detect(columnar(readings))

    def score_one(self, reading: Reading) -> float:
        """River-style: this reading's score without learning it."""
        return max((f.score for f in self.detect(columnar([reading]), 0.0, learn=False)), default=0)

    def learn_one(self, reading: Reading) -> None:
        """River-style: update the device's state with this reading, without scoring."""
        self.detect(columnar([reading]), math.inf)

    def detect(
        self, batches: dict[str, Columns], threshold: float | None = None, learn: bool = True
    ) -> list[Finding]:
        """Findings for columnar batches (shared by the ensemble), at ``threshold`` or our own."""
        self._check_params()
        limit = self.threshold if threshold is None else threshold
        out: list[Finding] = []
        for device_type, cols in batches.items():
            table = self._table(device_type)
            rows = table.rows(cols.ids)
            names = self._metric_names(device_type)
            for sel in rounds(rows):
                s = self._round(table, rows[sel], cols, sel, learn)
                hits = np.flatnonzero(s.score >= limit)
                if hits.size:
                    out.extend(self._findings(cols, sel, s, hits, names))
        return out

    def _findings(
        self,
        cols: Columns,
        sel: np.ndarray,
        s: Scores,
        hits: np.ndarray,
        names: Sequence[str | None],
    ) -> Iterator[Finding]:
        kinds = [s.kind] * len(hits) if isinstance(s.kind, str) else s.kind[hits].tolist()
        for h, kind in zip(hits.tolist(), kinds, strict=True):
            reading = cols.readings[sel[h]]
            metric = int(s.metric[h])
            yield Finding(
                device_id=reading.device_id,
                device_type=cols.device_type,
                kind=kind,
                metric=names[metric] if metric >= 0 else None,
                score=float(s.score[h]),
                ts=reading.ts,
                seq=reading.seq,
                observed=_number(s.observed[h]),
                expected_low=_number(s.low[h]),
                expected_high=_number(s.high[h]),
                detector=self.name,
            )


def _number(x: float) -> float | None:
    return None if math.isnan(x) else float(x)


def pick(values: np.ndarray, best: np.ndarray) -> np.ndarray:
    """Row-wise ``values[i, best[i]]``."""
    return values[np.arange(len(best)), best]


def scale_floor(device_type: str) -> np.ndarray:
    """The minimal spread of each scored metric of a device type."""
    return np.array([SCALE_FLOOR[m] for m in SIGNALS[device_type]])


class RobustZDetector(Detector):
    """Per-device, per-metric robust z-score against the median/MAD of the last readings.

    The window learns winsorised values (clipped to ±``clip`` spreads), so an anomaly does not drag
    the median or inflate the spread while it lasts; median and MAD are recomputed every
    ``refresh`` readings of a device (the costly part), more often while the window fills.
    """

    kind = "spike"
    name = "robust_z"

    def __init__(
        self,
        window_size: int = 100,
        z_threshold: float = 6.0,
        threshold: float = BASE_SCORE,
        min_history: int = 20,
        refresh: int = 10,
        clip: float = 3.0,
        max_devices: int = MAX_DEVICES,
    ) -> None:
        self.window_size = window_size
        self.z_threshold = z_threshold
        self.threshold = threshold
        self.min_history = min_history
        self.refresh = refresh
        self.clip = clip
        self.max_devices = max_devices

    def _check_params(self) -> None:
        super()._check_params()
        check_range("window_size", self.window_size, 10, 10_000, integer=True)
        check_range("z_threshold", self.z_threshold, 1.0, 100.0)
        check_range("min_history", self.min_history, 3, self.window_size, integer=True)
        check_range("refresh", self.refresh, 1, self.window_size, integer=True)
        check_range("clip", self.clip, 1.0, 100.0)

    def _structural(self) -> set[str]:
        return {"max_devices", "window_size"}

    def _fields(self, device_type: str) -> dict[str, Field]:
        m = len(SIGNALS[device_type])
        return robust_fields(m, self.window_size)

    def _round(
        self, table: DeviceTable, rows: np.ndarray, cols: Columns, sel: np.ndarray, learn: bool
    ) -> Scores:
        x = cols.values[np.ix_(sel, cols.metric_columns(SIGNALS[cols.device_type]))]
        med, scale, ready = robust_reference(table, rows, x, self, cols.device_type)
        z = np.abs(x - med) / scale
        best = np.argmax(z, axis=1)
        zb = pick(z, best)
        score = np.where(ready, calibrate(zb / self.z_threshold), 0.0)
        if learn:
            robust_learn(table, rows, x, med, scale, ready, self.clip)
        reach = self.z_threshold * pick(scale, best)
        centre = pick(med, best)
        return Scores(score, best, pick(x, best), centre - reach, centre + reach, self.kind)


def robust_fields(metrics: int, window: int) -> dict[str, Field]:
    """State of a robust baseline: a ring of recent values, its count, cached median and spread."""
    return {
        "ring": ((metrics, window), np.nan, np.float32),
        "filled": ((metrics,), 0, np.int64),
        "n": ((), 0, np.int64),
        "since": ((), 0, np.int64),
        "med": ((metrics,), np.nan, np.float64),
        "scale": ((metrics,), np.nan, np.float64),
    }


def robust_reference(
    table: DeviceTable, rows: np.ndarray, x: np.ndarray, p: Any, device_type: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(median, spread, ready) per device row, refreshing stale cached ones first."""
    n, since = table["n"][rows], table["since"][rows]
    due = (n > 0) & (since >= np.minimum(p.refresh, np.maximum(1, n // 4)))
    if due.any():
        refresh_rows = rows[due]
        ring = table["ring"][refresh_rows]
        full = table["filled"][refresh_rows].min(axis=1) >= p.window_size
        med = np.empty(ring.shape[:2])
        mad = np.empty(ring.shape[:2])
        if full.any():
            med[full] = np.median(ring[full], axis=2)
            mad[full] = np.median(np.abs(ring[full] - med[full][..., None]), axis=2)
        if (~full).any():
            med[~full] = np.nanmedian(ring[~full], axis=2)
            mad[~full] = np.nanmedian(np.abs(ring[~full] - med[~full][..., None]), axis=2)
        floor = np.maximum(scale_floor(device_type), RELATIVE_FLOOR * np.abs(med))
        table["med"][refresh_rows] = med
        table["scale"][refresh_rows] = np.maximum(MAD_TO_SIGMA * mad, floor)
        table["since"][refresh_rows] = 0
    ready = n >= p.min_history
    med = table["med"][rows]
    scale = table["scale"][rows] * (1.0 + YOUNG / np.maximum(n, 1))[:, None]
    cold = np.isnan(med)
    if cold.any():  # a device's first reading: nothing to compare with yet
        med = np.where(cold, x, med)
        scale = np.where(cold, 1.0, scale)
    return med, scale, ready


def robust_learn(
    table: DeviceTable,
    rows: np.ndarray,
    x: np.ndarray,
    med: np.ndarray,
    scale: np.ndarray,
    ready: np.ndarray,
    clip: float,
) -> None:
    """Put winsorised values in the devices' rings (raw ones while the window is still young).

    A value equal to the metric's previous one is not stored: repeats carry no information about
    spread, and a stuck sensor would otherwise shrink the spread to nothing.
    """
    ring = table["ring"]
    window = ring.shape[2]
    kept = np.where(ready[:, None], np.clip(x, med - clip * scale, med + clip * scale), x)
    kept = kept.astype(ring.dtype)
    filled = table["filled"][rows]
    metric = np.arange(x.shape[1])
    previous = ring[rows[:, None], metric, (filled - 1) % window]
    r, m = np.nonzero(kept != previous)
    ring[rows[r], m, filled[r, m] % window] = kept[r, m]
    table["filled"][rows[r], m] += 1
    table["n"][rows] += 1
    table["since"][rows] += 1


class EwmaState:
    """Per-device exponentially weighted mean and variance of each metric (cheap, O(1) a reading).

    Learns winsorised values like the robust baseline; used by :class:`EwmaDetector` and as the
    per-device normaliser that turns readings into features for the fleet-level models.
    """

    @staticmethod
    def fields(metrics: int) -> dict[str, Field]:
        return {
            "mean": ((metrics,), np.nan, np.float64),
            "var": ((metrics,), 0.0, np.float64),
            "n": ((), 0, np.int64),
        }

    @staticmethod
    def residuals(
        table: DeviceTable, rows: np.ndarray, x: np.ndarray, device_type: str
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(mean, sd, z) of each reading against its device's state before it."""
        mean = table["mean"][rows]
        mean = np.where(np.isnan(mean), x, mean)
        floor = np.maximum(scale_floor(device_type), RELATIVE_FLOOR * np.abs(mean))
        sd = np.maximum(np.sqrt(table["var"][rows]), floor)
        return mean, sd, (x - mean) / sd

    @staticmethod
    def learn(
        table: DeviceTable,
        rows: np.ndarray,
        x: np.ndarray,
        mean: np.ndarray,
        sd: np.ndarray,
        span: int,
        clip: float,
        warm: int,
    ) -> None:
        """Update mean/variance; the first ``warm`` readings of a device are learned unclipped."""
        n = table["n"][rows]
        alpha = np.maximum(1.0 / (n + 1.0), 2.0 / (span + 1.0))[:, None]
        v = np.where((n >= warm)[:, None], np.clip(x, mean - clip * sd, mean + clip * sd), x)
        d = v - mean
        table["mean"][rows] = mean + alpha * d
        table["var"][rows] = (1.0 - alpha) * (table["var"][rows] + alpha * d * d)
        table["n"][rows] = n + 1


class EwmaDetector(Detector):
    """Per-device, per-metric z-score against an exponentially weighted mean and variance."""

    kind = "spike"
    name = "ewma"

    def __init__(
        self,
        window_size: int = 100,
        z_threshold: float = 8.0,
        threshold: float = BASE_SCORE,
        min_history: int = 20,
        clip: float = 3.0,
        max_devices: int = MAX_DEVICES,
    ) -> None:
        self.window_size = window_size
        self.z_threshold = z_threshold
        self.threshold = threshold
        self.min_history = min_history
        self.clip = clip
        self.max_devices = max_devices

    def _check_params(self) -> None:
        super()._check_params()
        check_range("window_size", self.window_size, 2, 100_000, integer=True)
        check_range("z_threshold", self.z_threshold, 1.0, 100.0)
        check_range("min_history", self.min_history, 1, 100_000, integer=True)
        check_range("clip", self.clip, 1.0, 100.0)

    def _fields(self, device_type: str) -> dict[str, Field]:
        return EwmaState.fields(len(SIGNALS[device_type]))

    def _round(
        self, table: DeviceTable, rows: np.ndarray, cols: Columns, sel: np.ndarray, learn: bool
    ) -> Scores:
        x = cols.values[np.ix_(sel, cols.metric_columns(SIGNALS[cols.device_type]))]
        mean, sd, z = EwmaState.residuals(table, rows, x, cols.device_type)
        z = np.abs(z)
        best = np.argmax(z, axis=1)
        ready = table["n"][rows] >= self.min_history
        score = np.where(ready, calibrate(pick(z, best) / self.z_threshold), 0.0)
        if learn:
            EwmaState.learn(table, rows, x, mean, sd, self.window_size, self.clip, self.min_history)
        reach, centre = self.z_threshold * pick(sd, best), pick(mean, best)
        return Scores(score, best, pick(x, best), centre - reach, centre + reach, self.kind)
