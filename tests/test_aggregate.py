"""Rolling aggregates: per-type statistics over a data-time window, energy from registers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from workbench import schema
from workbench.streams.aggregate import RollingAggregates

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def meter(device: int, seconds: float, power: float, energy: float) -> schema.SmartMeter:
    return schema.SmartMeter(
        device_id=f"m-{device}",
        ts=T0 + timedelta(seconds=seconds),
        seq=int(seconds),
        lat=0.0,
        lon=0.0,
        firmware="1",
        power=power,
        energy=energy,
    )


def test_stats_energy_and_window() -> None:
    agg = RollingAggregates(window=timedelta(seconds=60))
    agg.update([meter(1, 0, 100, 10.0), meter(2, 0, 300, 50.0)])
    agg.update([meter(1, 30, 200, 10.5), meter(2, 30, 400, 50.25)])
    snap = agg.snapshot()["smart_meter"]
    assert snap["devices"] == 2 and snap["readings"] == 4
    assert snap["metrics"]["power"] == {"mean": 250.0, "min": 100.0, "max": 400.0}
    assert snap["energy_kwh"] == pytest.approx(0.75)
    agg.update([meter(1, 120, 1000, 11.0)])  # the first two buckets fall out of the window
    snap = agg.snapshot()["smart_meter"]
    assert snap["readings"] == 1 and snap["metrics"]["power"]["min"] == 1000.0
    assert snap["energy_kwh"] == pytest.approx(1.25)  # energy is since start, not windowed
    assert agg.latest["m-1"].power == 1000 and agg.latest["m-2"].power == 400


def test_memory_is_bounded_by_device_cap_and_window() -> None:
    agg = RollingAggregates(window=timedelta(seconds=10), max_devices=100)
    for step in range(200):
        agg.update([meter(d + step * 10, step, 100, 1.0 + step) for d in range(10)])
    assert len(agg._energy_first) == 100
    assert len(agg.latest) == 100
    assert len(agg._buckets["smart_meter"]) <= 12
