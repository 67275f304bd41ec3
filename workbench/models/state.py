"""Bounded per-device state: which row each device has (shared by detectors) and the rows' arrays.

A :class:`DeviceIndex` maps the device ids of one device type to rows, at most ``capacity`` of
them, evicting the least recently seen device. Every detector keeps its numpy state in a
:class:`DeviceTable` over those rows; an ensemble shares one :class:`Fleet` of indexes between its
components, so a batch's rows (and rounds) are looked up once, not once per detector. Each row
carries a birth stamp, so a table notices a row handed to a new device and resets it even if its
detector was switched off meanwhile.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

Field = tuple[tuple[int, ...], float, Any]
"""A per-device state array: (shape per device, initial value, dtype)."""


def _grown(array: np.ndarray, size: int, fill: float) -> np.ndarray:
    grown = np.full((size, *array.shape[1:]), fill, dtype=array.dtype)
    grown[: len(array)] = array
    return grown


class DeviceIndex:
    """Rows for at most ``capacity`` devices of one type; the least recently seen go first.

    Rows are allocated by doubling up to the cap, so memory follows the fleet actually seen.
    """

    _births: ClassVar[int] = 0
    """Birth stamps are unique across indexes, so a table never mistakes one index's row for
    another's."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.row_of: dict[str, int] = {}
        self.ids: list[str | None] = []
        self.born = np.zeros(0, dtype=np.int64)
        """Stamp of the device each row was last given to (0: never given)."""
        self._seen = np.zeros(0, dtype=np.int64)
        self._clock = 0

    def __len__(self) -> int:
        return len(self.row_of)

    @property
    def allocated(self) -> int:
        """Rows allocated (state tables hold this many)."""
        return len(self.born)

    def rows(self, ids: Sequence[str]) -> np.ndarray:
        """Row of each device id, new devices getting rows of their own (fresh birth stamps)."""
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
            self.born[fresh] = DeviceIndex._births + 1 + np.arange(len(fresh))
            DeviceIndex._births += len(fresh)
            given = dict(zip(new_ids, fresh.tolist(), strict=True))
            rows[missing] = [given[i] for i, m in zip(ids, missing, strict=True) if m]
        self._seen[rows] = self._clock
        return rows

    def forget(self, ids: Sequence[str]) -> None:
        """Let these devices go (their partition moved to another worker): their rows are
        reused first, and every table resets them before use."""
        for device_id in ids:
            row = self.row_of.pop(device_id, None)
            if row is not None:
                self.ids[row] = None
                self.born[row] = 0
                self._seen[row] = 0

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
            self._seen = _grown(self._seen, new, 0)
            self.born = _grown(self.born, new, 0)
        self.ids.extend([None] * (size - len(self.ids)))


class Fleet:
    """One :class:`DeviceIndex` per device type, all with the same capacity."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.indexes: dict[str, DeviceIndex] = {}

    def index(self, device_type: str) -> DeviceIndex:
        """The index of a device type (made on first use)."""
        index = self.indexes.get(device_type)
        if index is None:
            index = self.indexes[device_type] = DeviceIndex(self.capacity)
        return index


class DeviceTable:
    """A detector's per-device numpy state over the rows of one :class:`DeviceIndex`."""

    def __init__(self, fields: dict[str, Field]) -> None:
        self.fields = fields
        self.arrays = {
            name: np.full((0, *shape), fill, dtype=dtype)
            for name, (shape, fill, dtype) in fields.items()
        }
        self.born = np.zeros(0, dtype=np.int64)

    def __getitem__(self, name: str) -> np.ndarray:
        return self.arrays[name]

    @property
    def nbytes(self) -> int:
        """Bytes held by the state arrays."""
        return sum(a.nbytes for a in self.arrays.values()) + self.born.nbytes

    def sync(self, index: DeviceIndex, rows: np.ndarray) -> None:
        """Follow the index: grow with it, and reset ``rows`` now held by other devices."""
        size = index.allocated
        if len(self.born) < size:
            for name, (_shape, fill, _dtype) in self.fields.items():
                self.arrays[name] = _grown(self.arrays[name], size, fill)
            self.born = _grown(self.born, size, 0)
        stale = rows[self.born[rows] != index.born[rows]]
        if stale.size:
            for name, (_shape, fill, _dtype) in self.fields.items():
                self.arrays[name][stale] = fill
            self.born[stale] = index.born[stale]
