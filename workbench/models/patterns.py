"""Detectors for the failure patterns fleets show, each naming its kind.

stuck sensor, silence (dropout), level shift and drift, location jump, noise burst (counters:
``workbench.models.counter``).
All follow the :class:`~workbench.models.statistical.Detector` contract (rounds of distinct
devices, bounded per-device state, a score of 0.1 at each detector's own trigger level).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime

import numpy as np

from workbench.models.base import Finding, check_range
from workbench.models.batch import SIGNALS, Columns
from workbench.models.detector import (
    BASE_SCORE,
    MAX_DEVICES,
    Detector,
    Scores,
    calibrate,
    nan_as,
    pick,
)
from workbench.models.state import DeviceTable, Field
from workbench.models.statistical import robust_fields, robust_learn, robust_reference
from workbench.profiles.active import active

EARTH_RADIUS_KM = 6371.0


class StuckDetector(Detector):
    """A metric repeating the exact same value far longer than its own noise makes likely.

    Learns per device and metric how often a value repeats by chance (rounding makes quiet
    sensors repeat now and then) and flags a run once its chance probability falls below
    ``10 ** -surprise``.
    """

    kind = "stuck"
    name = "stuck"

    def __init__(
        self,
        surprise: float = 6.0,
        min_run: int = 3,
        threshold: float = BASE_SCORE,
        max_devices: int = MAX_DEVICES,
    ) -> None:
        self.surprise = surprise
        self.min_run = min_run
        self.threshold = threshold
        self.max_devices = max_devices

    def _check_params(self) -> None:
        super()._check_params()
        check_range("surprise", self.surprise, 1.0, 30.0)
        check_range("min_run", self.min_run, 2, 1000, integer=True)

    def _fields(self, device_type: str) -> dict[str, Field]:
        m = len(SIGNALS[device_type])
        return {
            "last": ((m,), np.nan, np.float64),
            "run": ((m,), 0, np.int64),
            "repeats": ((m,), 0.5, np.float64),
            "n": ((), 5.0, np.float64),
        }

    def _round(
        self, table: DeviceTable, rows: np.ndarray, cols: Columns, sel: np.ndarray, learn: bool
    ) -> Scores:
        x = cols.signals[sel]
        same = x == table["last"][rows]
        run = np.where(same, table["run"][rows] + 1, 1)
        n = table["n"][rows]
        p = np.clip(table["repeats"][rows] / n[:, None], 1e-3, 0.5)
        surprise = (run - 1) * -np.log10(p)
        surprise[run < self.min_run] = 0.0
        best = np.argmax(surprise, axis=1)
        score = calibrate(pick(surprise, best) / self.surprise)
        if learn:
            table["last"][rows] = x
            table["run"][rows] = run
            chance = run <= 2  # a long run is the fault itself, not evidence of chance repeats
            table["repeats"][rows] += np.where(chance, same, 0.0)
            table["n"][rows] = n + 1
        value = pick(x, best)
        unknown = np.full(len(sel), np.nan)
        return Scores(score, best, value, unknown, unknown, self.kind)


class DropoutDetector(Detector):
    """Silence: a gap in the device's sequence numbers or a time gap of several usual intervals.

    The usual interval is learned from the device's steady gaps (consecutive sequence numbers), so
    a silence never stretches it; a device whose readings carry no sequence number is judged by
    the profile's declared interval until gaps within 1.5 of it have taught it its own.
    Reported on the reading that ends the silence; :meth:`silent_devices` reports devices that
    are still silent now.
    """

    kind = "dropout"
    name = "dropout"

    def __init__(
        self,
        min_missing: float = 2.0,
        threshold: float = BASE_SCORE,
        max_devices: int = MAX_DEVICES,
    ) -> None:
        self.min_missing = min_missing
        self.threshold = threshold
        self.max_devices = max_devices

    def _check_params(self) -> None:
        super()._check_params()
        check_range("min_missing", self.min_missing, 1.0, 1e6)

    def _fields(self, device_type: str) -> dict[str, Field]:
        return {
            "seq": ((), -1, np.int64),
            "ts": ((), np.nan, np.float64),
            "interval": ((), np.nan, np.float64),
            "told": ((), np.nan, np.float64),
        }

    def _metric_names(self, device_type: str) -> Sequence[str | None]:
        return (None,)

    def _round(
        self, table: DeviceTable, rows: np.ndarray, cols: Columns, sel: np.ndarray, learn: bool
    ) -> Scores:
        seq, ts = cols.seq[sel], cols.ts[sel]
        last_seq, last_ts, interval = table["seq"][rows], table["ts"][rows], table["interval"][rows]
        unnumbered = seq < 0
        declared = active().profiles.type(cols.device_type).interval_s
        usual = np.where(np.isnan(interval) & unnumbered, declared, interval)
        known = last_seq >= 0
        by_seq = np.where(known & (seq > last_seq), seq - last_seq - 1, 0)
        gap = ts - last_ts
        with np.errstate(invalid="ignore", divide="ignore"):
            by_time = np.where(np.isnan(usual), 0.0, np.rint(gap / usual) - 1.0)
        missing = np.maximum(by_seq, nan_as(by_time))
        score = calibrate(missing / self.min_missing)
        if learn:
            in_step = (known & (seq == last_seq + 1)) | (unnumbered & (gap <= 1.5 * usual))
            steady = in_step & (gap > 0)
            table["interval"][rows] = np.where(
                steady, np.where(np.isnan(interval), gap, 0.9 * interval + 0.1 * gap), interval
            )
            table["seq"][rows] = seq
            table["ts"][rows] = ts
        zero = np.zeros(len(sel))
        metric = np.full(len(sel), -1)
        return Scores(score, metric, missing.astype(np.float64), zero, zero, self.kind)

    def silent_devices(self, now: datetime, once: bool = False) -> list[Finding]:
        """Devices silent by ``now`` for at least ``min_missing`` readings beyond one in flight.

        With ``once``, each silence is reported at the first call that sees it and not again
        until the device has spoken; otherwise every call reports every silent device.
        """
        self._check_params()
        at = now.timestamp()
        out = []
        for device_type, table in getattr(self, "_tables", {}).items():
            index = self.fleet.index(device_type)
            size = min(len(table.born), index.allocated)
            current = (table.born[:size] == index.born[:size]) & (table.born[:size] > 0)
            declared = active().profiles.type(device_type).interval_s
            interval = table["interval"][:size]
            interval = np.where(np.isnan(interval) & (table["seq"][:size] < 0), declared, interval)
            with np.errstate(invalid="ignore"):
                missing = np.floor((at - table["ts"][:size]) / interval) - 1.0
            silent = current & (missing >= self.min_missing)  # NaN: never heard of
            if once:
                silent &= table["told"][:size] != table["ts"][:size]
                table["told"][:size][silent] = table["ts"][:size][silent]
            for row in np.flatnonzero(silent).tolist():
                m = float(missing[row])
                out.append(
                    Finding(
                        device_id=str(index.ids[row]),
                        device_type=device_type,
                        kind=self.kind,
                        metric=None,
                        score=float(calibrate(np.array(m / self.min_missing))),
                        ts=now,
                        seq=int(table["seq"][row]),
                        observed=m,
                        expected_low=0.0,
                        expected_high=0.0,
                        detector=self.name,
                    )
                )
        return out


class ShiftDetector(Detector):
    """A sustained move away from the device's robust baseline: a level shift, or a drift.

    Level shift: the last ``short`` readings all sit more than ``z_threshold`` spreads to one side
    of the median of the window. Drift: over the last ``trend`` readings the values follow a line
    (residuals within a few spreads) whose rise exceeds ``z_threshold`` spreads.

    The baseline does not learn the readings of a shift it is reporting (River's anomaly
    filters protect their detector the same way), so a shift is reported for as long as it
    lasts instead of fading as the window fills with it, and the return to the old level is no
    second shift. After ``window_size`` such readings in a row the new level is accepted: the
    baseline learns again, so a permanent change stops being reported one window later.
    """

    kind = "level_shift"
    name = "shift"

    def __init__(
        self,
        window_size: int = 100,
        short: int = 4,
        trend: int = 8,
        z_threshold: float = 5.0,
        threshold: float = BASE_SCORE,
        min_history: int = 20,
        refresh: int = 10,
        clip: float = 3.0,
        max_devices: int = MAX_DEVICES,
    ) -> None:
        self.window_size = window_size
        self.short = short
        self.trend = trend
        self.z_threshold = z_threshold
        self.threshold = threshold
        self.min_history = min_history
        self.refresh = refresh
        self.clip = clip
        self.max_devices = max_devices

    def _check_params(self) -> None:
        super()._check_params()
        check_range("window_size", self.window_size, 10, 10_000, integer=True)
        check_range("short", self.short, 2, 50, integer=True)
        check_range("trend", self.trend, 3, 50, integer=True)
        check_range("z_threshold", self.z_threshold, 1.0, 100.0)
        check_range("min_history", self.min_history, 3, self.window_size, integer=True)
        check_range("refresh", self.refresh, 1, self.window_size, integer=True)
        check_range("clip", self.clip, 1.0, 100.0)

    def _structural(self) -> set[str]:
        return {"max_devices", "window_size", "short", "trend"}

    def _fields(self, device_type: str) -> dict[str, Field]:
        m = len(SIGNALS[device_type])
        keep = max(self.short, self.trend)
        return robust_fields(m, self.window_size) | {
            "recent": ((m, keep), np.nan, np.float64),
            "held": ((m,), 0, np.int64),
        }

    def _round(
        self, table: DeviceTable, rows: np.ndarray, cols: Columns, sel: np.ndarray, learn: bool
    ) -> Scores:
        x = cols.signals[sel]
        med, scale, _, ready = robust_reference(table, rows, x, self, cols.device_type, False)
        recent = np.concatenate([table["recent"][rows][..., 1:], x[..., None]], axis=2)
        z = (recent - med[..., None]) / scale[..., None]  # (devices, metrics, keep), oldest first
        last = z[..., -self.short :]
        side = np.sign(last[..., -1:])
        shift = nan_as(np.min(last * side, axis=2))
        tail = z[..., -self.trend :]
        t = np.arange(self.trend) - (self.trend - 1) / 2.0
        slope = np.sum(tail * t, axis=2) / np.sum(t * t)
        fitted = tail.mean(axis=2)[..., None] + slope[..., None] * t
        wobble = np.sqrt(np.mean((tail - fitted) ** 2, axis=2))
        rise = np.abs(slope) * (self.trend - 1)
        away = np.minimum(rise, np.abs(z[..., -1]))
        linear = (wobble < 0.25 * rise) & (np.sign(slope) == side[..., 0])
        drifting = nan_as(np.where(linear, away, 0.0))
        stat = np.maximum(shift, drifting)
        best = np.argmax(stat, axis=1)
        score = np.where(ready, calibrate(pick(stat, best) / self.z_threshold), 0.0)
        kind = np.where(pick(drifting, best) >= pick(shift, best), "drift", "level_shift")
        if learn:
            reported = ready[:, None] & (stat >= self.z_threshold)
            held = np.where(reported, table["held"][rows] + 1, 0)
            accepted = held > self.window_size
            robust_learn(table, rows, x, med, scale, ready, self.clip, ~reported | accepted)
            table["held"][rows] = held
            table["recent"][rows] = recent[..., -table["recent"].shape[2] :]
        reach, centre = self.z_threshold * pick(scale, best), pick(med, best)
        return Scores(score, best, pick(x, best), centre - reach, centre + reach, kind)


class NoiseBurstDetector(Detector):
    """Short-window variability far above the device's long-run variability.

    Uses reading-to-reading changes over the last ``short`` readings: the third largest of them
    (so a spike's way up and down, or one step, do not count) must exceed ``factor`` times the
    long-run typical change, with big changes both up and down (a drift only goes one way).
    """

    kind = "noise_burst"
    name = "noise"

    def __init__(
        self,
        window_size: int = 100,
        short: int = 8,
        factor: float = 5.0,
        threshold: float = BASE_SCORE,
        min_history: int = 30,
        max_devices: int = MAX_DEVICES,
    ) -> None:
        self.window_size = window_size
        self.short = short
        self.factor = factor
        self.threshold = threshold
        self.min_history = min_history
        self.max_devices = max_devices

    def _check_params(self) -> None:
        super()._check_params()
        check_range("window_size", self.window_size, 2, 100_000, integer=True)
        check_range("short", self.short, 4, 100, integer=True)
        check_range("factor", self.factor, 1.0, 100.0)
        check_range("min_history", self.min_history, 3, 100_000, integer=True)

    def _structural(self) -> set[str]:
        return {"max_devices", "short"}

    def _fields(self, device_type: str) -> dict[str, Field]:
        m = len(SIGNALS[device_type])
        return {
            "last": ((m,), np.nan, np.float64),
            "steps": ((m, self.short), 0.0, np.float64),
            "typical": ((m,), np.nan, np.float64),
            "n": ((), 0, np.int64),
        }

    def _round(
        self, table: DeviceTable, rows: np.ndarray, cols: Columns, sel: np.ndarray, learn: bool
    ) -> Scores:
        x = cols.signals[sel]
        step = nan_as(x - table["last"][rows])
        typical = table["typical"][rows]
        floor = _steps(cols.device_type)
        unit = np.maximum(nan_as(typical, np.inf), floor)
        steps = np.concatenate([table["steps"][rows][..., 1:], step[..., None]], axis=2)
        units = steps / unit[..., None]
        third = -np.partition(-np.abs(units), 2, axis=2)[..., 2]
        big = self.factor
        both = (np.sum(units > big, axis=2) >= 1) & (np.sum(units < -big, axis=2) >= 1)
        both &= np.abs(units[..., -1]) > big  # still going on now, not echoing from the window
        stat = np.where(both, third, 0.0)
        best = np.argmax(stat, axis=1)
        n = table["n"][rows]
        score = np.where(n >= self.min_history, calibrate(pick(stat, best) / big), 0.0)
        if learn:
            alpha = np.maximum(1.0 / np.maximum(n, 1.0), 2.0 / (self.window_size + 1.0))[:, None]
            size = np.abs(step)
            capped = np.where(np.isnan(typical), size, np.minimum(size, 3.0 * unit))
            has_step = ~np.isnan(table["last"][rows]) & (step != 0.0)  # a repeat is no step
            new = np.where(np.isnan(typical), capped, typical + alpha * (capped - typical))
            table["typical"][rows] = np.where(has_step, new, typical)
            table["steps"][rows] = steps
            table["last"][rows] = x
            table["n"][rows] = n + 1
        reach = big * pick(unit, best)
        previous = pick(x - step, best)
        return Scores(score, best, pick(x, best), previous - reach, previous + reach, self.kind)


@functools.cache
def _steps(device_type: str) -> np.ndarray:
    """The smallest typical reading-to-reading change of each signal: its declared resolution
    (read-only, worked out once)."""
    kind = active().profiles.type(device_type)
    steps = np.array([kind.metric(m).step for m in SIGNALS[device_type]])
    steps.setflags(write=False)
    return steps


def haversine_km(
    lat1: np.ndarray, lon1: np.ndarray, lat2: np.ndarray, lon2: np.ndarray
) -> np.ndarray:
    """Great-circle distance in km between points given in degrees."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dp, dl = p2 - p1, np.radians(lon2 - lon1)
    a = np.sin(dp / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return 2.0 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


class LocationJumpDetector(Detector):
    """A reported position more than ``jump_km`` from the device's home (learned) position."""

    kind = "location_jump"
    name = "location"

    def __init__(
        self,
        jump_km: float = 25.0,
        threshold: float = BASE_SCORE,
        max_devices: int = MAX_DEVICES,
    ) -> None:
        self.jump_km = jump_km
        self.threshold = threshold
        self.max_devices = max_devices

    def _check_params(self) -> None:
        super()._check_params()
        check_range("jump_km", self.jump_km, 0.01, 20_000.0)

    def _fields(self, device_type: str) -> dict[str, Field]:
        return {"home": ((2,), np.nan, np.float64), "n": ((), 0, np.int64)}

    def detect(
        self, batches: dict[str, Columns], threshold: float | None = None, learn: bool = True
    ) -> list[Finding]:
        """Only device types whose readings carry a location (the profile maps lat and lon)."""
        located = {t: c for t, c in batches.items() if not np.isnan(c.lat).all()}
        return super().detect(located, threshold, learn)

    def _metric_names(self, device_type: str) -> Sequence[str | None]:
        return ("location",)

    def _round(
        self, table: DeviceTable, rows: np.ndarray, cols: Columns, sel: np.ndarray, learn: bool
    ) -> Scores:
        lat, lon = cols.lat[sel], cols.lon[sel]
        home = table["home"][rows]
        fresh = np.isnan(home[:, 0])
        home = np.where(fresh[:, None], np.stack([lat, lon], axis=1), home)
        km = haversine_km(home[:, 0], home[:, 1], lat, lon)
        score = calibrate(km / self.jump_km)
        if learn:
            n = table["n"][rows]
            alpha = np.maximum(1.0 / (n + 1.0), 0.01)[:, None]
            at_home = (km < self.jump_km)[:, None]
            moved = home + alpha * (np.stack([lat, lon], axis=1) - home)
            table["home"][rows] = np.where(at_home, moved, home)
            table["n"][rows] = n + 1
        zero = np.zeros(len(sel))
        return Scores(
            score, np.zeros(len(sel), dtype=np.int64), km, zero, zero + self.jump_km, self.kind
        )
