"""Rolling aggregates: per-type statistics over a data-time window, counters since first seen."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from workbench import schema
from workbench.profiles.compile import compile_profiles
from workbench.profiles.load import load_profiles
from workbench.streams.aggregate import RollingAggregates

T0 = datetime(2026, 1, 1, tzinfo=UTC)
PLANT = compile_profiles(load_profiles(Path(__file__).parent / "data" / "profiles" / "plant.toml"))


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


def test_stats_counters_and_window() -> None:
    agg = RollingAggregates(window=timedelta(seconds=60))
    agg.update([meter(1, 0, 100, 10.0), meter(2, 0, 300, 50.0)])
    agg.update([meter(1, 30, 200, 10.5), meter(2, 30, 400, 50.25)])
    snap = agg.snapshot()["smart_meter"]
    assert snap["devices"] == 2 and snap["readings"] == 4
    assert snap["metrics"]["power"] == {"mean": 250.0, "min": 100.0, "max": 400.0}
    runs = agg.counter_runs()
    assert runs["m-1"].advance("energy") == pytest.approx(0.5)
    assert runs["m-2"].advance("energy") == pytest.approx(0.25)
    assert runs["m-2"].advance("energy", falls=True) == 0.0  # a rise is no advance for a battery
    assert runs["m-1"].hours == pytest.approx(30 / 3600)
    agg.update([meter(1, 120, 1000, 11.0)])  # the first two buckets fall out of the window
    snap = agg.snapshot()["smart_meter"]
    assert snap["readings"] == 1 and snap["metrics"]["power"]["min"] == 1000.0
    assert runs["m-1"].advance("energy") == pytest.approx(0.5)  # a copy: later batches leave it
    after = agg.counter_runs()["m-1"]
    assert after.advance("energy") == pytest.approx(1.0)  # since first seen, not windowed
    assert after.hours == pytest.approx(120 / 3600)
    assert agg.latest["m-1"].power == 1000 and agg.latest["m-2"].power == 400


def test_memory_is_bounded_by_device_cap_and_window() -> None:
    agg = RollingAggregates(window=timedelta(seconds=10), max_devices=100)
    for step in range(200):
        agg.update([meter(d + step * 10, step, 100, 1.0 + step) for d in range(10)])
    assert len(agg.counter_runs()) == 100
    assert len(agg.latest) == 100
    assert len(agg._buckets["smart_meter"]) <= 12


def test_a_profiles_own_counters_and_binary_metrics_are_followed() -> None:
    def reading(kind: str, serial: str, minute: int, **metrics: object):
        ms = int((T0 + timedelta(minutes=minute)).timestamp() * 1000)
        return PLANT.decode(json.dumps({"model": kind, "serial": serial, "t_ms": ms, **metrics}))

    agg = RollingAggregates(window=timedelta(hours=1), profiles=PLANT.profiles)
    agg.update([reading("meter", "M-1", 0, volume=100.0), reading("door", "D-1", 0, open=True)])
    agg.update([reading("meter", "M-1", 30, volume=112.5), reading("door", "D-2", 30, open=0)])
    (run,) = agg.counter_runs().values()  # doors have no counter
    assert (run.device_type, run.advance("volume"), run.hours) == ("meter", 12.5, 0.5)
    doors = agg.snapshot()["door"]
    assert doors["devices"] == 2 and doors["metrics"]["open"]["mean"] == 0.5  # share open


def test_many_small_batches_fold_into_slots_with_exact_figures() -> None:
    """A slow stream's batches, several a second for the whole window: the window is held as a
    bounded number of buckets, and its figures are those of every reading in it."""
    agg = RollingAggregates(window=timedelta(seconds=60))
    powers = []
    for step in range(600):  # ten batches a second for 60 s
        power = 100.0 + (step * 37) % 250
        powers.append(power)
        agg.update([meter(1, step / 10, power, 10.0 + step)])
    assert len(agg._buckets["smart_meter"]) <= 61
    snap = agg.snapshot()["smart_meter"]
    assert snap["readings"] == 600
    assert snap["metrics"]["power"]["mean"] == pytest.approx(sum(powers) / 600)
    assert snap["metrics"]["power"]["min"] == min(powers)
    assert snap["metrics"]["power"]["max"] == max(powers)
    recent, mark = agg.means_since(0)
    assert recent["smart_meter"]["readings"] == 600
    agg.update([meter(1, 60.1, 500.0, 700.0)])
    recent, _ = agg.means_since(mark)
    assert recent["smart_meter"]["readings"] == 1 and recent["smart_meter"]["means"]["power"] == 500
