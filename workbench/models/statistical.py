"""Per-device statistics: the robust baseline (median/MAD of recent readings, with a fleet prior
for young devices), the EWMA state, and the robust z-score and EWMA detectors built on them."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from workbench.models.base import check_range
from workbench.models.batch import SIGNALS, Columns
from workbench.models.detector import (
    BASE_SCORE,
    MAX_DEVICES,
    Detector,
    Scores,
    calibrate,
    pick,
)
from workbench.models.state import DeviceTable, Field
from workbench.profiles.active import active

SCALE_FLOOR = 1.5
"""Smallest spread assumed, in resolutions of the metric (a little above reporting resolution),
so a quiet sensor whose window happens to be nearly constant does not turn rounding into huge
z-scores."""
RELATIVE_FLOOR = 0.005
"""…and at least this fraction of the level (power ranges over watts to kilowatts)."""
MAD_TO_SIGMA = 1.4826
YOUNG = 5.0
"""A spread estimated from n values is widened by (1 + YOUNG/n): few values, less certainty."""
PRIOR_HISTORY = 5
"""Readings a device needs before its spread counts towards its device type's prior."""
PRIOR_DEVICES = 10
"""Devices of a type needed (each with ``PRIOR_HISTORY`` readings) before the prior is used."""
PRIOR_QUANTILE = 0.75
"""The prior spread is this quantile of the fleet's spreads (most devices are no noisier)."""
PRIOR_READY = 3
"""Readings a young device needs (a median of three resists one odd value) to be scored."""


@functools.cache
def scale_floor(device_type: str) -> np.ndarray:
    """The minimal spread of each scored metric of a device type (read-only; the process's
    profiles do not change, so it is worked out once)."""
    kind = active().profiles.type(device_type)
    floor = np.array([SCALE_FLOOR * kind.metric(m).step for m in SIGNALS[device_type]])
    floor.setflags(write=False)
    return floor


class RobustZDetector(Detector):
    """Per-device, per-metric robust z-score against the median/MAD of the last readings.

    The window learns winsorised values (clipped to ±``clip`` spreads), so an anomaly does not drag
    the median or inflate the spread while it lasts; median and MAD are recomputed every
    ``refresh`` readings of a device (the costly part), more often while the window fills.
    With ``prior``, a device younger than ``min_history`` readings is already scored (from its
    third reading), its spread taken to be at least its device type's typical one.
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
        prior: bool = True,
        max_devices: int = MAX_DEVICES,
    ) -> None:
        self.window_size = window_size
        self.z_threshold = z_threshold
        self.threshold = threshold
        self.min_history = min_history
        self.refresh = refresh
        self.clip = clip
        self.prior = prior
        self.max_devices = max_devices

    def _check_params(self) -> None:
        super()._check_params()
        check_range("window_size", self.window_size, 10, 10_000, integer=True)
        check_range("z_threshold", self.z_threshold, 1.0, 100.0)
        check_range("min_history", self.min_history, 3, self.window_size, integer=True)
        check_range("refresh", self.refresh, 1, self.window_size, integer=True)
        check_range("clip", self.clip, 1.0, 100.0)
        if not isinstance(self.prior, bool):
            raise ValueError(f"prior={self.prior!r}: it must be True or False")

    def _structural(self) -> set[str]:
        return {"max_devices", "window_size"}

    def _fields(self, device_type: str) -> dict[str, Field]:
        m = len(SIGNALS[device_type])
        return robust_fields(m, self.window_size)

    def _round(
        self, table: DeviceTable, rows: np.ndarray, cols: Columns, sel: np.ndarray, learn: bool
    ) -> Scores:
        x = cols.signals[sel]
        med, scale, scored, ready = robust_reference(
            table, rows, x, self, cols.device_type, self.prior
        )
        z = np.abs(x - med) / scale
        best = np.argmax(z, axis=1)
        zb = pick(z, best)
        score = np.where(scored, calibrate(zb / self.z_threshold), 0.0)
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


def middle(values: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Median of the first ``count`` values along the last axis once sorted (NaN sort last)."""
    s = np.sort(values, axis=-1)
    low = np.take_along_axis(s, ((count - 1) // 2)[..., None], axis=-1)[..., 0]
    high = np.take_along_axis(s, (count // 2)[..., None], axis=-1)[..., 0]
    return (low.astype(np.float64) + high) / 2.0


def fleet_prior(table: DeviceTable) -> tuple[np.ndarray, np.ndarray] | None:
    """Per metric: (relative?, spread) typical of the device type, None while too few devices.

    A spread is either absolute or relative to the level, whichever varies less across the
    fleet (noise in watts grows with a device's power; a thermometer's does not with the
    temperature); the spread is the ``PRIOR_QUANTILE`` of the fleet's spreads in that form.
    """
    seasoned = table["n"] >= PRIOR_HISTORY
    if np.count_nonzero(seasoned) < PRIOR_DEVICES:
        return None
    scale = table["scale"][seasoned]
    forms = np.stack([scale, scale / np.maximum(np.abs(table["med"][seasoned]), 1e-9)])
    q25, q75 = np.quantile(forms, [0.25, PRIOR_QUANTILE], axis=1)
    dispersion = (q75 - q25) / np.maximum(q75 + q25, 1e-12)
    relative = dispersion[1] < dispersion[0]
    return relative, np.where(relative, q75[1], q75[0])


def robust_reference(
    table: DeviceTable, rows: np.ndarray, x: np.ndarray, p: Any, device_type: str, prior: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(median, spread, scored, ready) per device row, refreshing stale cached ones first.

    ``ready``: the device has ``min_history`` readings of its own. ``scored``: ready, or (with
    ``prior``) young but with a few readings, its spread then at least its fleet's prior spread.
    """
    n, since = table["n"][rows], table["since"][rows]
    due = (n > 0) & (since >= np.minimum(p.refresh, np.maximum(1, n // 4)))
    if due.any():
        refresh_rows = rows[due]
        count = np.minimum(table["filled"][refresh_rows], p.window_size)
        # A ring fills from its first slot, so past the longest count there is only NaN.
        width = max(1, int(count.max()))
        ring = table["ring"][refresh_rows, :, :width]
        med = middle(ring, count)
        mad = middle(np.abs(ring - med[..., None].astype(ring.dtype)), count)
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
    scored = ready
    young = ~ready & (n >= PRIOR_READY)
    if prior and young.any():
        fleet = fleet_prior(table)
        if fleet is not None:
            relative, spread = fleet
            typical = np.where(relative, spread * np.abs(med), spread)
            scale = np.where(young[:, None], np.maximum(scale, typical), scale)
            scored = ready | young
    return med, scale, scored, ready


def robust_learn(
    table: DeviceTable,
    rows: np.ndarray,
    x: np.ndarray,
    med: np.ndarray,
    scale: np.ndarray,
    ready: np.ndarray,
    clip: float,
    keep: np.ndarray | None = None,
) -> None:
    """Put winsorised values in the devices' rings (raw ones while the window is still young).

    A value equal to the metric's previous one is not stored: repeats carry no information about
    spread, and a stuck sensor would otherwise shrink the spread to nothing. Nor is one where
    ``keep`` (devices × metrics) is False: a value the detector is reporting as anomalous.
    """
    ring = table["ring"]
    window = ring.shape[2]
    kept = np.where(ready[:, None], np.clip(x, med - clip * scale, med + clip * scale), x)
    kept = kept.astype(ring.dtype)
    filled = table["filled"][rows]
    metric = np.arange(x.shape[1])
    previous = ring[rows[:, None], metric, (filled - 1) % window]
    learnt = kept != previous
    if keep is not None:
        learnt &= keep
    r, m = np.nonzero(learnt)
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
        x = cols.signals[sel]
        mean, sd, z = EwmaState.residuals(table, rows, x, cols.device_type)
        z = np.abs(z)
        best = np.argmax(z, axis=1)
        ready = table["n"][rows] >= self.min_history
        score = np.where(ready, calibrate(pick(z, best) / self.z_threshold), 0.0)
        if learn:
            EwmaState.learn(table, rows, x, mean, sd, self.window_size, self.clip, self.min_history)
        reach, centre = self.z_threshold * pick(sd, best), pick(mean, best)
        return Scores(score, best, pick(x, best), centre - reach, centre + reach, self.kind)
