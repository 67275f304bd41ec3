"""The detector contract: parameters, calibrated scores, per-type state, rounds, findings.

Every detector scores on one scale: 0.1 (``BASE_SCORE``) at its own trigger level, rising towards 1
(:func:`calibrate`). It keeps per-device state in :class:`~workbench.models.state.DeviceTable`
rows of a :class:`~workbench.models.state.Fleet` (its own, or one shared with an ensemble) and
scores then learns each batch round by round.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from workbench.models.base import Finding, ParamsMixin, check_range
from workbench.models.batch import SIGNALS, Columns, columnar
from workbench.models.state import DeviceTable, Field, Fleet
from workbench.schema import Reading

BASE_SCORE = 0.1
"""The score a detector gives a reading exactly at its own trigger level (the default threshold)."""
MAX_DEVICES = 100_000
DEVICE_LIMIT = 10_000_000


def calibrate(ratio: np.ndarray) -> np.ndarray:
    """Map 'how many times the trigger level' (≥ 0) to a score in [0, 1): 1 → BASE_SCORE."""
    return 1.0 - (1.0 - BASE_SCORE) ** np.maximum(ratio, 0.0)


def nan_as(x: np.ndarray, value: float = 0.0) -> np.ndarray:
    """``x`` with ``value`` for NaN: ``np.nan_to_num`` without its work on infinities, which
    costs more than the rest of a line on a slow stream's small rounds."""
    return np.where(np.isnan(x), value, x)


def pick(values: np.ndarray, best: np.ndarray) -> np.ndarray:
    """Row-wise ``values[i, best[i]]``."""
    return values[np.arange(len(best)), best]


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
        """Forget every device (a shared fleet of the right capacity stays shared)."""
        self._tables: dict[str, DeviceTable] = {}
        fleet = getattr(self, "_fleet", None)
        if fleet is None or fleet.capacity != self.max_devices:
            self._fleet = Fleet(self.max_devices)

    @property
    def fleet(self) -> Fleet:
        """The device-to-row indexes this detector's state follows."""
        if not hasattr(self, "_tables"):
            self.reset()
        return self._fleet

    def share(self, fleet: Fleet) -> None:
        """Follow ``fleet`` (an ensemble's, of capacity ``max_devices``) instead of our own."""
        if not hasattr(self, "_tables"):
            self.reset()
        self._fleet = fleet

    def _table(self, device_type: str) -> DeviceTable:
        if not hasattr(self, "_tables"):
            self.reset()
        table = self._tables.get(device_type)
        if table is None:
            table = self._tables[device_type] = DeviceTable(self._fields(device_type))
        return table

    def _locate(self, cols: Columns) -> tuple[DeviceTable, np.ndarray, list[np.ndarray]]:
        """This batch's state table, row of each reading, and rounds."""
        index = self.fleet.index(cols.device_type)
        rows, order = cols.locate(index)
        table = self._table(cols.device_type)
        table.sync(index, rows)
        return table, rows, order

    @property
    def state_bytes(self) -> int:
        """Bytes of per-device state held now (bounded by ``max_devices``)."""
        return sum(t.nbytes for t in getattr(self, "_tables", {}).values())

    @property
    def devices_tracked(self) -> int:
        """Devices with state now, over all device types."""
        indexes = self.fleet.indexes
        return sum(len(indexes[t]) for t in self._tables if t in indexes)

    def export_rows(
        self, device_type: str, rows: np.ndarray, born: np.ndarray
    ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """This detector's state of the devices at ``rows`` (stamps ``born``), one array per
        field with a row per device, and which of them it holds state for."""
        table = getattr(self, "_tables", {}).get(device_type)
        if table is None or not len(table.born):
            return {}, np.zeros(len(rows), dtype=bool)
        inside = rows < len(table.born)
        held = inside & (table.born[np.where(inside, rows, 0)] == born)
        return {name: array[rows[held]] for name, array in table.arrays.items()}, held

    def import_rows(self, device_type: str, rows: np.ndarray, state: dict[str, np.ndarray]) -> bool:
        """Take ``state`` (arrays shaped as :meth:`export_rows` gives them) for the devices now
        at ``rows``; False, and they start cold here, when it was kept with other shapes
        (window, metrics)."""
        table = self._table(device_type)
        table.sync(self.fleet.index(device_type), rows)
        arrays = table.arrays
        if set(state) != set(arrays) or any(
            state[n].shape[1:] != a.shape[1:] or state[n].dtype != a.dtype
            for n, a in arrays.items()
        ):
            return False
        for name, array in arrays.items():
            array[rows] = state[name]
        return True

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
            names = self._metric_names(device_type)
            if not names:  # a type with none of this detector's kinds of metric
                continue
            table, rows, order = self._locate(cols)
            for sel in order:
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
