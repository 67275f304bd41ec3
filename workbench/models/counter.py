"""Counters: a register advancing far faster than its own usual rate (a surge), or moving the
wrong way (a reset, a rollover, a replaced meter).

A counter (an energy register in kWh, a water meter's m³, a battery's falling charge) has no level
to deviate from, so it is judged by its *rate*: what it advanced since the device's previous
reading, per hour. The usual rate is learned per device and metric (an exponential average that
a surge can only pull up slowly); a rate at least ``factor`` times it for ``min_readings``
readings in a row is a surge. Any move against the counter's direction by more than its
resolution is a reset. The resolution is the profile's, or else the register's least count as
seen (its smallest advance so far): a range of 0–10⁹ says nothing about a register's steps. The
usual rate is never taken below one resolution per declared interval, so a register that idled
is not in a "surge" the moment it moves.

>>> from datetime import UTC, datetime, timedelta
>>> from workbench.schema import SmartMeter
>>> t0, detector = datetime(2026, 1, 1, tzinfo=UTC), CounterDetector()
>>> def meter(i, kwh):
...     return SmartMeter(device_id="m1", ts=t0 + timedelta(minutes=i), seq=i, lat=0.0, lon=0.0,
...                       firmware="1", power=500.0, energy=kwh)
>>> steady = [meter(i, 100 + 0.01 * i) for i in range(30)]
>>> detector.process_batch(steady)
[]
>>> surge = [meter(30 + i, steady[-1].energy + 0.05 * (i + 1)) for i in range(3)]
>>> sorted({f.kind for f in detector.process_batch(surge)})
['counter_surge']
>>> [f.kind for f in detector.process_batch([meter(40, 3.0)])]
['counter_reset']
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

from workbench.models.base import check_range
from workbench.models.batch import COUNTERS, Columns
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
from workbench.profiles.active import active

RESET_RATIO = 4.0
"""A reset scores as a rate this many times past the surge factor: it is never ordinary."""


@functools.cache
def _sign_and_resolution(device_type: str) -> tuple[np.ndarray, np.ndarray]:
    """+1 for counters that rise and −1 for those that fall; their declared resolutions (NaN:
    not declared). Read-only, worked out once."""
    kind = active().profiles.type(device_type)
    metrics = [kind.metric(name) for name in COUNTERS[device_type]]
    sign = np.array([1.0 if m.direction == "rises" else -1.0 for m in metrics])
    resolution = np.array([m.resolution or np.nan for m in metrics])
    sign.setflags(write=False)
    resolution.setflags(write=False)
    return sign, resolution


class CounterDetector(Detector):
    """Counter surges and resets, per device and counter metric (see the module docstring)."""

    kind = "counter_surge"
    name = "counter"

    def __init__(
        self,
        window_size: int = 100,
        factor: float = 2.5,
        min_readings: int = 2,
        threshold: float = BASE_SCORE,
        min_history: int = 10,
        max_devices: int = MAX_DEVICES,
    ) -> None:
        self.window_size = window_size
        self.factor = factor
        self.min_readings = min_readings
        self.threshold = threshold
        self.min_history = min_history
        self.max_devices = max_devices

    def _check_params(self) -> None:
        super()._check_params()
        check_range("window_size", self.window_size, 2, 100_000, integer=True)
        check_range("factor", self.factor, 1.1, 1000.0)
        check_range("min_readings", self.min_readings, 1, 1000, integer=True)
        check_range("min_history", self.min_history, 1, 100_000, integer=True)

    def _metric_names(self, device_type: str) -> Sequence[str | None]:
        return COUNTERS[device_type]

    def _fields(self, device_type: str) -> dict[str, Field]:
        m = len(COUNTERS[device_type])
        return {
            "last": ((m,), np.nan, np.float64),
            "ts": ((), np.nan, np.float64),
            "rate": ((m,), np.nan, np.float64),
            "quantum": ((m,), np.nan, np.float64),
            "run": ((m,), 0, np.int64),
            "n": ((), 0, np.int64),
        }

    def _round(
        self, table: DeviceTable, rows: np.ndarray, cols: Columns, sel: np.ndarray, learn: bool
    ) -> Scores:
        sign, declared = _sign_and_resolution(cols.device_type)
        x = cols.values[sel][:, cols.metric_columns(COUNTERS[cols.device_type])]
        ts, last, n = cols.ts[sel], table["last"][rows], table["n"][rows]
        hours = np.maximum(ts - table["ts"][rows], 1e-3)[:, None] / 3600.0
        advance = sign * (x - last)  # NaN on a device's first reading
        rate = advance / hours
        quantum = table["quantum"][rows]
        step = np.where(np.isnan(declared), quantum, declared)  # NaN until a first advance
        floor = step / (active().profiles.type(cols.device_type).interval_s / 3600.0)
        usual = np.fmax(nan_as(table["rate"][rows], np.inf), floor)
        usual = np.where(np.isnan(step), np.inf, usual)  # no step known yet: nothing is a surge
        reset = advance < -nan_as(step)  # False while NaN: no reading before
        fast = rate >= self.factor * usual
        run = np.where(fast, table["run"][rows] + 1, 0)
        surging = (run >= self.min_readings) & (n >= self.min_history)[:, None]
        stat = np.where(surging, (rate / usual - 1.0) / (self.factor - 1.0), 0.0)
        stat = np.where(reset, RESET_RATIO, stat)
        best = np.argmax(stat, axis=1)
        score = calibrate(pick(stat, best))
        kind = np.where(pick(reset, best), "counter_reset", "counter_surge")
        if learn:
            ok = ~reset & ~np.isnan(rate)
            previous = table["rate"][rows]
            alpha = np.maximum(1.0 / (n + 1.0), 2.0 / (self.window_size + 1.0))[:, None]
            kept = np.where(n[:, None] >= self.min_history, np.minimum(rate, 1.5 * usual), rate)
            new = np.where(np.isnan(previous), kept, previous + alpha * (kept - previous))
            table["rate"][rows] = np.where(ok, new, previous)
            moved = advance > 0
            table["quantum"][rows] = np.where(moved, np.fmin(quantum, advance), quantum)
            table["run"][rows] = run
            table["last"][rows] = x
            table["ts"][rows] = ts
            table["n"][rows] = n + 1
        observed = np.where(pick(reset, best), pick(sign * (x - last), best), pick(rate, best))
        low = np.where(pick(reset, best), 0.0, 0.0)
        high = np.where(pick(reset, best), np.inf, self.factor * pick(usual, best))
        return Scores(score, best, observed, low, high, kind)
